"""torch custom ops: schema == contract, fake shapes from the contract rule, real eager math, export."""


import pytest
import torch
from torch.library import opcheck

from deploykit.ops import registry, torch_ops  # noqa: F401  (registers torch.ops.deploykit.*)
from deploykit.ops.contract import OPS
from deploykit.ops.gated_delta_rule import naive_gated_delta_rule


def sample_args(name: str, T: int = 5, dtype=torch.float32):
    torch.manual_seed(0)
    if name == "GatedDeltaRule":
        B, Hk, Hv, Dk, Dv = 2, 2, 4, 8, 6
        return (torch.randn(B, T, Hk, Dk, dtype=dtype), torch.randn(B, T, Hk, Dk, dtype=dtype),
                torch.randn(B, T, Hv, Dv, dtype=dtype), -torch.rand(B, T, Hv), torch.rand(B, T, Hv, dtype=dtype),
                torch.randn(B, Hv, Dk, Dv), 8 ** -0.5, 1, "1")
    if name == "CausalConv1d":
        return (torch.randn(2, 6, T, dtype=dtype), torch.randn(2, 6, 3, dtype=dtype),
                torch.randn(6, 4, dtype=dtype), "silu", "1")
    return (torch.randn(T, 8, dtype=dtype), torch.randn(T, 5, dtype=dtype), torch.randn(5, 6, 8, dtype=dtype),
            torch.randn(5, 8, 3, dtype=dtype), 2, 1, "1")


def torch_op(spec):
    return getattr(torch.ops.deploykit, spec.torch_name).default


@pytest.mark.parametrize("name", list(OPS))
def test_schema_is_contract_inputs_then_attributes(name):
    spec = OPS[name]
    args = [a.name for a in torch_op(spec)._schema.arguments]
    assert args == [t.name for t in spec.inputs] + [a.name for a in spec.attributes]
    assert all(not a.has_default_value() for a in torch_op(spec)._schema.arguments)


@pytest.mark.parametrize("name", list(OPS))
def test_opcheck(name):
    opcheck(torch_op(OPS[name]), sample_args(name))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("name", list(OPS))
def test_eager_and_fake_agree_with_contract(name, dtype):
    spec = OPS[name]
    args = sample_args(name, dtype=dtype)
    out = torch_op(spec)(*args)
    out = out if isinstance(out, tuple) else (out,)
    tensors = args[:len(spec.inputs)]
    expected_shapes = spec.infer_shapes([tuple(t.shape) for t in tensors])
    expected_dtypes = spec.output_dtypes(str(dtype).removeprefix("torch."))
    assert [tuple(o.shape) for o in out] == expected_shapes
    assert [str(o.dtype).removeprefix("torch.") for o in out] == expected_dtypes
    assert all(o.abs().sum() > 0 for o in out)  # real math, not a zero stub
    from torch._subclasses.fake_tensor import FakeTensorMode
    with FakeTensorMode() as mode:
        fake = torch_op(spec)(*[mode.from_tensor(a) if isinstance(a, torch.Tensor) else a for a in args])
    fake = fake if isinstance(fake, tuple) else (fake,)
    assert [(tuple(f.shape), f.dtype) for f in fake] == [(tuple(o.shape), o.dtype) for o in out]


def test_gdn_op_equals_naive_reference_for_every_backend(monkeypatch):
    args = sample_args("GatedDeltaRule", T=70)
    ref = naive_gated_delta_rule(*args[:6], scale=args[6], use_qk_l2norm=1)
    for backend in registry.backends("gated_delta_rule"):
        with registry.use("gated_delta_rule", backend):
            out = torch.ops.deploykit.gated_delta_rule(*args)
        for a, b in zip(out, ref, strict=True):
            assert ((a - b).abs().max() / b.abs().max()) <= 1e-5
    monkeypatch.setenv(registry.FORCE_NAIVE_ENV, "1")
    assert registry.select("gated_delta_rule", *args[:6]).name == "naive"
    assert registry.select("moe", *sample_args("MoE")[:4]).name == "naive"


def test_default_backends_are_the_fast_forms(monkeypatch):
    monkeypatch.delenv(registry.FORCE_NAIVE_ENV, raising=False)
    assert registry.select("gated_delta_rule", *sample_args("GatedDeltaRule", T=8)[:6]).name == "chunked"
    assert registry.select("gated_delta_rule", *sample_args("GatedDeltaRule", T=1)[:6]).name == "naive"
    assert registry.select("moe", *sample_args("MoE")[:4]).name == "grouped"


def test_wrong_plugin_version_is_rejected():
    args = list(sample_args("CausalConv1d"))
    args[-1] = "2"
    with pytest.raises(ValueError, match="plugin_version"):
        torch.ops.deploykit.causal_conv1d(*args)


@pytest.mark.parametrize("name", list(OPS))
def test_empty_outputs_refuses_a_wrong_input_count_with_the_contract_error(name):
    # Every input but the last, then none: the contract's count error, not a StopIteration or IndexError.
    spec = OPS[name]
    tensors = tuple(a for a in sample_args(name) if isinstance(a, torch.Tensor))
    for short in (tensors[:-1], ()):
        with pytest.raises(ValueError, match=f"expected {len(spec.inputs)} inputs, got {len(short)}"):
            torch_ops.empty_outputs(spec, short)


class _GDN(torch.nn.Module):
    def forward(self, q, k, v, g, beta, h0):
        return torch.ops.deploykit.gated_delta_rule(q, k, v, g, beta, h0, 0.125, 1, "1")


def test_export_keeps_one_node_with_dynamic_shapes():
    args = sample_args("GatedDeltaRule", T=5)[:6]
    B, T = torch.export.Dim("B"), torch.export.Dim("T")
    ds = ({0: B, 1: T}, {0: B, 1: T}, {0: B, 1: T}, {0: B, 1: T}, {0: B, 1: T}, {0: B})
    ep = torch.export.export(_GDN(), args, dynamic_shapes=ds)
    targets = [n.target for n in ep.graph.nodes if n.op == "call_function"]
    assert targets.count(torch.ops.deploykit.gated_delta_rule.default) == 1
    node = next(n for n in ep.graph.nodes if n.target == torch.ops.deploykit.gated_delta_rule.default)
    assert node.args[6:] == (0.125, 1, "1")  # attributes survive export explicitly
    other = sample_args("GatedDeltaRule", T=9)[:6]
    other = tuple(a[:1] for a in other)  # B=1, T=9
    got = ep.module()(*other)
    ref = _GDN()(*other)
    assert all(torch.equal(a, b) for a, b in zip(got, ref, strict=True))


def test_docs_contract_section_is_generated_from_contract():
    from pathlib import Path

    from deploykit.ops.docs import render_contract_markdown

    doc = (Path(__file__).resolve().parents[2] / "docs" / "model.md").read_text()
    assert render_contract_markdown() in doc


def test_readme_contract_table_is_generated_from_contract():
    from pathlib import Path

    from deploykit.ops.contract import OPS
    from deploykit.ops.docs import render_contract_summary

    table = render_contract_summary()
    assert all(f"torch.ops.deploykit.{op.torch_name}" in table for op in OPS.values())
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert table in readme
