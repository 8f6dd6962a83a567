"""MoE plugin kernels: routing (softmax, top-k, renormalisation, permutation) and grouped SwiGLU experts."""

from .launch import moe_align, moe_fwd, moe_route

__all__ = ["moe_align", "moe_fwd", "moe_route"]
