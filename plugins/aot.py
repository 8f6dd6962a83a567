"""Ahead-of-time (AOT) compilation of the plugin kernels to PTX, and the ONE import guard for datacenter TensorRT.

`compile_ptx` needs no GPU: Triton lowers a kernel for any `GPUTarget("cuda", sm, 32)` on the CPU (ptxas ships
with the triton wheel). A TensorRT QDP `@trtp.aot_impl` returns exactly such a (kernel name, PTX, launch params,
extra scalar args) tuple, so the engine runs without Python (Triton Inference Server, Jetson).

Argument convention of every AOT-able kernel (required by QDP AOT): input pointers in contract order, then the
runtime integer scalars (passed as `SymIntExprs`), then output pointers. Attributes are constexprs: "plugin
attributes are not serialized into the engine when using an AOT implementation" (tensorrt.plugin docs), so
they must be baked into the PTX.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from deploykit.errors import DeployKitError

AOT_ARCHS = (80, 87, 90)  # A100/A10-class, Jetson AGX Orin, H100/H200 (shared/reference/gpus.yaml)
WARP_SIZE = 32  # every NVIDIA GPU Triton targets
TRITON_DTYPE = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}  # contract dtype -> Triton signature


@dataclass(frozen=True)
class KernelSpec:
    """One kernel specialisation: runtime args (name -> Triton type, in call order) and constexpr values."""

    kernel: Callable
    args: dict[str, str]
    constexprs: dict[str, Any]
    num_warps: int = 4
    num_stages: int | None = None
    grid: tuple[str, ...] = field(default=())  # documentation: how the plugin derives the grid


@dataclass(frozen=True)
class AotKernel:
    name: str  # symbol in the PTX (`.entry`), what aot_impl returns as kernel name
    ptx: str
    arch: int
    num_warps: int
    shared: int  # dynamic shared memory bytes the launch must request

    @property
    def block_x(self) -> int:
        return self.num_warps * WARP_SIZE


def compile_ptx(spec: KernelSpec, arch: int) -> AotKernel:
    """Compiles one specialisation for sm_<arch> without a GPU."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    signature = dict(spec.args)
    signature.update({name: "constexpr" for name in spec.constexprs})
    options = {"num_warps": spec.num_warps}
    if spec.num_stages is not None:
        options["num_stages"] = spec.num_stages
    src = ASTSource(fn=spec.kernel, signature=signature, constexprs=dict(spec.constexprs))
    ck = triton.compile(src, target=GPUTarget("cuda", arch, WARP_SIZE), options=options)
    return AotKernel(name=ck.metadata.name, ptx=ck.asm["ptx"], arch=arch,
                     num_warps=ck.metadata.num_warps, shared=ck.metadata.shared)


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
    return trt, trtp


def contract_descriptors(spec, inputs: list, act_dtype, fp32_dtype, from_shape_expr: Callable) -> tuple:
    """Output descriptors of a contract op from its input descriptors, by the contract's single shape rule
    (`OpSpec.output_dims`): each output axis is a copy of one input axis. dtype 'T' = first 'T' input's dtype."""
    shapes = spec.infer_shapes([tuple(d.shape_expr[a] for a in range(len(s.dims)))
                                for d, s in zip(inputs, spec.inputs)])
    dtypes = [act_dtype if o.dtype == "T" else fp32_dtype for o in spec.outputs]
    return tuple(from_shape_expr(tuple(shape), dtype) for shape, dtype in zip(shapes, dtypes))
