"""torch.ops.deploykit.* -> ONNX: the custom translation table for `torch.onnx.export(dynamo=True)`.

GatedDeltaRule and MoE become single nodes of the `deploykit` domain carrying every contract attribute
explicitly (ONNX Runtime does not fill function-attribute defaults) plus `plugin_namespace`, which makes
TensorRT prefer a registered plugin over the attached function body. CausalConv1d is not in the ONNX
domain (contract: in_onnx_domain=False): depthwise Conv covers it, so it lowers to standard
Concat(state, x) -> Conv(group=C) -> [SiLU] and Slice(last K-1 columns) for the new state, with fp32
math like the naive reference.
"""

from __future__ import annotations

from deploykit.errors import DeployKitError
from deploykit.export.schemas import PLUGIN_NAMESPACE_ATTR, register_schemas
from deploykit.ops.contract import CAUSAL_CONV1D, DOMAIN, GATED_DELTA_RULE, MOE

INT64_MAX = 2**63 - 1  # "to the end" for ONNX Slice
FLOAT = 1  # onnx.TensorProto.FLOAT


def _gated_delta_rule(op, dk):
    def translate(q, k, v, g, beta, initial_state, scale, use_qk_l2norm, plugin_version):
        return dk.GatedDeltaRule(
            q,
            k,
            v,
            g,
            beta,
            initial_state,
            scale=float(scale),
            use_qk_l2norm=int(use_qk_l2norm),
            plugin_version=plugin_version,
            plugin_namespace=PLUGIN_NAMESPACE_ATTR.default,
            _outputs=2,
        )

    return translate


def _moe(op, dk):
    def translate(hidden, router_logits, gate_up, down, top_k, norm_topk_prob, plugin_version):
        return dk.MoE(
            hidden,
            router_logits,
            gate_up,
            down,
            top_k=int(top_k),
            norm_topk_prob=int(norm_topk_prob),
            plugin_version=plugin_version,
            plugin_namespace=PLUGIN_NAMESPACE_ATTR.default,
        )

    return translate


def _causal_conv1d(op, dk):
    def translate(x, conv_state, weight, activation, plugin_version):
        shape = weight.shape
        if shape is None or not all(isinstance(d, int) for d in shape):
            raise DeployKitError(
                f"CausalConv1d export needs a static weight shape, got {shape}",
                "the conv weight must be a model parameter",
            )
        channels, width = shape
        full = op.Concat(op.CastLike(conv_state, x), x, axis=2)  # [B,C,K-1+T]
        w = op.Unsqueeze(op.Cast(weight, to=FLOAT), op.Constant(value_ints=[1]))  # [C,1,K]
        y = op.Conv(op.Cast(full, to=FLOAT), w, group=channels)  # valid conv: T outputs
        if activation == "silu":
            y = op.Mul(y, op.Sigmoid(y))
        elif activation != "none":
            raise DeployKitError(f"CausalConv1d: unknown activation {activation!r}", "use 'silu' or 'none'")
        new_state = op.Slice(
            full,
            op.Constant(value_ints=[-(width - 1)]),
            op.Constant(value_ints=[INT64_MAX]),
            op.Constant(value_ints=[2]),
        )
        return op.CastLike(y, x), new_state

    return translate


def translation_table(opset: int) -> dict:
    """{torch op overload: onnxscript function} for every op of the contract."""
    import onnxscript
    import torch

    import deploykit.ops.torch_ops  # noqa: F401  (registers torch.ops.deploykit.*)

    register_schemas()
    op = onnxscript.values.Opset("", opset)
    dk = onnxscript.values.Opset(DOMAIN, 1)
    ops = torch.ops.deploykit
    makers = {
        GATED_DELTA_RULE.torch_name: _gated_delta_rule,
        MOE.torch_name: _moe,
        CAUSAL_CONV1D.torch_name: _causal_conv1d,
    }
    return {getattr(ops, name).default: make(op, dk) for name, make in makers.items()}
