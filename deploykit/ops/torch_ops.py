"""The contract's ops as torch.library custom ops: `torch.ops.deploykit.{gated_delta_rule, causal_conv1d, moe}`.

Arguments are the contract's inputs in order, then every attribute in contract order (plugin_version
included) with no Python defaults: torch.export drops keyword arguments equal to their defaults, so
callers pass every attribute explicitly and the exporter sees them all. The eager implementation is
the real math (chosen through ops.registry); the fake implementation derives shapes and dtypes from
the contract's `infer_shapes` / `output_dtypes`, so export, ONNX and TensorRT share one shape rule.
"""

from __future__ import annotations

import torch

from . import registry
from .causal_conv1d import causal_conv1d as _conv_fast
from .causal_conv1d import naive_causal_conv1d
from .contract import CAUSAL_CONV1D, GATED_DELTA_RULE, MOE, OpSpec
from .gated_delta_rule import chunk_gated_delta_rule, naive_gated_delta_rule
from .moe import grouped_moe, naive_moe

Tensor = torch.Tensor

# Default backends. The chunked GDN only pays off past a few tokens (decode T=1 is one recurrent step).
registry.register("gated_delta_rule", "naive", naive_gated_delta_rule, priority=0)
registry.register("gated_delta_rule", "chunked", chunk_gated_delta_rule, priority=10,
                  supports=lambda q, *rest: q.shape[1] > 1)
registry.register("causal_conv1d", "naive", naive_causal_conv1d, priority=0)
registry.register("causal_conv1d", "conv1d", _conv_fast, priority=10)
registry.register("moe", "naive", naive_moe, priority=0)
registry.register("moe", "grouped", grouped_moe, priority=10)


def empty_outputs(spec: OpSpec, tensors: tuple[Tensor, ...], attrs: dict | None = None, *,
                  check: bool = False) -> list[Tensor]:
    """Uninitialised outputs shaped by the contract's shape rule (derived dims read `attrs`), on the first
    input's device; 'T' dtype = the first 'T'-typed input's dtype. The fake implementations return them; the
    stage launchers (plugins/moe/launch.py, plugins/gated_delta_net/launch.py) fill them, through
    launch_outputs. `check`: as infer_shapes'."""
    shapes = spec.infer_shapes([tuple(t.shape) for t in tensors], attrs, check=check)  # count and ranks first
    act = tensors[spec.activation_input].dtype
    dtypes = spec.output_dtypes(str(act).removeprefix("torch."))
    return [tensors[0].new_empty(shape, dtype=getattr(torch, dt)) for shape, dt in zip(shapes, dtypes, strict=True)]


def launch_outputs(spec: OpSpec, tensors: tuple[Tensor, ...], attrs: dict | None = None) -> list[Tensor]:
    """empty_outputs with every symbol checked against the concrete input shapes: a stage launcher's kernel
    trusts its dims, so one that disagrees between two inputs (hidden's H against gate_up's H), or breaks one
    of the op's requirements (OpSpec.requires: S = NB * block_m), must be a ValueError naming them, not a read
    past a buffer's end; so must a dtype other than the contract's, which its TensorRT plugin refuses
    (OpSpec.check_dtypes says why). Fakes skip this: their dims may be symbolic."""
    outputs = empty_outputs(spec, tensors, attrs, check=True)  # count and ranks first: dtypes go by position
    spec.check_dtypes([str(t.dtype).removeprefix("torch.") for t in tensors])
    return outputs


def _check_version(spec: OpSpec, plugin_version: str) -> None:
    if plugin_version != spec.plugin_version:
        raise ValueError(f"{spec.name}: plugin_version {plugin_version!r} is not the contract's "
                         f"{spec.plugin_version!r}")


@torch.library.custom_op("deploykit::gated_delta_rule", mutates_args=())
def gated_delta_rule(q: Tensor, k: Tensor, v: Tensor, g: Tensor, beta: Tensor, initial_state: Tensor,
                     scale: float, use_qk_l2norm: int, plugin_version: str) -> tuple[Tensor, Tensor]:
    _check_version(GATED_DELTA_RULE, plugin_version)
    args = (q, k, v, g, beta, initial_state)
    fn = registry.select("gated_delta_rule", *args).fn
    o, s = fn(*args, scale=scale, use_qk_l2norm=use_qk_l2norm)
    return o.contiguous(), s.to(torch.float32).contiguous()


@gated_delta_rule.register_fake
def _(q, k, v, g, beta, initial_state, scale, use_qk_l2norm, plugin_version):
    return tuple(empty_outputs(GATED_DELTA_RULE, (q, k, v, g, beta, initial_state)))


@torch.library.custom_op("deploykit::causal_conv1d", mutates_args=())
def causal_conv1d(x: Tensor, conv_state: Tensor, weight: Tensor,
                  activation: str, plugin_version: str) -> tuple[Tensor, Tensor]:
    _check_version(CAUSAL_CONV1D, plugin_version)
    fn = registry.select("causal_conv1d", x, conv_state, weight).fn
    out, state = fn(x, conv_state, weight, activation=activation)
    return out.contiguous(), state.contiguous()


@causal_conv1d.register_fake
def _(x, conv_state, weight, activation, plugin_version):
    return tuple(empty_outputs(CAUSAL_CONV1D, (x, conv_state, weight)))


@torch.library.custom_op("deploykit::moe", mutates_args=())
def moe(hidden: Tensor, router_logits: Tensor, gate_up: Tensor, down: Tensor,
        top_k: int, norm_topk_prob: int, plugin_version: str) -> Tensor:
    _check_version(MOE, plugin_version)
    fn = registry.select("moe", hidden, router_logits, gate_up, down).fn
    return fn(hidden, router_logits, gate_up, down, top_k=top_k, norm_topk_prob=norm_topk_prob).contiguous()


@moe.register_fake
def _(hidden, router_logits, gate_up, down, top_k, norm_topk_prob, plugin_version):
    return empty_outputs(MOE, (hidden, router_logits, gate_up, down))[0]
