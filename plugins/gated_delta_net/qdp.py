"""Datacenter TensorRT (>= 10.10) QDP registrations of GatedDeltaRule and CausalConv1d (`tensorrt.plugin`).

Datacenter `tensorrt` is not installable on the development machine (its libs wheel is a stub that downloads
from NVIDIA's index, shared/reference/export-design.md §4.4), but its `tensorrt.plugin` package is pure Python:
tests/builder/test_qdp.py runs this module through it (10.10 to 11.4) inside a TensorRT-for-RTX parse and build
on the CPU, registration, descriptors, autotune and `aot_impl` (PTX, grid, scalars) included. Only the C++
launch of the PTX needs a GPU. Importing this module registers the plugins; it raises DeployKitError where
tensorrt is missing (the one guard is aot.import_trt_plugin).

Names and versions are the ONNX node's: op type = plugin name, domain `deploykit` = namespace, version "1".
Each plugin embeds ONE kernel (`aot_impl`); GatedDeltaRule offers four tactics, TensorRT times them at build:
  1 = recurrent kernel (decode / short prompts), 2 = chunked kernel (one persistent kernel per state tile),
  3 = chunked kernel with the blocked triangular solve, 4 = chunked kernel with 16-token chunks (launch.CHUNK16).
Shapes Hk, Hv, Dk, Dv and the conv width must be build-time constants (they are per model); B and T are dynamic.

GatedDeltaRule's stage ops (GatedDeltaPrep -> GatedDeltaStates -> GatedDeltaOut, `deploykit build --gdn-stages`)
are the three kernels of the launcher's "split3" path, one AOT plugin each, with tactics for TensorRT to time
(launch.GDN_STAGE_TACTICS: prep's two solves; the state scan's tiles, sized for batch 1, a prefill).
"""

# No `from __future__ import annotations`: tensorrt.plugin reads these annotations as real types
# (TensorDesc vs attribute types), and it matches typing.Tuple/List as its own samples write them.
from typing import List, Tuple  # noqa: UP035

from deploykit.plugins.aot import (
    aot_impl_return_type,
    build_time_constant,
    contract_descriptors,
    import_trt_plugin,
    is_build_time_constant,
    kernel_launch,
    stage_descriptors,
    string_attribute,
    tune_combinations,
)

from deploykit.ops.contract import (
    CAUSAL_CONV1D,
    GATED_DELTA_OUT,
    GATED_DELTA_PREP,
    GATED_DELTA_RULE,
    GATED_DELTA_STATES,
    GDN_CHUNK,
)

from .launch import CHUNK16, GDN_STAGE_TACTICS, conv_aot_spec, gdn_aot_spec, gdn_stage_aot_spec

trt, trtp = import_trt_plugin()
AOT_RETURN = aot_impl_return_type(trtp)

_DTYPE = {trt.float32: "float32", trt.float16: "float16", trt.bfloat16: "bfloat16"}
TACTIC_RECURRENT, TACTIC_CHUNK, TACTIC_CHUNK_BLOCKED, TACTIC_CHUNK16 = 1, 2, 3, 4
# TensorRT times every tactic when it builds the engine, on the engine's GPU, and keeps the fastest. Tactic 4:
# 16-token chunks with 32-column state tiles (launch.CHUNK16), the configuration that does not spill on sm_90.


@trtp.register("deploykit::GatedDeltaRule")
def gated_delta_rule_desc(
    q: trtp.TensorDesc,
    k: trtp.TensorDesc,
    v: trtp.TensorDesc,
    g: trtp.TensorDesc,
    beta: trtp.TensorDesc,
    initial_state: trtp.TensorDesc,
    scale: float,
    use_qk_l2norm: int,
) -> Tuple[trtp.TensorDesc, trtp.TensorDesc]:
    return contract_descriptors(
        GATED_DELTA_RULE, [q, k, v, g, beta, initial_state], q.dtype, trt.float32, trtp.from_shape_expr
    )


@trtp.autotune("deploykit::GatedDeltaRule")
def gated_delta_rule_tune(
    q: trtp.TensorDesc,
    k: trtp.TensorDesc,
    v: trtp.TensorDesc,
    g: trtp.TensorDesc,
    beta: trtp.TensorDesc,
    initial_state: trtp.TensorDesc,
    scale: float,
    use_qk_l2norm: int,
    outputs: Tuple[trtp.TensorDesc],
) -> List[trtp.AutoTuneCombination]:
    c = trtp.AutoTuneCombination()
    c.pos([0, 1, 2, 4, 6], "FP32|FP16|BF16")  # q, k, v, beta, output: the activation dtype 'T'
    c.pos([3, 5, 7], "FP32")  # g, initial_state, final_state
    c.tactics([TACTIC_RECURRENT, TACTIC_CHUNK, TACTIC_CHUNK_BLOCKED, TACTIC_CHUNK16])
    return [c]


@trtp.aot_impl("deploykit::GatedDeltaRule")
def gated_delta_rule_aot(
    q: trtp.TensorDesc,
    k: trtp.TensorDesc,
    v: trtp.TensorDesc,
    g: trtp.TensorDesc,
    beta: trtp.TensorDesc,
    initial_state: trtp.TensorDesc,
    scale: float,
    use_qk_l2norm: int,
    outputs: Tuple[trtp.TensorDesc],
    tactic: int,
) -> AOT_RETURN:
    HK, K = build_time_constant(q.shape_expr[2], "Hk"), build_time_constant(q.shape_expr[3], "Dk")
    HV, V = build_time_constant(v.shape_expr[2], "Hv"), build_time_constant(v.shape_expr[3], "Dv")
    spec = gdn_aot_spec(
        _DTYPE[q.dtype],
        HK,
        HV,
        K,
        V,
        scale,
        use_qk_l2norm,
        chunked=tactic != TACTIC_RECURRENT,
        solve="blocked" if tactic == TACTIC_CHUNK_BLOCKED else "rows",
        **(CHUNK16 if tactic == TACTIC_CHUNK16 else {}),
    )
    grid = (-(-V // spec.constexprs["BV"]), q.shape_expr[0] * HV)  # value tiles, B * Hv
    return kernel_launch(trtp, spec, [q, k, v, g, beta, initial_state, *outputs], grid, (q.shape_expr[1],))  # T


@trtp.register("deploykit::CausalConv1d")
def causal_conv1d_desc(
    x: trtp.TensorDesc, conv_state: trtp.TensorDesc, weight: trtp.TensorDesc, activation: str
) -> Tuple[trtp.TensorDesc, trtp.TensorDesc]:
    return contract_descriptors(
        CAUSAL_CONV1D, [x, conv_state, weight], x.dtype, trt.float32, trtp.from_shape_expr
    )


@trtp.autotune("deploykit::CausalConv1d")
def causal_conv1d_tune(
    x: trtp.TensorDesc, conv_state: trtp.TensorDesc, weight: trtp.TensorDesc, activation: str,
    outputs: Tuple[trtp.TensorDesc],
) -> List[trtp.AutoTuneCombination]:
    c = trtp.AutoTuneCombination()
    c.pos(list(range(5)), "FP32|FP16|BF16")  # x, conv_state, weight, output, new_conv_state: all 'T'
    return [c]


@trtp.aot_impl("deploykit::CausalConv1d")
def causal_conv1d_aot(
    x: trtp.TensorDesc,
    conv_state: trtp.TensorDesc,
    weight: trtp.TensorDesc,
    activation: str,
    outputs: Tuple[trtp.TensorDesc],
    tactic: int,
) -> AOT_RETURN:
    KW = build_time_constant(weight.shape_expr[1], "conv kernel width K")
    activation = string_attribute(activation)
    if activation not in ("silu", "none"):
        raise ValueError(f"CausalConv1d: activation must be 'silu' or 'none', got {activation!r}")
    decode = is_build_time_constant(x.shape_expr[2], 1)
    spec = conv_aot_spec(_DTYPE[x.dtype], KW, activation, decode)
    B, C, T = x.shape_expr[0], x.shape_expr[1], x.shape_expr[2]
    # T >= 1 in every profile (a 0-token call is not run)
    grid = (B, trtp.cdiv(C, spec.constexprs["BC"]), trtp.cdiv(T, spec.constexprs["BT"]))
    return kernel_launch(trtp, spec, [x, conv_state, weight, *outputs], grid, (T, C))


# --- GatedDeltaRule's stage ops: one AOT kernel each ---


def _with_tactics(combinations, op: str):
    for c in combinations:
        c.tactics(list(GDN_STAGE_TACTICS[op]))
    return combinations


def _heads(q_or_k, v_like, hv_axis: int):
    """(Hk, Dk, Hv, Dv): the build-time model dims of a stage op."""
    HK = build_time_constant(q_or_k.shape_expr[2], "Hk")
    K = build_time_constant(q_or_k.shape_expr[3], "Dk")
    HV = build_time_constant(v_like.shape_expr[hv_axis], "Hv")
    V = build_time_constant(v_like.shape_expr[len(v_like.shape_expr) - 1], "Dv")
    return HK, K, HV, V


@trtp.register("deploykit::GatedDeltaPrep")
def gated_delta_prep_desc(
    q: trtp.TensorDesc, k: trtp.TensorDesc, v: trtp.TensorDesc, g: trtp.TensorDesc, beta: trtp.TensorDesc,
    scale: float, use_qk_l2norm: int,
) -> Tuple[trtp.TensorDesc, trtp.TensorDesc, trtp.TensorDesc, trtp.TensorDesc]:
    return stage_descriptors(trt, trtp, GATED_DELTA_PREP, [q, k, v, g, beta])


@trtp.autotune("deploykit::GatedDeltaPrep")
def gated_delta_prep_tune(q, k, v, g, beta, scale: float, use_qk_l2norm: int, outputs) -> List[trtp.AutoTuneCombination]:
    return _with_tactics(tune_combinations(trtp, GATED_DELTA_PREP), "GatedDeltaPrep")


@trtp.aot_impl("deploykit::GatedDeltaPrep")
def gated_delta_prep_aot(q, k, v, g, beta, scale: float, use_qk_l2norm: int, outputs, tactic) -> AOT_RETURN:
    HK, K, HV, V = _heads(q, v, 2)
    spec = gdn_stage_aot_spec("GatedDeltaPrep", _DTYPE[q.dtype], HK, HV, K, V, scale, use_qk_l2norm,
                              tactic=tactic or 1)
    T = q.shape_expr[1]
    grid = (trtp.cdiv(T, GDN_CHUNK), q.shape_expr[0] * HV)  # chunks, B * Hv
    return kernel_launch(trtp, spec, [q, k, v, g, beta, *outputs], grid, (T,))


@trtp.register("deploykit::GatedDeltaStates")
def gated_delta_states_desc(
    k: trtp.TensorDesc, w: trtp.TensorDesc, u: trtp.TensorDesc, gcs: trtp.TensorDesc,
    initial_state: trtp.TensorDesc, use_qk_l2norm: int,
) -> Tuple[trtp.TensorDesc, trtp.TensorDesc, trtp.TensorDesc]:
    return stage_descriptors(trt, trtp, GATED_DELTA_STATES, [k, w, u, gcs, initial_state])


@trtp.autotune("deploykit::GatedDeltaStates")
def gated_delta_states_tune(k, w, u, gcs, initial_state, use_qk_l2norm: int, outputs) -> List[trtp.AutoTuneCombination]:
    return _with_tactics(tune_combinations(trtp, GATED_DELTA_STATES), "GatedDeltaStates")


@trtp.aot_impl("deploykit::GatedDeltaStates")
def gated_delta_states_aot(k, w, u, gcs, initial_state, use_qk_l2norm: int, outputs, tactic) -> AOT_RETURN:
    HK, K, HV, V = _heads(k, u, 1)
    spec = gdn_stage_aot_spec("GatedDeltaStates", _DTYPE[k.dtype], HK, HV, K, V, 1.0, use_qk_l2norm,
                              tactic=tactic or 1)
    grid = (-(-V // spec.constexprs["BVS"]), k.shape_expr[0] * HV)  # state tiles, B * Hv
    return kernel_launch(trtp, spec, [k, w, u, gcs, initial_state, *outputs], grid, (k.shape_expr[1],))


@trtp.register("deploykit::GatedDeltaOut")
def gated_delta_out_desc(
    q: trtp.TensorDesc, hs: trtp.TensorDesc, vn: trtp.TensorDesc, aqk: trtp.TensorDesc, gcs: trtp.TensorDesc,
    scale: float, use_qk_l2norm: int,
) -> trtp.TensorDesc:
    return stage_descriptors(trt, trtp, GATED_DELTA_OUT, [q, hs, vn, aqk, gcs])[0]


@trtp.autotune("deploykit::GatedDeltaOut")
def gated_delta_out_tune(q, hs, vn, aqk, gcs, scale: float, use_qk_l2norm: int, outputs) -> List[trtp.AutoTuneCombination]:
    return tune_combinations(trtp, GATED_DELTA_OUT)


@trtp.aot_impl("deploykit::GatedDeltaOut")
def gated_delta_out_aot(q, hs, vn, aqk, gcs, scale: float, use_qk_l2norm: int, outputs, tactic) -> AOT_RETURN:
    HK, K, HV, V = _heads(q, hs, 1)
    spec = gdn_stage_aot_spec("GatedDeltaOut", _DTYPE[q.dtype], HK, HV, K, V, scale, use_qk_l2norm)
    T = q.shape_expr[1]
    grid = (trtp.cdiv(T, GDN_CHUNK), -(-V // spec.constexprs["BVO"]), q.shape_expr[0] * HV)
    return kernel_launch(trtp, spec, [q, hs, vn, aqk, gcs, *outputs], grid, (T,))
