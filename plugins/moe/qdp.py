"""Datacenter TensorRT (>= 10.10) QDP registration of MoE (`tensorrt.plugin`). NOT EXECUTED here: datacenter
`tensorrt` is not installable on the development machine (see plugins/gated_delta_net/qdp.py). Raises
DeployKitError where tensorrt is missing (aot.import_trt_plugin is the one guard).

MoE needs five kernels in sequence (route, align, gate_up, down, combine; docs/kernels.md) and scratch
buffers, so it cannot be a single-kernel `aot_impl`. It is registered with a JIT `@trtp.impl` that calls the
torch launcher on TensorRT's stream (needs Python at runtime). A Python-free engine needs either the C++
IPluginV3 path (plugins/tensorrt_v3.py, which enqueues the same launchers' kernels) or a contract change that
splits MoE into single-kernel ops (MoERoute, MoEExperts); both are recorded as open in docs/kernels.md.
"""

# No `from __future__ import annotations`: tensorrt.plugin reads these annotations as real types
# (TensorDesc vs attribute types), and it matches typing.Tuple as its own samples write them.
from typing import Tuple  # noqa: UP035

from deploykit.ops.contract import MOE
from deploykit.plugins.aot import contract_descriptors, import_trt_plugin

from .launch import moe_fwd

trt, trtp = import_trt_plugin()


@trtp.register("deploykit::MoE")
def moe_desc(
    hidden: trtp.TensorDesc,
    router_logits: trtp.TensorDesc,
    gate_up: trtp.TensorDesc,
    down: trtp.TensorDesc,
    top_k: int,
    norm_topk_prob: int,
) -> trtp.TensorDesc:
    return contract_descriptors(
        MOE, [hidden, router_logits, gate_up, down], hidden.dtype, trt.float32, trtp.from_shape_expr
    )[0]


def _as_torch(t: trtp.Tensor):
    """Zero-copy torch view of a trtp.Tensor. Its __cuda_array_interface__ refuses BF16 (tensorrt.plugin
    `_tensor.py`), so bf16 goes through an int16 interface and a dtype view."""
    import torch

    if t.dtype != trt.DataType.BF16:
        return torch.as_tensor(t, device="cuda")
    cai = {
        "shape": tuple(t.shape),
        "typestr": "<i2",
        "data": (t.data_ptr, False),
        "version": 3,
        "strides": tuple(2 * s for s in t.strides),
    }
    return torch.as_tensor(type("I16View", (), {"__cuda_array_interface__": cai})(), device="cuda").view(
        torch.bfloat16
    )


@trtp.impl("deploykit::MoE")
def moe_impl(
    hidden: trtp.Tensor,
    router_logits: trtp.Tensor,
    gate_up: trtp.Tensor,
    down: trtp.Tensor,
    top_k: int,
    norm_topk_prob: int,
    outputs: Tuple[trtp.Tensor],
    stream: int,
) -> None:
    import torch

    with torch.cuda.stream(torch.cuda.ExternalStream(stream)):
        out = moe_fwd(_as_torch(hidden), _as_torch(router_logits), _as_torch(gate_up), _as_torch(down),
                      top_k, norm_topk_prob)
        _as_torch(outputs[0]).copy_(out)
