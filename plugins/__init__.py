"""deploykit plugin kernels (importable as `deploykit.plugins`).

One torch-facing launcher per contract op (deploykit/ops/contract.py), each with exactly the signature
of that op's naive reference in deploykit/ops (contract inputs in order, then attributes), returning the
same outputs. These names are stable: TensorRT plugins (plugins/tensorrt_v3.py's `enqueue`, the
datacenter QDP registrations in plugins/<op>/qdp.py) and benchmarks call them.

    GatedDeltaRule -> deploykit.plugins.gated_delta_net.gated_delta_rule_fwd(q, k, v, g, beta, initial_state,
                                                                           scale, use_qk_l2norm=1)
    CausalConv1d   -> deploykit.plugins.gated_delta_net.causal_conv1d_fwd(x, conv_state, weight, activation="silu")
    MoE            -> deploykit.plugins.moe.moe_fwd(hidden, router_logits, gate_up, down, top_k, norm_topk_prob=1)
    MoE's stages   -> deploykit.plugins.moe.moe_{route,align,gate_up,down,pair_gate_up,pair_down}_fwd
    GatedDeltaRule's stages -> deploykit.plugins.gated_delta_net.gated_delta_{prep,states,out}_fwd

`LAUNCHERS` maps the contract op name to the launcher's import path; importing this package imports
neither torch nor triton (the planner must start without them). `register_triton_backends()` makes the torch
custom ops (deploykit/ops/torch_ops.py) run these kernels on CUDA tensors.
"""

from __future__ import annotations

import importlib

LAUNCHERS = {
    "GatedDeltaRule": "deploykit.plugins.gated_delta_net:gated_delta_rule_fwd",
    "CausalConv1d": "deploykit.plugins.gated_delta_net:causal_conv1d_fwd",
    "MoE": "deploykit.plugins.moe:moe_fwd",
    # MoE's single-kernel stages (contract STAGE_OPS), what the builder's lowering emits
    "MoERoute": "deploykit.plugins.moe:moe_route_fwd",
    "MoEAlign": "deploykit.plugins.moe:moe_align_fwd",
    "MoEGateUp": "deploykit.plugins.moe:moe_gate_up_fwd",
    "MoEDown": "deploykit.plugins.moe:moe_down_fwd",
    "MoEPairGateUp": "deploykit.plugins.moe:moe_pair_gate_up_fwd",
    "MoEPairDown": "deploykit.plugins.moe:moe_pair_down_fwd",
    # GatedDeltaRule's single-kernel stages (contract STAGE_OPS)
    "GatedDeltaPrep": "deploykit.plugins.gated_delta_net:gated_delta_prep_fwd",
    "GatedDeltaStates": "deploykit.plugins.gated_delta_net:gated_delta_states_fwd",
    "GatedDeltaOut": "deploykit.plugins.gated_delta_net:gated_delta_out_fwd",
}


def launcher(op_name: str):
    """The launcher callable for a contract op name (imports torch and triton)."""
    module, attr = LAUNCHERS[op_name].split(":")
    return getattr(importlib.import_module(module), attr)


TRITON_BACKEND = "triton"
TRITON_PRIORITY = (
    20  # above the ops' own CPU forms (naive 0, chunked/grouped/conv1d 10; deploykit/ops/torch_ops.py)
)


def register_triton_backends(priority: int = TRITON_PRIORITY) -> None:
    """Makes torch.ops.deploykit.* run these kernels on CUDA tensors (deploykit.ops.registry backend 'triton').
    Explicit, not an import side effect: CPU-only users never import triton this way."""
    from deploykit.ops import registry

    on_cuda = lambda first, *rest: first.is_cuda  # noqa: E731
    for name, op in (
        ("GatedDeltaRule", "gated_delta_rule"),
        ("CausalConv1d", "causal_conv1d"),
        ("MoE", "moe"),
    ):
        registry.register(op, TRITON_BACKEND, launcher(name), priority=priority, supports=on_cuda)
