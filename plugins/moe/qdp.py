"""Datacenter TensorRT (>= 10.10) QDP registration of MoE (`tensorrt.plugin`). Run on the CPU through NVIDIA's
tensorrt.plugin by tests/builder/test_qdp.py (see plugins/gated_delta_net/qdp.py). Raises DeployKitError where
tensorrt is missing (aot.import_trt_plugin is the one guard).

MoE itself needs several kernels in sequence (docs/kernels.md) and scratch buffers, so it cannot be a
single-kernel `aot_impl`: `deploykit::MoE` is registered with a JIT `@trtp.impl` that calls the torch launcher
on TensorRT's stream (needs Python at runtime). For a Python-free engine the builder lowers each MoE node to
MoE's stage ops (`deploykit build --moe-stages`, deploykit/build/lower.py), and each stage below is an AOT
plugin of exactly one kernel, launched with the arguments in the QDP order (inputs, int scalars, outputs).
Model dims (E, H, I) and the attributes must be build-time constants; N is dynamic.
"""

# No `from __future__ import annotations`: tensorrt.plugin reads these annotations as real types
# (TensorDesc vs attribute types), and it matches typing.Tuple as its own samples write them.
from typing import Tuple  # noqa: UP035

from deploykit.plugins.aot import (
    aot_impl_return_type,
    build_time_constant,
    contract_descriptors,
    import_trt_plugin,
    kernel_launch,
    stage_descriptors,
    tune_combinations,
)

from deploykit.ops.contract import (
    MOE,
    MOE_ALIGN,
    MOE_DOWN,
    MOE_GATE_UP,
    MOE_PAIR_DOWN,
    MOE_PAIR_GATE_UP,
    MOE_ROUTE,
)

from .launch import moe_fwd, moe_stage_aot_spec

trt, trtp = import_trt_plugin()
AOT_RETURN = aot_impl_return_type(trtp)

_DTYPE = {trt.float32: "float32", trt.float16: "float16", trt.bfloat16: "bfloat16"}


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
        MOE, [hidden, router_logits, gate_up, down], hidden.dtype, trt.float32, trtp.from_shape_expr,
        {"top_k": top_k, "norm_topk_prob": norm_topk_prob},  # top_k: its requirement is checked here
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


# --- MoE's stage ops: one AOT kernel each ---


def _launch(spec, tensors, grid_x, tiled_extent: int | None = None, extra_scalars=()):
    """aot_impl's return for one stage kernel: grid (grid_x, cdiv(tiled_extent, BN)), the op's int scalars.
    `tensors`: the op's input and output descriptors, in order."""
    grid = (grid_x,) if tiled_extent is None else (grid_x, -(-tiled_extent // spec.constexprs["BN"]))
    return kernel_launch(trtp, spec, tensors, grid, tuple(extra_scalars))


@trtp.register("deploykit::MoEPairGateUp")
def moe_pair_gate_up_desc(
    hidden: trtp.TensorDesc, router_logits: trtp.TensorDesc, gate_up: trtp.TensorDesc, top_k: int,
    norm_topk_prob: int,
) -> Tuple[trtp.TensorDesc, trtp.TensorDesc, trtp.TensorDesc]:
    return stage_descriptors(trt, trtp, MOE_PAIR_GATE_UP, [hidden, router_logits, gate_up],
                             dict(top_k=top_k, norm_topk_prob=norm_topk_prob))


@trtp.autotune("deploykit::MoEPairGateUp")
def moe_pair_gate_up_tune(hidden, router_logits, gate_up, top_k: int, norm_topk_prob: int, outputs):
    return tune_combinations(trtp, MOE_PAIR_GATE_UP)


@trtp.aot_impl("deploykit::MoEPairGateUp")
def moe_pair_gate_up_aot(hidden, router_logits, gate_up, top_k: int, norm_topk_prob: int, outputs, tactic) -> AOT_RETURN:
    E, I2 = build_time_constant(gate_up.shape_expr[0], "E"), build_time_constant(gate_up.shape_expr[1], "2I")
    H = build_time_constant(hidden.shape_expr[1], "H")
    spec = moe_stage_aot_spec("MoEPairGateUp", _DTYPE[hidden.dtype], H, I2 // 2, E, top_k, norm_topk_prob)
    return _launch(spec, [hidden, router_logits, gate_up, *outputs], hidden.shape_expr[0] * top_k, I2 // 2)


@trtp.register("deploykit::MoEPairDown")
def moe_pair_down_desc(
    inter: trtp.TensorDesc, down: trtp.TensorDesc, topk_ids: trtp.TensorDesc, topk_weights: trtp.TensorDesc
) -> trtp.TensorDesc:
    return stage_descriptors(trt, trtp, MOE_PAIR_DOWN, [inter, down, topk_ids, topk_weights], {})[0]


@trtp.autotune("deploykit::MoEPairDown")
def moe_pair_down_tune(inter, down, topk_ids, topk_weights, outputs):
    return tune_combinations(trtp, MOE_PAIR_DOWN)


@trtp.aot_impl("deploykit::MoEPairDown")
def moe_pair_down_aot(inter, down, topk_ids, topk_weights, outputs, tactic) -> AOT_RETURN:
    E, H, I = (build_time_constant(down.shape_expr[a], n) for a, n in enumerate(("E", "H", "I")))
    K = build_time_constant(topk_ids.shape_expr[1], "K")
    spec = moe_stage_aot_spec("MoEPairDown", _DTYPE[inter.dtype], H, I, E, K)
    return _launch(spec, [inter, down, topk_ids, topk_weights, *outputs], inter.shape_expr[0], H)


@trtp.register("deploykit::MoERoute")
def moe_route_desc(
    router_logits: trtp.TensorDesc, top_k: int, norm_topk_prob: int
) -> Tuple[trtp.TensorDesc, trtp.TensorDesc]:
    return stage_descriptors(trt, trtp, MOE_ROUTE, [router_logits],
                             dict(top_k=top_k, norm_topk_prob=norm_topk_prob))


@trtp.autotune("deploykit::MoERoute")
def moe_route_tune(router_logits, top_k: int, norm_topk_prob: int, outputs):
    return tune_combinations(trtp, MOE_ROUTE)


@trtp.aot_impl("deploykit::MoERoute")
def moe_route_aot(router_logits, top_k: int, norm_topk_prob: int, outputs, tactic) -> AOT_RETURN:
    E = build_time_constant(router_logits.shape_expr[1], "E")
    spec = moe_stage_aot_spec("MoERoute", _DTYPE[router_logits.dtype], 0, 0, E, top_k, norm_topk_prob)
    return _launch(spec, [router_logits, *outputs], router_logits.shape_expr[0])


@trtp.register("deploykit::MoEAlign")
def moe_align_desc(
    router_logits: trtp.TensorDesc, topk_ids: trtp.TensorDesc, block_m: int
) -> Tuple[trtp.TensorDesc, trtp.TensorDesc]:
    return stage_descriptors(trt, trtp, MOE_ALIGN, [router_logits, topk_ids], dict(block_m=block_m))


@trtp.autotune("deploykit::MoEAlign")
def moe_align_tune(router_logits, topk_ids, block_m: int, outputs):
    return tune_combinations(trtp, MOE_ALIGN)


@trtp.aot_impl("deploykit::MoEAlign")
def moe_align_aot(router_logits, topk_ids, block_m: int, outputs, tactic) -> AOT_RETURN:
    E = build_time_constant(router_logits.shape_expr[1], "E")
    pairs = topk_ids.shape_expr[0] * topk_ids.shape_expr[1]
    nb = outputs[1].shape_expr[0]  # block_expert's length: the contract's NB
    spec = moe_stage_aot_spec("MoEAlign", _DTYPE[router_logits.dtype], 0, 0, E, 1, block_m=block_m)
    return _launch(spec, [router_logits, topk_ids, *outputs], 1, None, [pairs, nb])


@trtp.register("deploykit::MoEGateUp")
def moe_gate_up_desc(
    hidden: trtp.TensorDesc, gate_up: trtp.TensorDesc, slot_pair: trtp.TensorDesc, block_expert: trtp.TensorDesc,
    top_k: int, block_m: int,
) -> trtp.TensorDesc:
    return stage_descriptors(trt, trtp, MOE_GATE_UP, [hidden, gate_up, slot_pair, block_expert],
                             dict(top_k=top_k, block_m=block_m))[0]


@trtp.autotune("deploykit::MoEGateUp")
def moe_gate_up_tune(hidden, gate_up, slot_pair, block_expert, top_k: int, block_m: int, outputs):
    return tune_combinations(trtp, MOE_GATE_UP)


@trtp.aot_impl("deploykit::MoEGateUp")
def moe_gate_up_aot(hidden, gate_up, slot_pair, block_expert, top_k: int, block_m: int, outputs, tactic) -> AOT_RETURN:
    E, I2 = build_time_constant(gate_up.shape_expr[0], "E"), build_time_constant(gate_up.shape_expr[1], "2I")
    H = build_time_constant(hidden.shape_expr[1], "H")
    spec = moe_stage_aot_spec("MoEGateUp", _DTYPE[hidden.dtype], H, I2 // 2, E, top_k, block_m=block_m)
    tensors = [hidden, gate_up, slot_pair, block_expert, *outputs]
    return _launch(spec, tensors, block_expert.shape_expr[0], I2 // 2, [hidden.shape_expr[0] * top_k])


@trtp.register("deploykit::MoEDown")
def moe_down_desc(
    inter: trtp.TensorDesc, down: trtp.TensorDesc, slot_pair: trtp.TensorDesc, block_expert: trtp.TensorDesc,
    topk_weights: trtp.TensorDesc, block_m: int,
) -> trtp.TensorDesc:
    return stage_descriptors(trt, trtp, MOE_DOWN, [inter, down, slot_pair, block_expert, topk_weights],
                             dict(block_m=block_m))[0]


@trtp.autotune("deploykit::MoEDown")
def moe_down_tune(inter, down, slot_pair, block_expert, topk_weights, block_m: int, outputs):
    return tune_combinations(trtp, MOE_DOWN)


@trtp.aot_impl("deploykit::MoEDown")
def moe_down_aot(inter, down, slot_pair, block_expert, topk_weights, block_m: int, outputs, tactic) -> AOT_RETURN:
    E, H, I = (build_time_constant(down.shape_expr[a], n) for a, n in enumerate(("E", "H", "I")))
    pairs = topk_weights.shape_expr[0] * topk_weights.shape_expr[1]
    spec = moe_stage_aot_spec("MoEDown", _DTYPE[inter.dtype], H, I, E, 1, block_m=block_m)
    tensors = [inter, down, slot_pair, block_expert, topk_weights, *outputs]
    return _launch(spec, tensors, block_expert.shape_expr[0], H, [pairs])
