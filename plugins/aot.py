"""Ahead-of-time (AOT) compilation of the plugin kernels to PTX, and the ONE import guard for datacenter TensorRT.

`compile_ptx` needs no GPU: Triton lowers a kernel for any `GPUTarget("cuda", sm, 32)` on the CPU (ptxas ships
with the triton wheel). A TensorRT QDP `@trtp.aot_impl` returns exactly such a (kernel name, PTX, launch params,
extra scalar args) tuple, so the engine runs without Python (Triton Inference Server, Jetson).

Argument convention of every AOT-able kernel (required by QDP AOT): input pointers in contract order, then the
runtime integer scalars (passed as `SymIntExprs`), then output pointers. Attributes are constexprs: "plugin
attributes are not serialized into the engine when using an AOT implementation" (tensorrt.plugin docs), so
they must be baked into the PTX.

Alignment: Triton's JIT marks every pointer argument whose address is a multiple of 16 bytes (every torch
allocation) `tt.divisibility=16`, and only with that mark does it emit 128-bit loads, cp.async copies and
a register budget without spills. An AOT kernel is compiled before any address exists, so the mark has to be
declared: `aligned_to` gives it to each tensor whose bytes per leading index are a multiple of 16 (TensorRT
requires 256-byte aligned engine I/O, `IExecutionContext::setTensorAddress`, and hands plugins dense tensors,
so any leading-index offset into such a tensor stays 16-byte aligned). Without it the sm_90 PTX of the decode
kernels loads their state and weights 2 or 4 bytes at a time (docs/kernels.md, "Static resources").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from deploykit.errors import DeployKitError
from deploykit.ops.contract import INT_ARITH

AOT_ARCHS = (80, 87, 90)  # A100/A10-class, Jetson AGX Orin, H100/H200 (shared/reference/gpus.yaml)
WARP_SIZE = 32  # every NVIDIA GPU Triton targets
ALIGN_BYTES = 16  # Triton's one pointer/int specialisation (`tt.divisibility`, backends/compiler.py parse_attr)
TRITON_DTYPE = {
    "float32": "fp32",
    "float16": "fp16",
    "bfloat16": "bf16",
    "int32": "i32",
}  # contract dtype -> Triton signature


@dataclass(frozen=True)
class KernelSpec:
    """One kernel specialisation: runtime args (name -> Triton type, in call order) and constexpr values."""

    kernel: Callable
    args: dict[str, str]
    constexprs: dict[str, Any]
    num_warps: int = 4
    num_stages: int | None = None
    grid: tuple[str, ...] = field(default=())  # documentation: how the plugin derives the grid
    aligned: tuple[str, ...] | None = None  # pointer args declared 16-byte aligned; None: all of them, as
    # Triton's JIT sees torch tensors (the launchers' and benchmarks' kernels)

    def pointer_args(self) -> list[str]:
        """The tensor arguments in call order: the op's inputs, then its outputs (the QDP AOT order)."""
        return [name for name, ty in self.args.items() if ty.startswith("*")]

    def aligned_args(self) -> list[str]:
        return self.pointer_args() if self.aligned is None else list(self.aligned)


@dataclass(frozen=True)
class AotKernel:
    name: str  # symbol in the PTX (`.entry`), what aot_impl returns as kernel name
    ptx: str
    arch: int
    num_warps: int
    shared: int  # dynamic shared memory bytes the launch must request
    cubin: bytes  # ptxas' output for the same PTX: what plugins/sass.py reads registers and spills from
    scratch: int  # global + profile scratch bytes. Triton >= 3.3 appends two scratch pointer parameters to
    # every kernel (after the declared ones); with scratch == 0 they are never read, so null pointers are
    # safe. Whether TensorRT's QDP AOT launcher supplies them is NOT verified here (docs/kernels.md).

    @property
    def block_x(self) -> int:
        return self.num_warps * WARP_SIZE


def compile_kernel(spec: KernelSpec, arch: int):
    """Triton's CompiledKernel of one specialisation for sm_<arch>, compiled without a GPU. On a GPU it can also
    be launched as it is (`kernel[grid](*runtime args, *constexpr values)`), which bench/bench_aot.py does to
    run the very code an AOT plugin embeds."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    signature = dict(spec.args)
    signature.update({name: "constexpr" for name in spec.constexprs})
    options = {"num_warps": spec.num_warps}
    if spec.num_stages is not None:
        options["num_stages"] = spec.num_stages
    names = spec.kernel.arg_names
    attrs = {(names.index(name),): [["tt.divisibility", ALIGN_BYTES]] for name in spec.aligned_args()}
    src = ASTSource(fn=spec.kernel, signature=signature, constexprs=dict(spec.constexprs), attrs=attrs)
    return triton.compile(src, target=GPUTarget("cuda", arch, WARP_SIZE), options=options)


def spec_of_launch(kernel: Callable, args: tuple, kwargs: dict) -> KernelSpec:
    """The KernelSpec of one launcher call `kernel[grid](*args, **kwargs)`: tensors become pointers of their
    dtype, ints i32 scalars, the keyword arguments constexprs (num_warps / num_stages: launch options). For
    comparing an AOT compile with the JIT launch of the same call (the QDP plugins build the same specs:
    tests/builder/test_qdp.py)."""
    names = [n for n in kernel.arg_names if n not in kwargs]
    if len(names) != len(args):
        raise ValueError(f"{kernel.__name__}: {len(args)} positional args for {names}")
    pointer = lambda t: "*" + TRITON_DTYPE[str(t.dtype).removeprefix("torch.")]  # noqa: E731
    sig = {n: (pointer(a) if hasattr(a, "dtype") else "i32") for n, a in zip(names, args)}
    cx = {k: v for k, v in kwargs.items() if k not in ("num_warps", "num_stages")}
    return KernelSpec(kernel, sig, cx, num_warps=kwargs.get("num_warps", 4), num_stages=kwargs.get("num_stages"))


LAUNCHER_MODULES = ("deploykit.plugins.gated_delta_net.launch", "deploykit.plugins.moe.launch")


class _Recorder:
    """Stands in for a Triton kernel in the launcher modules: keeps the call instead of launching it."""

    def __init__(self, kernel, calls: list):
        self.kernel, self.calls = kernel, calls

    def __getitem__(self, grid):
        return lambda *args, **kwargs: self.calls.append((self.kernel, (*grid, 1, 1)[:3], args, kwargs))


def recorded_launch(fn: Callable, args: tuple, kwargs: dict) -> tuple[tuple, list]:
    """((kernel, grid, args, kwargs) of the one kernel launch `fn(*args, **kwargs)` makes, fn's outputs) with
    the kernel not run: the outputs are allocated and never written. For a launcher of one kernel (an AOT
    plugin's), on any device (nothing is launched)."""
    calls, outs = recorded_launches(fn, args, kwargs)
    if len(calls) != 1:
        raise ValueError(f"{len(calls)} kernel launches; an AOT plugin is one kernel")
    return calls[0], outs


def recorded_launches(fn: Callable, args: tuple, kwargs: dict) -> tuple[list[tuple], list]:
    """Every (kernel, grid, args, kwargs) that `fn(*args, **kwargs)` launches, in order, none of them run."""
    import importlib

    calls, saved = [], []
    for name in LAUNCHER_MODULES:
        mod = importlib.import_module(name)
        for attr in [a for a in dir(mod) if a.endswith("_kernel")]:
            saved.append((mod, attr, getattr(mod, attr)))
            setattr(mod, attr, _Recorder(getattr(mod, attr), calls))
    try:
        outs = fn(*args, **kwargs)
    finally:
        for mod, attr, kernel in saved:
            setattr(mod, attr, kernel)
    return calls, list(outs) if isinstance(outs, tuple | list) else [outs]


def compile_ptx(spec: KernelSpec, arch: int) -> AotKernel:
    """Compiles one specialisation for sm_<arch> without a GPU."""
    ck = compile_kernel(spec, arch)
    return AotKernel(
        name=ck.metadata.name,
        ptx=ck.asm["ptx"],
        arch=arch,
        num_warps=ck.metadata.num_warps,
        shared=ck.metadata.shared,
        cubin=ck.asm["cubin"],
        scratch=ck.metadata.global_scratch_size + getattr(ck.metadata, "profile_scratch_size", 0),
    )


def aligned_to(spec: KernelSpec, tensors: list) -> KernelSpec:
    """`spec` with the alignment its plugin's tensors allow: `tensors` are the tensorrt.plugin TensorDescs of
    the op's inputs then outputs (the order of `spec.pointer_args()`)."""
    pointers = spec.pointer_args()
    if len(pointers) != len(tensors):
        raise ValueError(f"{spec.kernel.__name__}: {len(tensors)} tensors for pointer args {pointers}")
    return replace(spec, aligned=tuple(p for p, t in zip(pointers, tensors) if rows_aligned(t)))


def rows_aligned(desc) -> bool:
    """Whether every leading-index offset into the tensor is a multiple of ALIGN_BYTES: the product of its
    build-time-constant trailing dims times the item size is (a runtime trailing dim only multiplies it)."""
    row = desc.dtype.itemsize
    for axis in range(1, len(desc.shape_expr)):
        if is_build_time_constant(desc.shape_expr[axis]):
            row *= int(desc.shape_expr[axis].constant_value())
    return row % ALIGN_BYTES == 0


def import_trt_plugin():
    """The one guard for datacenter TensorRT: returns (tensorrt, tensorrt.plugin) or raises a fixable error."""
    try:
        import tensorrt as trt
        import tensorrt.plugin as trtp
    except ImportError as exc:
        raise DeployKitError(
            "datacenter TensorRT (the `tensorrt` module with `tensorrt.plugin`, >= 10.10) is not installed; "
            "deploykit's QDP plugin registrations need it",
            "pip install 'deploykit[tensorrt]' on a machine with NVIDIA's package index "
            "(TensorRT-for-RTX uses plugins/tensorrt_v3.py instead)",
        ) from exc
    import numpy

    check_plugin_numpy(trt.__version__, numpy.__version__)
    return trt, trtp


def check_plugin_numpy(trt_version: str, numpy_version: str) -> None:
    """tensorrt.plugin before 11.2 turns each int/float plugin field into a Python number with `int(array)`
    (`_lib.py` create_plugin; 11.2 reads `array[0]`). NumPy 2.4 made that a TypeError (a DeprecationWarning
    since 1.25), so no plugin with such attributes can be created: refuse up front, with the fix."""
    def major_minor(version: str) -> tuple[int, int]:
        major, minor = version.split(".")[:2]
        return int(major), int("".join(c for c in minor if c.isdigit()) or 0)

    if major_minor(trt_version) < (11, 2) and major_minor(numpy_version) >= (2, 4):
        raise DeployKitError(
            f"TensorRT {trt_version}'s tensorrt.plugin cannot read plugin attributes with NumPy {numpy_version}",
            "pip install 'numpy<2.4', or TensorRT >= 11.2",
        )


def contract_descriptors(spec, inputs: list, act_dtype, fp32_dtype, from_shape_expr: Callable,
                         attrs: dict | None = None, int32_dtype=None, arith=INT_ARITH) -> tuple:
    """Output descriptors of a contract op from its input descriptors, by the contract's single shape rule
    (`OpSpec.infer_shapes`; derived dims with `arith`, e.g. tensorrt.plugin's cdiv/min). dtype 'T' = the
    activation dtype.

    tensorrt.plugin first calls the register function for dtypes only, with fake dims (`is_fake`); there the
    output dims are fake dims too and nothing is computed: tensorrt.plugin 10.x keeps the IExprBuilder of the
    previous shape call in that pass, and a constant built on it crashes the process (seen with 10.10 and 10.13
    in tests/builder/test_qdp.py)."""
    dims = [tuple(d.shape_expr) for d in inputs]  # each with its own rank: infer_shapes checks them
    fake = dims[0][0]
    if getattr(fake, "is_fake", False):
        shapes = [(fake,) * len(o.dims) for o in spec.outputs]
    else:  # an ahead-of-time kernel checks nothing when it runs: refuse here what its launcher would refuse
        spec.check_static([[_fixed_value(e) for e in s] for s in dims], attrs)
        shapes = spec.infer_shapes(dims, attrs, arith)
    by_name = {"T": act_dtype, "float32": fp32_dtype, "int32": int32_dtype}
    return tuple(from_shape_expr(tuple(shape), by_name[o.dtype])
                 for shape, o in zip(shapes, spec.outputs, strict=True))


def build_time_constant(expr, what: str) -> int:
    """The value of a tensorrt.plugin ShapeExpr that must be fixed when the engine is built (a model dim).
    `is_constant` is a property but `constant_value()` a method (tensorrt.plugin `_tensor.py`, 10.6 to 11.4)."""
    if not is_build_time_constant(expr):
        raise ValueError(f"{what} must be a build-time constant (it is a model dimension)")
    return int(expr.constant_value())


def _fixed_value(expr) -> int | None:
    """A dim's value where the engine is built, None if it varies (an int: a stand-in's fixed dim)."""
    if isinstance(expr, int):
        return expr
    return int(expr.constant_value()) if is_build_time_constant(expr) else None


def is_build_time_constant(expr, value: int | None = None) -> bool:
    """Whether a tensorrt.plugin ShapeExpr is a build-time constant (equal to `value`, if given)."""
    if expr.is_fake or not expr.is_constant:
        return False
    return value is None or expr.constant_value() == value


def string_attribute(value: str) -> str:
    """A string attribute as the node wrote it. TensorRT's ONNX parser passes strings as CHAR fields with a
    trailing NUL, and tensorrt.plugin decodes the whole buffer (`create_plugin`), so "silu" arrives as "silu\\0"
    (seen with TensorRT for RTX 1.7's parser and tensorrt.plugin 11.4, tests/builder/test_qdp.py)."""
    return value.split("\0", 1)[0]


def aot_impl_return_type(trtp):
    """The return annotation tensorrt.plugin (>= 10.9, `_validate_aot_impl`) requires of every `aot_impl`:
    kernel name, PTX, launch parameters, extra scalar arguments."""
    from typing import Tuple  # noqa: UP035  as the qdp modules annotate (tensorrt.plugin reads get_origin/get_args)

    return Tuple[str | bytes, str | bytes, trtp.KernelLaunchParams, trtp.SymIntExprs]  # noqa: UP006


def kernel_launch(trtp, spec: KernelSpec, tensors: list, grid: tuple, scalars: tuple = ()) -> tuple:
    """What every `aot_impl` returns for its one kernel: `spec` compiled for this device with the alignment its
    `tensors` (the op's input then output TensorDescs) allow, launched on `grid` (up to 3 ints or shape
    expressions) with the runtime int `scalars` after the inputs."""
    ck = compile_ptx(aligned_to(spec, tensors), device_arch())
    lp = trtp.KernelLaunchParams()
    for axis, size in zip(("grid_x", "grid_y", "grid_z"), grid):
        setattr(lp, axis, size)
    lp.block_x = ck.block_x
    lp.shared_mem = ck.shared
    extra = trtp.SymIntExprs(len(scalars))
    for i, value in enumerate(scalars):
        extra[i] = trtp.SymInt32(value)
    return ck.name, ck.ptx, lp, extra


def device_arch() -> int:
    """SM of the GPU the engine is built on (TensorRT builds per device anyway)."""
    import torch

    major, minor = torch.cuda.get_device_capability()
    return major * 10 + minor


def io_type_positions(spec) -> dict[str, list[int]]:
    """Inputs-then-outputs positions of a contract op by TensorRT type string, for trtp.AutoTuneCombination.pos:
    the activation dtype 'T' may be any of FP32|FP16|BF16 (one per combination), the others are fixed."""
    by_type: dict[str, list[int]] = {}
    names = {"T": "FP32|FP16|BF16", "float32": "FP32", "int32": "INT32"}
    for pos, t in enumerate((*spec.inputs, *spec.outputs)):
        by_type.setdefault(names[t.dtype], []).append(pos)
    return by_type


def stage_descriptors(trt, trtp, spec, inputs: list, attrs: dict | None = None) -> tuple:
    """A stage op's output descriptors in tensorrt.plugin: the contract's rule with its cdiv / min for the
    derived dims, dtype 'T' from the first activation input."""
    from deploykit.ops.contract import OperatorArith

    act = inputs[spec.activation_input].dtype
    arith = OperatorArith(cdiv=trtp.cdiv, min=trtp.min, const=trtp.ShapeExpr)
    return contract_descriptors(spec, inputs, act, trt.float32, trtp.from_shape_expr, attrs, trt.int32, arith)


def tune_combinations(trtp, spec) -> list:
    """The one AutoTuneCombination of a stage op: its io_type_positions."""
    c = trtp.AutoTuneCombination()
    for types, positions in io_type_positions(spec).items():
        c.pos(positions, types)
    return [c]


def qwen35_specs(dtype: str = "bfloat16") -> dict[str, KernelSpec]:
    """Every plugin kernel at Qwen3.5 layer shapes: GDN 16 key / 32 value heads of 128 (4B/9B/35B-A3B;
    shared/reference/qwen35.md), conv width 4, MoE of the 35B-A3B (H 2048, 256 experts, top-8, I 512)."""
    from deploykit.plugins.gated_delta_net.launch import (
        conv_aot_spec,
        gdn_aot_spec,
        gdn_split_aot_specs,
        gdn_stage_aot_spec,
    )
    from deploykit.plugins.moe.launch import moe_aot_specs, moe_stage_aot_spec

    gdn = dict(dtype=dtype, HK=16, HV=32, K=128, V=128, scale=128**-0.5, use_qk_l2norm=1)
    split, split3 = gdn_split_aot_specs(**gdn), gdn_split_aot_specs(three=True, **gdn)
    specs = {
        "gdn_decode": gdn_aot_spec(chunked=False, **gdn),
        "gdn_chunk": gdn_aot_spec(chunked=True, **gdn),
        "gdn_chunk_blocked": gdn_aot_spec(chunked=True, solve="blocked", **gdn),
        "gdn_chunk16": gdn_aot_spec(chunked=True, chunk_size=16, block_v=32, **gdn),  # QDP tactic 4
        "gdn_split_prep": split[0],
        "gdn_split_scan": split[1],
        "gdn_split3_states": split3[1],
        "gdn_split3_out": split3[2],
        # split3 with its output side's scratch in bf16 (a benchmark candidate of the JIT launcher, no plugin)
        **{f"gdn_split3_{stage}16": spec for stage, spec in
           zip(("prep", "states", "out"), gdn_split_aot_specs(three=True, scratch16=True, **gdn), strict=True)},
        # GatedDeltaStates' tactic 2 (16 columns x 4 warps): the state scan's tile that does not spill on Ampere
        "gdn_stage_states_t2": gdn_stage_aot_spec("GatedDeltaStates", tactic=2, **gdn),
        "conv_decode": conv_aot_spec(dtype, 4, "silu", True),
        "conv_prefill": conv_aot_spec(dtype, 4, "silu", False),
    }
    for pairs in (False, True):
        for s in moe_aot_specs(
            dtype, H=2048, I=512, E=256, top_k=8, norm_topk_prob=1, decode=True, pairs=pairs
        ):
            specs["moe_" + s.kernel.__name__] = s
    for op in ("MoEGateUp", "MoEDown"):  # the grouped GEMMs at prefill's 64-row blocks (decode's are above)
        specs[f"moe_prefill_{op}"] = moe_stage_aot_spec(op, dtype, 2048, 512, 256, 8, block_m=64)
    return specs


def main(argv: list[str] | None = None) -> int:
    """python -m deploykit.plugins.aot OUT_DIR [ARCH ...] [--skip NAME,...]: writes <name>.sm<arch>.ptx and
    prints a JSON summary line per kernel, with what ptxas made of it (plugins/sass.py: registers, spilled bytes
    per thread, global loads by width). Runs without a GPU; needs TRITON_INTERPRET unset (the interpreter
    replaces kernels by Python functions)."""
    import json
    import os
    import sys
    import tempfile

    from deploykit.plugins import sass

    args = list(sys.argv[1:] if argv is None else argv)
    skip: set[str] = set()
    if "--skip" in args:
        i = args.index("--skip")
        skip = set(args[i + 1].split(","))
        del args[i : i + 2]
    out_dir, archs = args[0], [int(a) for a in args[1:]] or list(AOT_ARCHS)
    os.makedirs(out_dir, exist_ok=True)
    for arch in archs:
        for name, spec in qwen35_specs().items():
            if name in skip:
                continue
            k = compile_ptx(spec, arch)
            path = os.path.join(out_dir, f"{name}.sm{arch}.ptx")
            with tempfile.NamedTemporaryFile("w", dir=out_dir, delete=False) as f:  # no partial files
                f.write(k.ptx)
            os.replace(f.name, path)
            res = sass.read(k.cubin)
            print(
                json.dumps(
                    {
                        "name": name,
                        "arch": arch,
                        "entry": k.name,
                        "shared": k.shared,
                        "block_x": k.block_x,
                        "scratch": k.scratch,
                        "ptx": path,
                        "bytes": len(k.ptx),
                        "regs": res.regs,
                        "spill": res.spill,
                        "loads": {str(bits): n for bits, n in sorted((res.loads + res.async_copies).items())},
                        "stores": {str(bits): n for bits, n in sorted(res.stores.items())},
                    }
                ),
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
