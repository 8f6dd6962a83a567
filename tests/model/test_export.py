"""torch.export of the model with symbolic B, T, P: custom ops stay single nodes, the program runs at other sizes."""

import torch

from deploykit.model.loader import load_model

from .helpers import REL_TOL, rel


def sample(model, B, T, P, seed=0):
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, model.config.vocab_size, (B, T), generator=gen)
    pos = (P + torch.arange(T))[None].expand(B, T).contiguous()
    mask = torch.ones(B, P + T, dtype=torch.long)
    state = tuple(torch.randn(s, generator=gen).to(dt) * 0.1
                  for s, dt in zip(model.state_shapes(B, P), model.state_dtypes(torch.float32), strict=True))
    return ids, pos, mask, state


def dynamic_shapes(model):
    B, T, P = torch.export.Dim("B", max=64), torch.export.Dim("T", max=4096), torch.export.Dim("P", max=8192)
    S = torch.export.Dim("S", max=4096 + 8192)  # = P + T; export derives the relation
    states = tuple({0: B, 2: P} if n.endswith((".key", ".value")) else {0: B} for n in model.state_names())
    return ({0: B, 1: T}, {0: B, 1: T}, {0: B, 1: S}, states)


def test_export_dynamic_and_run_other_sizes(tiny_checkpoint):
    model = load_model(tiny_checkpoint("moe"), dtype=torch.float32)
    ep = torch.export.export(model, sample(model, 2, 3, 2), dynamic_shapes=dynamic_shapes(model))
    targets = [n.target for n in ep.graph.nodes if n.op == "call_function"]
    c = model.config
    assert targets.count(torch.ops.deploykit.gated_delta_rule.default) == len(c.linear_attention_layers)
    assert targets.count(torch.ops.deploykit.causal_conv1d.default) == len(c.linear_attention_layers)
    assert targets.count(torch.ops.deploykit.moe.default) == c.num_hidden_layers
    run = ep.module()
    for B, T, P in [(1, 1, 5), (3, 7, 0), (2, 1, 0), (1, 70, 3)]:
        args = sample(model, B, T, P, seed=B + T + P)
        got_logits, got_state = run(*args)
        with torch.no_grad():
            ref_logits, ref_state = model(*args)
        assert got_logits.shape == (B, T, c.vocab_size)
        assert rel(got_logits, ref_logits) <= REL_TOL
        for n, a, b in zip(model.state_names("present"), got_state, ref_state, strict=True):
            assert a.shape == b.shape, n
            assert rel(a, b) <= REL_TOL, n


def test_state_layout_names_shapes_dtypes(tiny_checkpoint):
    model = load_model(tiny_checkpoint("dense"), dtype=torch.bfloat16)
    c = model.config
    names = model.state_names()
    assert names[:4] == ["past.0.conv", "past.0.recurrent", "past.1.key", "past.1.value"]
    assert model.state_names("present")[0] == "present.0.conv"
    shapes = dict(zip(names, model.state_shapes(2, 5), strict=True))
    assert shapes["past.0.conv"] == (2, 2 * 2 * 16 + 6 * 8, 3)  # C = 2*Hk*Dk + Hv*Dv, K-1 = 3
    assert shapes["past.0.recurrent"] == (2, 6, 16, 8)
    assert shapes["past.1.key"] == (2, 1, 5, 32)
    empty = model.empty_state(2)
    assert [t.dtype for t in empty] == [torch.float32 if n.endswith("recurrent") else torch.bfloat16 for n in names]
    assert len({t.data_ptr() for t in empty if t.numel()}) == sum(1 for t in empty if t.numel())
    logits, new = model(torch.zeros(2, 3, dtype=torch.long), torch.arange(3)[None].expand(2, 3),
                        torch.ones(2, 3, dtype=torch.long), empty)
    assert logits.dtype == torch.bfloat16 and logits.shape == (2, 3, c.vocab_size)
    assert [t.dtype for t in new] == [t.dtype for t in empty]
    assert [tuple(t.shape) for t in new] == model.state_shapes(2, 3)
