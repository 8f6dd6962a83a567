"""TensorRT IPluginV3 registrations for every op of the `deploykit` ONNX domain, generated from the op contract.

One plugin class and one IPluginCreatorV3One creator per contract op with `in_onnx_domain=True`, and per
stage op of MoE (contract STAGE_OPS, emitted by the builder's lowering). Name,
version, namespace, plugin fields (the op's attributes), output shapes (`OpSpec.output_dims`, THE shape
rule), output dtypes (`OpSpec.output_dtypes`) and supported formats are all read from the OpSpec, so the
plugin cannot drift from the ONNX schema or the torch fake implementation.

TensorRT calls, at parse and build time (verified with TensorRT for RTX 1.7.1 on a CPU, see
shared/reference/tensorrt-rtx.md): create_plugin -> get_output_data_types -> clone -> get_output_shapes ->
supports_format_combination -> configure_plugin -> get_workspace_size -> get_valid_tactics ->
get_fields_to_serialize. `enqueue` runs only on a GPU when the engine executes: it wraps TensorRT's device
pointers as torch tensors and calls the op's Triton launcher (`deploykit.plugins.launcher(op)`).

The TensorRT module comes from deploykit.build.trt_backend (the only place that imports TensorRT), so the
same classes serve datacenter TensorRT and TensorRT for RTX.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

from deploykit.ops.contract import DOMAIN, PLUGIN_OPS, AttributeSpec, OpSpec

NAMESPACE = DOMAIN  # the exporter writes plugin_namespace="deploykit" on every node (export/schemas.py)
NOT_FIELDS = ("plugin_version",)  # read by the ONNX parser itself, not a plugin field

_TRT_TO_TORCH = {"FLOAT": "float32", "HALF": "float16", "BF16": "bfloat16", "INT32": "int32"}  # every contract dtype
_TORCH_TO_TRT = {v: k for k, v in _TRT_TO_TORCH.items()}
_DIM_OPS = {"add": "SUM", "sub": "SUB", "mul": "PROD", "floordiv": "FLOOR_DIV", "cdiv": "CEIL_DIV", "min": "MIN"}
# Ops whose launcher takes `out=` buffers: GatedDeltaRule's final state is as large as everything its decode
# kernel reads, so copying it from a launcher-owned tensor would double the step's memory traffic. The others
# copy outputs that are small next to what their kernels read (MoE: [N, H] against the expert weights).
WRITES_OUTPUTS = ("GatedDeltaRule",)
# Launcher keywords of the tactics an op offers. TensorRT times every tactic when it builds the engine, on the
# engine's GPU, keeps the fastest and sets it again when the engine is loaded. These plugins run the launchers
# (Python at runtime), so GatedDeltaRule's multi-launch paths are candidates too; the QDP AOT plugins offer
# single-kernel tactics only (plugins/gated_delta_net/qdp.py). The first tactic, and tactic 0 (none chosen),
# is the launcher's own choice ("auto"): what runs where nothing was timed (TensorRT for RTX's CPU build asks
# for the tactics but sets none, tests/builder/test_enqueue.py).
TACTICS: dict[str, dict[int, dict]] = {
    "GatedDeltaRule": {
        1: {},
        2: {"mode": "recurrent"},
        3: {"mode": "chunk"},
        # = gated_delta_net.launch.CHUNK16 (no spills on sm_90), written out: this module imports no torch
        4: {"mode": "chunk", "chunk_size": 16, "block_v": 32},
        5: {"mode": "split"},
        6: {"mode": "split3"},
    },
}


def plugin_fields(spec: OpSpec) -> tuple[AttributeSpec, ...]:
    """The attributes that travel as PluginFields (the ONNX parser passes only names the creator lists)."""
    return tuple(a for a in spec.attributes if a.name not in NOT_FIELDS)


def output_type_names(spec: OpSpec, input_types: list[str]) -> list[str]:
    """Output TensorRT dtype names from input dtype names: 'T' copies the first 'T' input (contract rule)."""
    act = input_types[spec.activation_input]
    return [act if o.dtype == "T" else _TORCH_TO_TRT[o.dtype] for o in spec.outputs]


def supports_type(spec: OpSpec, pos: int, type_names: list[str]) -> bool:
    """Whether position `pos` (inputs then outputs) may have dtype type_names[pos], given the earlier ones: the
    contract's `accepts_dtype` on TensorRT's names (one it has no contract name for, e.g. INT8, is refused)."""
    names = [_TRT_TO_TORCH.get(n) for n in type_names[: pos + 1]]
    return names[pos] is not None and spec.accepts_dtype(pos, names)


class ExprArith:
    """The contract's dim arithmetic (OpSpec.infer_shapes) on TensorRT's IDimensionExpr, via its IExprBuilder."""

    def __init__(self, trt, expr_builder):
        self._trt, self._b = trt, expr_builder
        for name, op in _DIM_OPS.items():
            kind = getattr(trt.DimensionOperation, op)
            setattr(self, name, lambda a, b, kind=kind: self._b.operation(kind, a, b))

    def const(self, value: int):
        return self._b.constant(int(value))


def source_hash(spec: OpSpec, registration_file: str | Path = __file__) -> str:
    """sha256 over the registration's file (this one; plugins/aot.py for the QDP plugins) and the op's launcher
    package sources (its qdp.py included): what the engine's plugin runs."""
    from deploykit.plugins import LAUNCHERS  # import path only: imports neither torch nor triton

    h = hashlib.sha256(Path(registration_file).read_bytes())
    module = LAUNCHERS[spec.name].split(":")[0]
    try:
        found = importlib.util.find_spec(module)
    except ModuleNotFoundError:
        found = None
    if found is not None:
        roots = list(found.submodule_search_locations or []) or [str(Path(found.origin).parent)]
        for root in roots:
            for f in sorted(Path(root).rglob("*.py")):
                h.update(f.read_bytes())
    return h.hexdigest()


def _decode_fields(spec: OpSpec, fc) -> dict:
    """PluginFieldCollection -> {attribute: python value}, contract defaults for missing ones."""
    given = {f.name: f.data for f in fc} if fc is not None else {}
    out = {}
    for a in plugin_fields(spec):
        if a.name not in given:
            if a.default is None:
                raise ValueError(f"{spec.name}: required attribute '{a.name}' is missing")
            out[a.name] = a.default
            continue
        data = given[a.name]
        if a.type == "string":
            out[a.name] = bytes(bytearray(int(x) & 0xFF for x in data)).split(b"\0")[0].decode()
        else:
            out[a.name] = (int if a.type == "int" else float)(data[0])
    return out


def _encode_fields(trt, spec: OpSpec, attrs: dict):
    import numpy as np

    fields = []
    for a in plugin_fields(spec):
        value = attrs[a.name]
        if a.type == "int":
            fields.append(trt.PluginField(a.name, np.array([value], np.int32), trt.PluginFieldType.INT32))
        elif a.type == "float":
            fields.append(trt.PluginField(a.name, np.array([value], np.float32), trt.PluginFieldType.FLOAT32))
        else:
            raw = np.frombuffer(value.encode() + b"\0", np.int8)
            fields.append(trt.PluginField(a.name, raw, trt.PluginFieldType.CHAR))
    return trt.PluginFieldCollection(fields)


def _field_templates(trt, spec: OpSpec):
    import numpy as np

    kinds = {"int": trt.PluginFieldType.INT32, "float": trt.PluginFieldType.FLOAT32,
             "string": trt.PluginFieldType.CHAR}
    return trt.PluginFieldCollection([trt.PluginField(a.name, np.array([]), kinds[a.type])
                                      for a in plugin_fields(spec)])


def make_plugin_class(trt, spec: OpSpec):
    """The IPluginV3 class of one contract op, for the TensorRT module `trt`."""
    bases = (trt.IPluginV3, trt.IPluginV3OneCore, trt.IPluginV3OneBuild, trt.IPluginV3OneRuntime)

    class ContractPlugin(*bases):
        def __init__(self, attrs: dict):
            for base in bases:
                base.__init__(self)
            self.plugin_name, self.plugin_version, self.plugin_namespace = spec.name, spec.plugin_version, NAMESPACE
            self.num_outputs = len(spec.outputs)
            self.timing_cache_id = ""
            self.attrs = dict(attrs)
            self.tactic = 0

        def get_capability_interface(self, capability_type):
            return self

        def clone(self):
            twin = ContractPlugin(self.attrs)
            twin.tactic = self.tactic
            return twin

        def get_output_data_types(self, input_types):
            names = output_type_names(spec, [t.name for t in input_types])
            return [getattr(trt.DataType, n) for n in names]

        def get_output_shapes(self, inputs, shape_inputs, expr_builder):
            dims = [[d[a] for a in range(len(d))] for d in inputs]
            # what the launcher would refuse when the engine runs, refused where it is built (model dims)
            fixed = [[e.get_constant_value() if e.is_constant() else None for e in s] for s in dims]
            spec.check_static(fixed, self.attrs)
            shapes = spec.infer_shapes(dims, self.attrs, ExprArith(trt, expr_builder))  # THE rule (and ranks)
            outs = []
            for shape in shapes:
                d = trt.DimsExprs(len(shape))
                for axis, expr in enumerate(shape):
                    d[axis] = expr
                outs.append(d)
            return outs

        def supports_format_combination(self, pos, in_out, num_inputs):
            if in_out[pos].desc.format != trt.TensorFormat.LINEAR:
                return False
            return supports_type(spec, pos, [x.desc.type.name for x in in_out])

        def configure_plugin(self, inputs, outputs):
            pass

        def get_workspace_size(self, inputs, outputs):
            return 0  # the launchers allocate nothing outside their outputs

        def get_valid_tactics(self):
            return list(TACTICS.get(spec.name, {}))

        def set_tactic(self, tactic):
            self.tactic = tactic

        def get_fields_to_serialize(self):
            return _encode_fields(trt, spec, self.attrs)

        def on_shape_change(self, inputs, outputs):
            pass

        def attach_to_context(self, resource_context):
            return self.clone()

        def enqueue(self, input_desc, output_desc, inputs, outputs, workspace, stream):
            _enqueue(spec, self.attrs, input_desc, output_desc, inputs, outputs, stream, self.tactic)

    ContractPlugin.__name__ = ContractPlugin.__qualname__ = f"{spec.name}Plugin"
    return ContractPlugin


def make_creator_class(trt, spec: OpSpec):
    """The IPluginCreatorV3One of one contract op."""
    plugin_class = make_plugin_class(trt, spec)

    class ContractCreator(trt.IPluginCreatorV3One):
        def __init__(self):
            trt.IPluginCreatorV3One.__init__(self)
            self.name, self.plugin_version, self.plugin_namespace = spec.name, spec.plugin_version, NAMESPACE
            self.field_names = _field_templates(trt, spec)

        def create_plugin(self, name, fc, phase):
            return plugin_class(_decode_fields(spec, fc))

    ContractCreator.__name__ = ContractCreator.__qualname__ = f"{spec.name}Creator"
    return ContractCreator


def make_creators(trt) -> dict[str, object]:
    """One creator instance per op of the deploykit ONNX domain (keep them alive while registered)."""
    return {name: make_creator_class(trt, spec)() for name, spec in PLUGIN_OPS.items()}


class _DevicePointer:
    """A raw CUDA pointer with __cuda_array_interface__, so torch can view TensorRT's buffers without a copy."""

    def __init__(self, ptr: int, shape: tuple, typestr: str):
        self.__cuda_array_interface__ = {"data": (ptr, False), "shape": shape, "typestr": typestr,
                                         "version": 3, "strides": None}


def run_launcher(spec: OpSpec, attrs: dict, inputs: list, outputs: list, tactic: int = 0) -> None:
    """What enqueue does once TensorRT's buffers are torch tensors: call the op's launcher (contract inputs,
    then attributes, in contract order; deploykit.plugins.LAUNCHERS) with the tactic's keywords; its results
    land in `outputs` (written there directly for WRITES_OUTPUTS, else copied)."""
    from deploykit.plugins import launcher

    args = [attrs[a.name] for a in plugin_fields(spec)]
    kwargs = TACTICS.get(spec.name, {}).get(tactic, {})
    if spec.name in WRITES_OUTPUTS:  # straight into TensorRT's buffers, no copy
        launcher(spec.name)(*inputs, *args, out=tuple(outputs), **kwargs)
        return
    results = launcher(spec.name)(*inputs, *args, **kwargs)
    for out, res in zip(outputs, results if isinstance(results, (tuple, list)) else (results,), strict=True):
        out.copy_(res)


def _enqueue(spec: OpSpec, attrs: dict, input_desc, output_desc, inputs, outputs, stream, tactic: int) -> None:
    """GPU only (never called at build time): view TensorRT's device buffers as torch tensors, run on its stream."""
    import torch

    def view(desc, ptr):
        dtype = getattr(torch, _TRT_TO_TORCH[desc.type.name])
        typestr = {torch.float32: "<f4", torch.float16: "<f2", torch.bfloat16: "<i2", torch.int32: "<i4"}[dtype]
        t = torch.as_tensor(_DevicePointer(ptr, tuple(desc.dims), typestr), device="cuda")
        return t.view(dtype) if dtype == torch.bfloat16 else t

    ins = [view(d, p) for d, p in zip(input_desc, inputs, strict=True)]
    outs = [view(d, p) for d, p in zip(output_desc, outputs, strict=True)]
    with torch.cuda.stream(torch.cuda.ExternalStream(stream)):
        run_launcher(spec, attrs, ins, outs, tactic)
