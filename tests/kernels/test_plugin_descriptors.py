"""The plugin descriptors use the contract's shape rule; the datacenter-TensorRT guard fails with a clear error."""

import importlib.util

import pytest
import torch
from deploykit.plugins import LAUNCHERS, launcher
from deploykit.plugins.aot import contract_descriptors, import_trt_plugin

from deploykit.errors import DeployKitError
from deploykit.ops.contract import OPS, STAGE_OPS


class _Desc:
    """Stand-in for trtp.TensorDesc: a shape (ints instead of symbolic expressions) and a dtype."""

    def __init__(self, shape, dtype):
        self.shape_expr, self.dtype = tuple(shape), dtype


EXAMPLES = {  # concrete input tensors per op (meta device: shapes and dtypes only)
    "GatedDeltaRule": [
        (2, 5, 2, 8, "T"),
        (2, 5, 2, 8, "T"),
        (2, 5, 4, 6, "T"),
        (2, 5, 4, "f"),
        (2, 5, 4, "T"),
        (2, 4, 8, 6, "f"),
    ],
    "CausalConv1d": [(2, 12, 5, "T"), (2, 12, 3, "T"), (12, 4, "T")],
    "MoE": [(3, 16, "T"), (3, 8, "T"), (8, 10, 16, "T"), (8, 16, 5, "T")],
}


@pytest.mark.parametrize("name", sorted(OPS))
def test_descriptor_matches_torch_fake_impl(name):
    """contract_descriptors (what the QDP registrations return) == torch.ops.deploykit.* on meta tensors."""
    import deploykit.ops.torch_ops  # noqa: F401  registers torch.ops.deploykit.*

    spec, act = OPS[name], torch.bfloat16
    tensors = [
        torch.empty(s[:-1], dtype=act if s[-1] == "T" else torch.float32, device="meta")
        for s in EXAMPLES[name]
    ]
    descs = contract_descriptors(
        spec,
        [_Desc(t.shape, t.dtype) for t in tensors],
        act,
        torch.float32,
        lambda shape, dtype: (tuple(shape), dtype),
    )
    attrs = {"GatedDeltaRule": (0.3, 1, "1"), "CausalConv1d": ("silu", "1"), "MoE": (2, 1, "1")}[name]
    fake = getattr(torch.ops.deploykit, spec.torch_name)(*tensors, *attrs)
    fake = fake if isinstance(fake, (tuple, list)) else (fake,)
    assert descs == tuple((tuple(f.shape), f.dtype) for f in fake)


def test_one_launcher_per_contract_op():
    assert set(LAUNCHERS) == {*OPS, *STAGE_OPS}  # MoE's stage ops included
    assert all(callable(launcher(name)) for name in LAUNCHERS)


@pytest.mark.skipif(
    importlib.util.find_spec("tensorrt") is not None, reason="datacenter tensorrt is installed"
)
def test_missing_tensorrt_is_a_clear_error():
    with pytest.raises(DeployKitError, match="tensorrt"):
        import_trt_plugin()
    with pytest.raises(DeployKitError):
        importlib.import_module("deploykit.plugins.gated_delta_net.qdp")
