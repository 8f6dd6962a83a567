"""Parity with transformers (the numerics reference) on tiny checkpoints it wrote itself."""

import pytest
import torch
from transformers import DynamicCache

from deploykit.model.testing import hf_forward

from .helpers import REL_TOL, models, rel, run

VARIANTS = ["dense", "dense_tied", "moe", "moe_tied"]
DECODE_STEPS = 32  # issue 3 acceptance: prefill plus 32 greedy decode steps


@pytest.mark.parametrize("name", VARIANTS)
def test_prefill_and_greedy_decode_match_transformers(tiny_checkpoint, name):
    ours, hf = models(tiny_checkpoint(name), name)
    gen = torch.Generator().manual_seed(7)
    ids = torch.randint(0, hf.config.vocab_size, (2, 11), generator=gen)
    with torch.no_grad():
        cache = DynamicCache(config=hf.config)
        ref = hf_forward(hf, ids, cache).logits
    logits, state = run(ours, ids, ours.empty_state(2))
    assert rel(logits, ref) <= REL_TOL, rel(logits, ref)
    assert torch.equal(logits[:, -1].argmax(-1), ref[:, -1].argmax(-1))
    pos = ids.shape[1]
    for step in range(DECODE_STEPS):
        nxt = ref[:, -1].argmax(-1, keepdim=True)  # greedy on transformers' logits, fed to both
        with torch.no_grad():
            ref = hf_forward(hf, nxt, cache).logits
        logits, state = run(ours, nxt, state, start=pos)
        pos += 1
        assert rel(logits, ref) <= REL_TOL, (step, rel(logits, ref))
        assert torch.equal(logits[:, -1].argmax(-1), ref[:, -1].argmax(-1)), step


@pytest.mark.parametrize("name", ["dense", "moe"])
def test_state_continuity(tiny_checkpoint, name):
    """prefill(n) then k decode steps == prefill(n + k): logits at every position and the final state."""
    ours, _ = models(tiny_checkpoint(name), name)
    n, k = 7, 5
    ids = torch.randint(0, ours.config.vocab_size, (2, n + k), generator=torch.Generator().manual_seed(3))
    whole, whole_state = run(ours, ids, ours.empty_state(2))
    logits, state = run(ours, ids[:, :n], ours.empty_state(2))
    steps = [logits]
    for t in range(n, n + k):
        logits, state = run(ours, ids[:, t:t + 1], state, start=t)
        steps.append(logits)
    assert rel(torch.cat(steps, 1), whole) <= REL_TOL
    for a, b in zip(state, whole_state, strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype
        assert rel(a, b) <= REL_TOL


@pytest.mark.parametrize("name", ["dense", "moe"])
def test_split_prefill_longer_than_a_chunk(tiny_checkpoint, name):
    """A 150-token prefill (crosses GDN chunks) split as 70 + 80 equals the whole; first logits match HF."""
    ours, hf = models(tiny_checkpoint(name), name)
    ids = torch.randint(0, ours.config.vocab_size, (1, 150), generator=torch.Generator().manual_seed(5))
    whole, _ = run(ours, ids, ours.empty_state(1))
    with torch.no_grad():
        ref = hf(ids).logits
    assert rel(whole, ref) <= REL_TOL
    a, state = run(ours, ids[:, :70], ours.empty_state(1))
    b, _ = run(ours, ids[:, 70:], state, start=70)
    assert rel(torch.cat([a, b], 1), whole) <= REL_TOL


@pytest.mark.parametrize("name", ["dense", "moe_tied"])
def test_ragged_left_padded_batch_matches_each_alone(tiny_checkpoint, name):
    ours, hf = models(tiny_checkpoint(name), name)
    gen = torch.Generator().manual_seed(11)
    lengths = [4, 9, 13]
    prompts = [torch.randint(0, ours.config.vocab_size, (n,), generator=gen) for n in lengths]
    T = max(lengths)
    ids = torch.stack([torch.cat([torch.zeros(T - len(p), dtype=torch.long), p]) for p in prompts])
    mask = torch.stack([torch.arange(T) >= T - len(p) for p in prompts]).long()
    pos = (mask.cumsum(-1) - 1).clamp(min=0)  # real positions start at 0 after the padding
    with torch.no_grad():
        logits, state = ours(ids, pos, mask, ours.empty_state(3))
    steps = 3
    nxt = logits[:, -1].argmax(-1, keepdim=True)
    batched = [logits[:, -1]]
    for s in range(steps):
        mask = torch.cat([mask, torch.ones(3, 1, dtype=torch.long)], 1)
        with torch.no_grad():
            logits, state = ours(nxt, pos[:, -1:] + 1 + s, mask, state)
        batched.append(logits[:, -1])
        nxt = logits[:, -1].argmax(-1, keepdim=True)
    for b, p in enumerate(prompts):
        alone, st = run(ours, p[None], ours.empty_state(1))
        with torch.no_grad():
            ref = hf(p[None]).logits
        assert rel(alone, ref) <= REL_TOL
        assert rel(batched[0][b], alone[0, -1]) <= REL_TOL, (b, rel(batched[0][b], alone[0, -1]))
        tok = alone[:, -1].argmax(-1, keepdim=True)
        for s in range(steps):
            alone, st = run(ours, tok, st, start=len(p) + s)
            assert rel(batched[s + 1][b], alone[0, -1]) <= REL_TOL, (b, s)
            tok = alone[:, -1].argmax(-1, keepdim=True)


@pytest.mark.parametrize("name", ["moe"])
def test_naive_op_backends_give_the_same_model(tiny_checkpoint, name, monkeypatch):
    """DEPLOYKIT_FORCE_NAIVE=1 (naive GDN, conv and MoE references inside the model) == default fast backends."""
    from deploykit.ops import registry

    ours, _ = models(tiny_checkpoint(name), name)
    ids = torch.randint(0, ours.config.vocab_size, (2, 80), generator=torch.Generator().manual_seed(1))
    fast, fast_state = run(ours, ids, ours.empty_state(2))
    monkeypatch.setenv(registry.FORCE_NAIVE_ENV, "1")
    naive, naive_state = run(ours, ids, ours.empty_state(2))
    assert rel(naive, fast) <= REL_TOL
    assert all(rel(a, b) <= REL_TOL for a, b in zip(naive_state, fast_state, strict=True))


@pytest.mark.parametrize("name", ["dense", "moe"])
def test_bf16_error_no_worse_than_transformers_bf16(tiny_checkpoint, name):
    """In bf16 (fp32 recurrent state) our distance to the fp32 logits is within 1.5x of transformers' own
    bf16 distance: bf16 rounding is the only difference, not a numerics bug."""
    from deploykit.model.loader import load_model
    from deploykit.model.testing import TINY_VARIANTS, load_hf_model

    path, kind = tiny_checkpoint(name), TINY_VARIANTS[name][0]
    f32, b16 = load_model(path, dtype=torch.float32), load_model(path, dtype=torch.bfloat16)
    ids = torch.randint(0, f32.config.vocab_size, (2, 24), generator=torch.Generator().manual_seed(2))
    ref, _ = run(f32, ids, f32.empty_state(2))
    got, state = run(b16, ids, b16.empty_state(2))
    with torch.no_grad():
        hf16 = load_hf_model(kind, path, dtype=torch.bfloat16)(ids).logits
    assert got.dtype == torch.bfloat16 and state[1].dtype == torch.float32
    assert rel(got, ref) <= 1.5 * rel(hf16, ref), (rel(got, ref), rel(hf16, ref))
