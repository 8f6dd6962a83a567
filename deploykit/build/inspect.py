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
    profiles: int  # TensorRT for RTX compiles the graph once per optimization profile ("name [profile N]")
    plugin_types: list[str]  # plugin names found in the engine's plugin records
    tensors: list[TensorInfo]  # the requested I/O tensors that were found


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


_PROFILE_SUFFIX = re.compile(r" \[profile \d+\]")  # in the 2nd, 3rd... profile's layer names; an If's layers
# carry it twice ("(IfConditional* 0) [profile 1]^...^name [profile 1]")


def _tensor_entry(text: str, name: str) -> TensorInfo | None:
    """The first profile's `tensor={ dims={...} name="<name>.N" type=... }` entry (dims: symbols -> -1)."""
    m = re.search(rf'tensor=\{{[^\n]*?dims=\{{([^}}]*)\}}[^\n]*?name="{re.escape(name)}\.\d+"[^\n]*?type=(\w+)', text)
    if not m:
        return None
    dims = [int(d) if d.isdigit() else -1 for d in m.group(1).split()]
    return TensorInfo(name=name, dtype=_DTYPES.get(m.group(2), m.group(2).upper()), shape=dims)


def inspect_plan(engine: bytes, plugin_names: tuple[str, ...] = (), io_names: tuple[str, ...] = ()) -> PlanReport:
    """Best-effort reading of a TensorRT for RTX engine's embedded graph description (no GPU needed).

    `io_names`: the network I/O tensors to look up. The compiler may rename a graph output it produced
    internally (the logits of a full model show up as "__mye..."), so a name can be missing."""
    text = "\n".join(s.decode() for s in re.findall(rb"[ -~]{3,}", engine))  # 3: the plugin name "MoE"
    # "*" marks subgraphs that inherit the engine's targets
    targets = sorted({t for m in re.findall(r"accelerators=\{([^}]*)\}", text) for t in m.split() if t != "*"})
    profiles = 1 + len(set(re.findall(r"\[profile (\d+)\]", text)))
    layers = sorted({_PROFILE_SUFFIX.sub("", n) for n in re.findall(r'custom_layer=\{ name="([^"]+)"', text)})
    types = sorted(n for n in plugin_names if re.search(rf"(?m)^{re.escape(n)}$", text))
    tensors = [t for n in io_names if (t := _tensor_entry(text, n))]
    return PlanReport(source="plan-text", targets=targets, plugin_layers=layers, profiles=profiles,
                      plugin_types=types, tensors=tensors)


def inspect_engine(backend, engine: bytes, plugin_names: tuple[str, ...] = (),
                   io_names: tuple[str, ...] = ()) -> PlanReport:
    """The deserialised engine's I/O where a GPU can load it, else the plan-text reading."""
    trt = backend.trt
    from deploykit.build.trt_backend import TrtLog

    runtime = trt.Runtime(backend.logger(TrtLog()))
    cuda_engine = None
    try:
        cuda_engine = runtime.deserialize_cuda_engine(engine)
    except Exception:  # noqa: BLE001 - no GPU / driver: TensorRT raises or returns None, either means "cannot load"
        cuda_engine = None
    report = inspect_plan(engine, plugin_names, io_names)
    if cuda_engine is None:
        return report
    names = [cuda_engine.get_tensor_name(i) for i in range(cuda_engine.num_io_tensors)]
    tensors = [TensorInfo(name=n, dtype=cuda_engine.get_tensor_dtype(n).name,
                          shape=[int(d) for d in cuda_engine.get_tensor_shape(n)]) for n in names]
    return report.model_copy(update={"source": "engine", "tensors": tensors})
