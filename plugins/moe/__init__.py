"""MoE plugin kernels: routing (softmax, top-k, renormalisation, permutation) and grouped SwiGLU experts.

The launchers are imported on first use, so that `deploykit.plugins.moe.paths` (the path rules, which the
builder's lowering reads) imports neither torch nor triton."""

_LAUNCHERS = (
    "moe_align_fwd",
    "moe_down_fwd",
    "moe_fwd",
    "moe_gate_up_fwd",
    "moe_pair_down_fwd",
    "moe_pair_gate_up_fwd",
    "moe_route_fwd",
)
__all__ = list(_LAUNCHERS)


def __getattr__(name: str):
    if name in _LAUNCHERS:
        from . import launch

        return getattr(launch, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
