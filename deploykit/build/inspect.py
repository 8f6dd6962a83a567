"""What a network or a built engine contains: layer types, plugin layers, I/O tensors, targets.

Three sources, best first:
  * the deserialised engine (ICudaEngine I/O tensors + EngineInspector): needs a GPU the engine runs on;
  * the parsed network (`inspect_network`): documented API, no GPU; this is what the builder compiled;
  * the engine bytes (`inspect_plan`): TensorRT for RTX engines carry a readable description of the
    compiled graph (compute-capability list, custom/plugin layers, I/O tensors with dtypes and static
    dims). The format is undocumented, so this is a best-effort reading, used to check that an engine
    file matches its manifest on machines without a GPU; every field it cannot find stays empty.
"""

from __future__ import annotations

import re
from collections import Counter

from pydantic import BaseModel


class TensorInfo(BaseModel):
    name: str
    dtype: str  # TensorRT DataType name: FLOAT, HALF, BF16, INT64, ...
    shape: list[int]  # -1 = dynamic


class LayerInfo(BaseModel):
    name: str
    type: str  # TensorRT LayerType name, e.g. PLUGIN_V3, MATRIX_MULTIPLY
    plugin: str | None = None  # namespace::name/version for plugin layers


class NetworkReport(BaseModel):
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    layers: list[LayerInfo]

    def layer_types(self) -> dict[str, int]:
        return dict(Counter(layer.type for layer in self.layers))

    def plugin_layers(self) -> list[LayerInfo]:
        return [layer for layer in self.layers if layer.type == "PLUGIN_V3"]


class PlanReport(BaseModel):
    source: str  # "engine" (deserialised) or "plan-text" (read from the bytes)
    targets: list[str]
    plugin_layers: list[str]  # layer names of custom (plugin) layers, once each
    graphs: int  # compiled graphs found (TensorRT for RTX compiles one per optimization profile)
    plugin_types: list[str]  # plugin names found in the engine's plugin records
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]


def _tensor(t) -> TensorInfo:
    return TensorInfo(name=t.name, dtype=t.dtype.name, shape=[int(d) for d in t.shape])


def inspect_network(trt, network) -> NetworkReport:
    layers = []
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        info = LayerInfo(name=layer.name, type=layer.type.name)
        if layer.type == trt.LayerType.PLUGIN_V3:
            layer.__class__ = trt.IPluginV3Layer
            p = layer.plugin
            core = p.get_capability_interface(trt.PluginCapabilityType.CORE)
            info.plugin = f"{core.plugin_namespace}::{core.plugin_name}/{core.plugin_version}"
        layers.append(info)
    return NetworkReport(
        inputs=[_tensor(network.get_input(i)) for i in range(network.num_inputs)],
        outputs=[_tensor(network.get_output(i)) for i in range(network.num_outputs)],
        layers=layers,
    )


_DTYPES = {"half": "HALF", "float": "FLOAT", "bf16": "BF16", "bfloat16": "BF16", "int64": "INT64",
           "int32": "INT32", "bool": "BOOL", "int8": "INT8", "fp8": "FP8", "uint8": "UINT8"}


_PROFILE_SUFFIX = re.compile(r" \[profile \d+\]$")  # names in the 2nd, 3rd... profile's graph


def _io_names(text: str, key: str) -> list[str]:
    names: list[str] = []
    for m in re.finditer(rf"(?m)^\s*{key}=\{{([^}}]*)\}}", text):
        for n in re.findall(r'"([^"]+)"', m.group(1)):
            base = _PROFILE_SUFFIX.sub("", re.sub(r"\.\d+$", "", n))
            if not base.startswith(("{", "__")) and base not in names:
                names.append(base)
    return names


def _tensor_entry(text: str, name: str) -> TensorInfo | None:
    m = re.search(rf'tensor=\{{[^\n]*?dims=\{{([^}}]*)\}}[^\n]*?name="{re.escape(name)}\.\d+"[^\n]*?type=(\w+)', text)
    if not m:
        return None
    dims = [int(d) if d.isdigit() else -1 for d in m.group(1).split()]
    return TensorInfo(name=name, dtype=_DTYPES.get(m.group(2), m.group(2).upper()), shape=dims)


def inspect_plan(engine: bytes, plugin_names: tuple[str, ...] = ()) -> PlanReport:
    """Best-effort reading of a TensorRT for RTX engine's embedded graph description (no GPU needed)."""
    text = "\n".join(s.decode() for s in re.findall(rb"[ -~]{3,}", engine))  # 3: the plugin name "MoE"
    targets = sorted({t for m in re.findall(r"accelerators=\{([^}]*)\}", text) for t in m.split()})
    graphs = len(re.findall(r"(?m)^\s*accelerators=", text))
    layers = sorted({_PROFILE_SUFFIX.sub("", n) for n in re.findall(r'custom_layer=\{ name="([^"]+)"', text)})
    types = sorted(n for n in plugin_names if re.search(rf"(?m)^{re.escape(n)}$", text))
    ins = [t for n in _io_names(text, "inputs") if (t := _tensor_entry(text, n))]
    outs = [t for n in _io_names(text, "outputs") if (t := _tensor_entry(text, n))]
    return PlanReport(source="plan-text", targets=targets, plugin_layers=layers, graphs=graphs, plugin_types=types,
                      inputs=ins, outputs=outs)


def inspect_engine(backend, engine: bytes, plugin_names: tuple[str, ...] = ()) -> PlanReport:
    """The deserialised engine's I/O where a GPU can load it, else the plan-text reading."""
    trt = backend.trt
    from deploykit.build.trt_backend import TrtLog

    runtime = trt.Runtime(backend.logger(TrtLog()))
    cuda_engine = None
    try:
        cuda_engine = runtime.deserialize_cuda_engine(engine)
    except Exception:  # no GPU / driver: TensorRT raises or returns None
        cuda_engine = None
    text_report = inspect_plan(engine, plugin_names)
    if cuda_engine is None:
        return text_report
    ins, outs = [], []
    for i in range(cuda_engine.num_io_tensors):
        name = cuda_engine.get_tensor_name(i)
        info = TensorInfo(name=name, dtype=cuda_engine.get_tensor_dtype(name).name,
                          shape=[int(d) for d in cuda_engine.get_tensor_shape(name)])
        (ins if cuda_engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else outs).append(info)
    return PlanReport(source="engine", targets=text_report.targets, plugin_layers=text_report.plugin_layers,
                      graphs=text_report.graphs,
                      plugin_types=text_report.plugin_types, inputs=ins, outputs=outs)
