"""Tracing deploykit's model to an in-memory ONNX IR graph whose weights are still on the meta device.

Graph inputs:  input_ids [batch,tokens] int64, position_ids [batch,tokens] int64,
               attention_mask [batch,past+tokens] int64, past.{i}.key|value [batch,Hkv,past,D],
               past.{i}.conv [batch,C,K-1], past.{i}.recurrent [batch,Hv,Dk,Dv] fp32
Graph outputs: logits [batch,tokens,vocab], present.{i}.* (same layout, past -> past+tokens)
"""

from __future__ import annotations

import logging
import warnings

import torch

# highest opset of the recorded ONNX-TensorRT parser (10.x): profiles/tensorrt/onnx_tensorrt_ops.yaml
OPSET = 20
# torch.export specialises sizes 0 and 1, so the example shapes are >= 2 (export-design.md, gotchas).
EXAMPLE_BATCH, EXAMPLE_TOKENS, EXAMPLE_PAST = 2, 3, 2


class _Flat(torch.nn.Module):
    """forward(input_ids, position_ids, attention_mask, *state) -> (logits, *new_state), flat for ONNX."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids, position_ids, attention_mask, *state):
        logits, new_state = self.model(input_ids, position_ids, attention_mask, tuple(state))
        return (logits, *new_state)


def _examples(model, dtype: torch.dtype, device):
    b, t, p = EXAMPLE_BATCH, EXAMPLE_TOKENS, EXAMPLE_PAST
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, model.config.vocab_size, (b, t), generator=gen)
    pos = (p + torch.arange(t)).expand(b, t).contiguous()
    mask = torch.ones(b, p + t, dtype=torch.int64)
    # distinct tensors: aliased example inputs get merged into one graph input
    state = tuple(
        torch.randn(s, generator=gen).to(dt)
        for s, dt in zip(model.state_shapes(b, p), model.state_dtypes(dtype), strict=True)
    )
    # on the model's device (meta): nothing is computed, only shapes and dtypes are traced
    return tuple(x.to(device) for x in (ids, pos, mask, *state))


def _dynamic_shapes(model):
    batch, tokens, past = torch.export.Dim("batch"), torch.export.Dim("tokens"), torch.export.Dim("past")
    specs = []
    for name in model.state_names():
        specs.append({0: batch, 2: past} if name.endswith(("key", "value")) else {0: batch})
    # forward(a, b, c, *state): the varargs need one nested tuple of specs
    return ({0: batch, 1: tokens}, {0: batch, 1: tokens}, {0: batch, 1: torch.export.Dim.AUTO}, tuple(specs))


def trace(model: torch.nn.Module, dtype: torch.dtype):
    """torch.onnx.export (dynamo) of a meta-device model -> (onnx_ir.Model, input names, output names)."""
    from deploykit.export.translation import translation_table

    inputs = ["input_ids", "position_ids", "attention_mask", *model.state_names("past")]
    outputs = ["logits", *model.state_names("present")]
    # torch.onnx logs missing torchvision ops and warns about dim renames it handles itself: not actionable
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (UserWarning, FutureWarning))
        program = torch.onnx.export(
            _Flat(model).eval(),
            _examples(model, dtype, next(model.parameters()).device),
            dynamo=True,
            dynamic_shapes=_dynamic_shapes(model),
            custom_translation_table=translation_table(OPSET),
            opset_version=OPSET,
            input_names=inputs,
            output_names=outputs,
            optimize=False,
            verbose=False,
        )
    return program.model, inputs, outputs


def optimize_without_weights(ir_model) -> None:
    """onnxscript's optimizer (constant folding, dead code, cast/identity cleanup) with meta weights hidden.

    Weights stay opaque (their const_value is detached for the pass), so nothing tries to read them; small
    real constants (shape arithmetic, folded scalars) are folded as usual."""
    import onnxscript

    graph = ir_model.graph
    hidden = {}
    for name, value in graph.initializers.items():
        raw = getattr(value.const_value, "raw", None)
        if isinstance(raw, torch.Tensor) and raw.device.type == "meta":
            hidden[name] = value.const_value
            value.const_value = None
    quiet = logging.getLogger("onnx_ir.passes.common.initializer_deduplication")  # warns per hidden weight
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        onnxscript.optimizer.optimize_ir(ir_model)
    finally:
        quiet.setLevel(level)
        for name, const in hidden.items():
            if name in graph.initializers:
                graph.initializers[name].const_value = const
