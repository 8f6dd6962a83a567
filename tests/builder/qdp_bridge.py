"""Runs deploykit's QDP registrations (plugins/*/qdp.py) through NVIDIA's own `tensorrt.plugin` package, on the
CPU, inside a real TensorRT build. Run as a script in its own process (it installs a `tensorrt` module):

    python tests/builder/qdp_bridge.py records.json model.onnx [model.onnx ...]
    python tests/builder/qdp_bridge.py --registration steps.json

Datacenter TensorRT cannot be installed here, but two halves of it can:
  * `tensorrt.plugin` itself is pure Python and ships in the datacenter bindings wheel (`tensorrt-cu12-bindings`,
    package `tensorrt_bindings/plugin`); only its `tensorrt.so` needs the absent libnvinfer. It is loaded
    unchanged as `tensorrt.plugin`.
  * the classes it builds on (IPluginV3, IExprBuilder, IDimensionExpr, PluginField, DimsExprs, ...) come from
    TensorRT for RTX, whose parser and builder run on the CPU. Three names that RTX lacks are stand-ins:
    IPluginV3QuickAOTBuild and ISymExpr (empty bases) and QuickPluginCreationRequest (the enum).

RTX's parser does not accept quick-plugin creators, so each deploykit op gets a bridge IPluginV3 that forwards
TensorRT's calls to the `_TemplateAOTPlugin` that NVIDIA's QDP creator made from the parsed node's fields.
Inside get_output_shapes (while TensorRT's IExprBuilder is live) the bridge also plays the AOT build steps:
format combinations (our autotune), configure_plugin, every valid tactic, and get_launch_params (our aot_impl,
compiling PTX for sm_90). What it records is evaluated by tests/builder/test_qdp.py.

Not covered: the C++ side of the AOT plugin (TensorRT reading the PTX and launching it), which needs a GPU.
"""

from __future__ import annotations

import enum
import importlib.util
import json
import re
import sys
import traceback
import types
from pathlib import Path

from deploykit.ops.contract import DOMAIN as NAMESPACE  # plugin namespace = the ONNX domain

ARCH = 90  # H100/H200: the datacenter GPU the AOT plugins are built for
COMPILED: list[dict] = []  # the KernelSpec of every compile_ptx call, in call order


def _bindings_folder() -> Path:
    found = importlib.util.find_spec("tensorrt_bindings")  # finds without importing (its tensorrt.so would fail)
    if found is None:
        raise SystemExit("tensorrt-cu12-bindings is not installed (pip install -e '.[test]')")
    return Path(found.submodule_search_locations[0])


def _bindings_version() -> str:
    text = (_bindings_folder() / "__init__.py").read_text()
    return re.search(r'^__version__ = "([^"]+)"', text, re.MULTILINE).group(1)


def load_tensorrt_plugin():
    """(trt, trtp): TensorRT for RTX's classes as `tensorrt`, and NVIDIA's tensorrt.plugin package on top."""
    import tensorrt_rtx_bindings as core

    trt = types.ModuleType("tensorrt")
    trt.__dict__.update({k: getattr(core, k) for k in dir(core) if not k.startswith("__")})
    # the version deploykit's guard reads is tensorrt.plugin's (the bindings wheel), not the RTX core's
    trt.__path__, trt.__version__ = [], _bindings_version()

    class IPluginV3QuickAOTBuild:
        def __init__(self):
            pass

    class ISymExpr:
        def __init__(self):
            pass

    class QuickPluginCreationRequest(enum.IntEnum):  # values as in NvInferRuntimePlugin.h
        UNKNOWN, PREFER_JIT, PREFER_AOT, STRICT_JIT, STRICT_AOT = range(5)

    trt.IPluginV3QuickAOTBuild, trt.ISymExpr = IPluginV3QuickAOTBuild, ISymExpr
    trt.QuickPluginCreationRequest = QuickPluginCreationRequest
    sys.modules["tensorrt"] = trt
    folder = _bindings_folder() / "plugin"
    spec = importlib.util.spec_from_file_location("tensorrt.plugin", folder / "__init__.py",
                                                  submodule_search_locations=[str(folder)])
    trtp = importlib.util.module_from_spec(spec)
    sys.modules["tensorrt.plugin"] = trt.plugin = trtp
    spec.loader.exec_module(trtp)
    return trt, trtp


def _const(expr):
    return expr.get_constant_value() if expr.is_constant() else None


class _SymSetter:
    """What TensorRT hands get_launch_params for the extra scalar arguments."""

    def __init__(self):
        self.nbSymExprs, self.items = 0, {}

    def __setitem__(self, i, value):
        self.items[i] = value


def _tensor_descs(trt, types_, dims):
    descs = []
    for t, d in zip(types_, dims, strict=True):
        desc = trt.DynamicPluginTensorDesc()
        desc.desc.type, desc.desc.format = t, trt.TensorFormat.LINEAR
        desc.desc.dims = trt.Dims([-1 if v is None else v for v in d])
        desc.min = desc.max = desc.opt = trt.Dims([1 if v is None else v for v in d])
        descs.append(desc)
    return descs


def _entry_params(ptx: str, name: str) -> list[str]:
    """PTX types of the kernel's parameters, in order (.u64 = a pointer, .u32 = an i32 scalar)."""
    head = ptx.split(f".entry {name}(", 1)[1].split(")", 1)[0]
    return [line.split()[1] for line in head.splitlines() if line.strip().startswith(".param")]


def _aot_steps(trt, qdp, inputs, out_exprs, expr_builder) -> dict:
    """The AOT build steps TensorRT runs after the shapes, played with the same IExprBuilder."""
    in_dims = [[_const(d[a]) for a in range(len(d))] for d in inputs]
    out_dims = [[_const(d[a]) for a in range(len(d))] for d in out_exprs]
    types_ = [*qdp.input_types, *qdp.output_types]
    in_out = _tensor_descs(trt, types_, in_dims + out_dims)
    n_in = len(inputs)
    combos = qdp.get_supported_format_combinations(in_out, n_in)
    n = len(in_out)
    offered = [[c.type.name for c in combos[i:i + n]] for i in range(0, len(combos), n)]
    qdp.configure_plugin(in_out[:n_in], in_out[n_in:])
    tactics = {}
    for tactic in qdp.get_valid_tactics() or [0]:
        qdp.set_tactic(tactic)
        lp, sym = types.SimpleNamespace(), _SymSetter()
        COMPILED.clear()
        qdp.get_launch_params(inputs, in_out, n_in, lp, sym, expr_builder)
        (compiled,) = COMPILED
        name, ptx = qdp.get_kernel([d.desc for d in in_out[:n_in]], [d.desc for d in in_out[n_in:]])
        ptx = ptx.decode()
        tactics[str(tactic)] = {
            "kernel": name,
            "entry_in_ptx": f".entry {name}(" in ptx,
            "ptx_target": next((ln.split()[1] for ln in ptx.splitlines() if ln.startswith(".target")), None),
            "grid": [_const(getattr(lp, f"grid_{a}").expr) for a in "xyz"],
            "block": [_const(getattr(lp, f"block_{a}").expr) for a in "xyz"],
            "shared_mem": _const(lp.shared_mem.expr),
            "extra": [_const(sym.items[i].expr) for i in range(sym.nbSymExprs)],
            "extra_dtypes": [sym.items[i].dtype.name for i in range(sym.nbSymExprs)],
            "ptx_params": _entry_params(ptx, name),
            **compiled,
        }
    return {"inputs": in_dims, "outputs": out_dims, "types": [t.name for t in types_], "offered": offered,
            "tactics": tactics}


def make_bridge_creator(trt, qdp_creator, records: list):
    """An RTX IPluginCreatorV3One that lists the QDP creator's fields and builds its _TemplateAOTPlugin (its
    _TemplateJITPlugin for deploykit::MoE, which has no aot_impl)."""
    from tensorrt.plugin import _lib
    bases = (trt.IPluginV3, trt.IPluginV3OneCore, trt.IPluginV3OneBuild, trt.IPluginV3OneRuntime)

    class Bridge(*bases):
        def __init__(self, qdp, ranks):
            for base in bases:
                base.__init__(self)
            self.qdp, self.ranks = qdp, ranks
            self.plugin_name, self.plugin_namespace = qdp.plugin_name, qdp.plugin_namespace
            self.plugin_version, self.num_outputs, self.timing_cache_id = "1", qdp.num_outputs, ""

        def get_capability_interface(self, capability_type):
            return self

        def clone(self):
            return Bridge(self.qdp.clone(), self.ranks)

        def get_output_data_types(self, input_types):
            return self.qdp.get_output_data_types(input_types, self.ranks)

        def get_output_shapes(self, inputs, shape_inputs, expr_builder):
            try:
                outs = self.qdp.get_output_shapes(inputs, shape_inputs, expr_builder)
            except Exception as exc:  # our register function refused the node: the test reads why
                records.append({"op": self.plugin_name, "refused": f"{type(exc).__name__}: {exc}"})
                raise
            record = {"op": self.plugin_name, "attrs": dict(self.qdp.attrs), "jit": not hasattr(self.qdp, "get_kernel")}
            try:
                if record["jit"]:  # deploykit::MoE: shapes and types only (its impl runs on a GPU)
                    record.update(outputs=[[_const(d[a]) for a in range(len(d))] for d in outs],
                                  types=[t.name for t in (*self.qdp.input_types, *self.qdp.output_types)])
                else:
                    record.update(_aot_steps(trt, self.qdp, inputs, outs, expr_builder))
            except Exception:  # noqa: BLE001  reported by the test, not swallowed by TensorRT
                record["error"] = traceback.format_exc()
            if record not in records:
                records.append(record)
            return outs

        def supports_format_combination(self, pos, in_out, num_inputs):
            return in_out[pos].desc.format == trt.TensorFormat.LINEAR

        def configure_plugin(self, inputs, outputs):
            pass

        def get_workspace_size(self, inputs, outputs):
            return 0

        def get_valid_tactics(self):
            return []

        def set_tactic(self, tactic):
            pass

        def get_fields_to_serialize(self):
            return trt.PluginFieldCollection([])

        def on_shape_change(self, inputs, outputs):
            pass

        def attach_to_context(self, resource_context):
            return self.clone()

        def enqueue(self, *args):
            raise RuntimeError("the bridge only builds")

    class BridgeCreator(trt.IPluginCreatorV3One):
        def __init__(self, ranks):
            trt.IPluginCreatorV3One.__init__(self)
            self.name, self.plugin_namespace, self.plugin_version = qdp_creator.name, NAMESPACE, "1"
            self.field_names, self.ranks = qdp_creator.field_names, ranks

        def create_plugin(self, name, fc, phase):
            # `name` is the ONNX node's name here; NVIDIA's creator wants the plugin's
            records.append({"node": name, "op": self.name, "fields": [f.name for f in fc]})
            jit = _lib.QDP_REGISTRY[f"{NAMESPACE}::{self.name}"].aot_impl_func is None
            request = trt.QuickPluginCreationRequest.STRICT_JIT if jit else trt.QuickPluginCreationRequest.STRICT_AOT
            qdp = qdp_creator.create_plugin(self.name, NAMESPACE, fc, phase, request)
            return Bridge(qdp, self.ranks)

    return BridgeCreator


def main(out_path: str, *model_paths: str) -> None:
    trt, _ = load_tensorrt_plugin()
    import deploykit.plugins.gated_delta_net.qdp  # noqa: F401  (registers the plugins)
    import deploykit.plugins.moe.qdp  # noqa: F401
    from deploykit.plugins import aot
    from tensorrt.plugin import _lib

    from deploykit.build.trt_backend import load_backend
    from deploykit.ops.contract import ALL_OPS

    aot.device_arch = lambda: ARCH  # there is no GPU to ask (every aot_impl compiles through aot.kernel_launch)
    real_compile = aot.compile_ptx

    def compile_ptx(spec, arch):  # records what each aot_impl compiled
        aligned = [i for i, name in enumerate(spec.pointer_args()) if name in spec.aligned_args()]
        COMPILED.append({"constexprs": spec.constexprs, "num_warps": spec.num_warps, "num_stages": spec.num_stages,
                         "aligned": aligned})  # positions among the op's inputs + outputs
        return real_compile(spec, arch)

    aot.compile_ptx = compile_ptx
    backend = load_backend("tensorrt-rtx")
    backend.fix_plugin_library()
    registry, records, keep = trt.get_plugin_registry(), [], []
    for plugin_id, creator in _lib.QDP_CREATORS.items():
        registry.deregister_creator(creator)  # RTX's parser refuses quick creators: the bridge replaces them
        spec = ALL_OPS[plugin_id.split("::")[1]]
        bridge = make_bridge_creator(trt, creator, records)([len(t.dims) for t in spec.inputs])
        keep.append(bridge)
        registry.register_creator(bridge, NAMESPACE)

    results = {}
    for path in model_paths:
        records.clear()
        results[path] = _build(trt, path)
        results[path]["records"] = list(records)
    Path(out_path).write_text(json.dumps(results, indent=1))


def _build(trt, path: str) -> dict:
    """Parse and build one model, every dynamic dim in a profile of 1..16 (opt 8)."""
    log = []

    class Logger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)

        def log(self, severity, msg):
            log.append(f"{severity.name}: {msg}")

    logger = Logger()
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    ok = parser.parse_from_file(path)
    errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
    built = None
    if ok:
        config = builder.create_builder_config()
        profile = builder.create_optimization_profile()
        for i in range(network.num_inputs):
            t = network.get_input(i)
            if any(d < 0 for d in t.shape):
                dims = [list(t.shape)] * 3
                shapes = [[v if v >= 0 else n for v in dims[0]] for n in (1, 8, 16)]
                profile.set_shape(t.name, *shapes)
        config.add_optimization_profile(profile)
        built = builder.build_serialized_network(network, config) is not None
    outputs = {network.get_output(i).name: list(network.get_output(i).shape) for i in range(network.num_outputs)}
    return {"parsed": ok, "built": built, "errors": errors, "outputs": outputs, "log": log[-20:]}


def registration_steps(out_path: str) -> None:
    """deploykit.build.registration switching between its two kinds on one registry: which creator class holds
    each deploykit name after each step (the real tensorrt.plugin's creators for "aot")."""
    trt, _ = load_tensorrt_plugin()
    from deploykit.build import registration
    from deploykit.build.trt_backend import Backend
    from deploykit.ops.contract import ALL_OPS

    backend, registry, steps = Backend("tensorrt", trt), trt.get_plugin_registry(), []
    for kind in ("python", "aot", "python", "aot", None):
        registration.activate(backend, kind)
        held = {name: registry.get_creator(name, "1", NAMESPACE) for name in ALL_OPS}
        steps.append({"kind": kind, "active": registration.active_kind(backend),
                      "creators": {n: type(c).__name__ if c is not None else None for n, c in held.items()}})
    stamps = {k: [p.model_dump() for p in registration.plugin_stamps(k)] for k in registration.KINDS}
    Path(out_path).write_text(json.dumps({"steps": steps, "stamps": stamps}, indent=1))


if __name__ == "__main__":
    if sys.argv[1] == "--registration":
        registration_steps(sys.argv[2])
    else:
        main(*sys.argv[1:])
