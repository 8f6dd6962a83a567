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
    attrs = {"GatedDeltaRule": {"scale": 0.3, "use_qk_l2norm": 1}, "CausalConv1d": {"activation": "silu"},
             "MoE": {"top_k": 2, "norm_topk_prob": 1}}[name]
    descs = contract_descriptors(
        spec,
        [_Desc(t.shape, t.dtype) for t in tensors],
        act,
        torch.float32,
        lambda shape, dtype: (tuple(shape), dtype),
        attrs,  # the node's: a build checks MoE's top_k against E
    )
    fake = getattr(torch.ops.deploykit, spec.torch_name)(*tensors, *attrs.values(), "1")
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


def test_old_tensorrt_plugin_with_numpy_2_4_is_a_clear_error():
    """tensorrt.plugin < 11.2 reads int/float plugin fields with int(array), a TypeError from NumPy 2.4 on."""
    from deploykit.plugins.aot import check_plugin_numpy

    with pytest.raises(DeployKitError, match=r"numpy<2\.4.*TensorRT >= 11\.2"):
        check_plugin_numpy("10.13.3.9", "2.4.6")
    check_plugin_numpy("10.13.3.9", "2.3.5")  # NumPy before 2.4: a DeprecationWarning only
    check_plugin_numpy("11.2.1.2", "2.4.6")  # 11.2 reads array[0]
    check_plugin_numpy("11.4.0.106", "2.5.0rc1")


class _FakeDim:
    is_fake = True


def test_descriptors_of_the_dtype_only_pass_compute_no_dims():
    """With fake dims (tensorrt.plugin's dtype pass) the outputs get fake dims and no arithmetic runs: on
    tensorrt.plugin 10.x a constant built there uses a stale IExprBuilder."""
    from deploykit.ops.contract import MOE_ALIGN

    class Refuse:
        def __getattr__(self, name):
            raise AssertionError(f"arithmetic ({name}) in the dtype-only pass")

    fake = _FakeDim()
    descs = contract_descriptors(MOE_ALIGN, [_Desc((fake, fake), "T"), _Desc((fake, fake), "i32")], "T", "f32",
                                 lambda shape, dtype: (shape, dtype), {"block_m": 16}, "i32", Refuse())
    assert descs == (((fake,), "i32"), ((fake,), "i32"))
