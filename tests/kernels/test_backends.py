"""The launchers plug into torch.ops.deploykit.* as the registry's 'triton' backend (run here through the
interpreter by pinning the backend; on a GPU it is picked for CUDA tensors)."""

import torch

from deploykit.ops import registry
from deploykit.ops.causal_conv1d import naive_causal_conv1d
from deploykit.ops.gated_delta_rule import naive_gated_delta_rule
from deploykit.ops.moe import naive_moe
from deploykit.plugins import TRITON_BACKEND, register_triton_backends

from ._util import rel_err


def test_custom_ops_run_the_triton_backend(monkeypatch):
    import deploykit.ops.torch_ops  # noqa: F401  registers torch.ops.deploykit.*

    for op in (
        "gated_delta_rule",
        "causal_conv1d",
        "moe",
    ):  # registered into copies: other tests see no 'triton'
        monkeypatch.setitem(registry._BACKENDS, op, dict(registry._BACKENDS[op]))
    register_triton_backends()
    gen = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=gen)  # noqa: E731
    q, k, v = r(1, 3, 1, 16), r(1, 3, 1, 16), r(1, 3, 2, 16)
    g, beta, h0 = -torch.rand(1, 3, 2, generator=gen), torch.rand(1, 3, 2, generator=gen), r(1, 2, 16, 16)
    x, st, w = r(1, 8, 3), r(1, 8, 3), r(8, 4)
    hid, logits, gu, dn = r(2, 16), r(2, 4), r(4, 16, 16) * 0.25, r(4, 16, 8) * 0.25
    assert not registry.select("moe", hid, logits, gu, dn).name == TRITON_BACKEND  # CPU tensors: not picked
    with (
        registry.use("gated_delta_rule", TRITON_BACKEND),
        registry.use("causal_conv1d", TRITON_BACKEND),
        registry.use("moe", TRITON_BACKEND),
    ):
        o, h = torch.ops.deploykit.gated_delta_rule(q, k, v, g, beta, h0, 0.25, 1, "1")
        co, cs = torch.ops.deploykit.causal_conv1d(x, st, w, "silu", "1")
        mo = torch.ops.deploykit.moe(hid, logits, gu, dn, 2, 1, "1")
    ro, rh = naive_gated_delta_rule(q, k, v, g, beta, h0, 0.25, 1)
    assert rel_err(o, ro) <= 1e-5 and rel_err(h, rh) <= 1e-5
    rco, rcs = naive_causal_conv1d(x, st, w, "silu")
    assert rel_err(co, rco) <= 1e-6 and torch.equal(cs, rcs)
    assert rel_err(mo, naive_moe(hid, logits, gu, dn, 2, 1)) <= 1e-5
