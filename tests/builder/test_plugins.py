"""The IPluginV3 plugins as TensorRT itself sees them: fields, shapes, dtypes, formats (no GPU needed)."""

from __future__ import annotations

import numpy as np
import pytest
from contract_graphs import contract_model

from deploykit.build.builder import BuildOptions, build_engine, parse_onnx
from deploykit.build.profiles import DimRange, ProfileSpec
from deploykit.errors import DeployKitError
from deploykit.ops.contract import ONNX_OPS, PLUGIN_OPS

ONE = DimRange(min=1, opt=1, max=1)
STATIC = [ProfileSpec(name="static", batch=ONE, tokens=ONE, past=DimRange(min=0, opt=0, max=0))]


def test_one_creator_per_onnx_op_registered_under_the_node_names(backend):
    from deploykit.build.registration import plugins_registered

    with plugins_registered(backend, True):
        registry = backend.trt.get_plugin_registry()
        for spec in PLUGIN_OPS.values():  # the exported ops and MoE's stage ops
            creator = registry.get_creator(spec.name, spec.plugin_version, "deploykit")
            assert creator is not None, spec.name
            fields = {f.name: f.type.name for f in creator.field_names}
            # ONNX attribute types -> PluginFieldType, as the ONNX parser converts them (export-design.md 4.1)
            want = {"int": "INT32", "float": "FLOAT32", "string": "CHAR"}
            assert fields == {a.name: want[a.type] for a in spec.attributes if a.name != "plugin_version"}
    assert ONNX_OPS.keys() == {"GatedDeltaRule", "MoE"}  # CausalConv1d lowers to standard ops


def test_plugin_receives_the_node_attributes(backend, save):
    parsed = parse_onnx(save(contract_model()), backend, plugins=True)
    trt = backend.trt
    attrs = {}
    for i in range(parsed.network.num_layers):
        layer = parsed.network.get_layer(i)
        layer.__class__ = trt.IPluginV3Layer
        core = layer.plugin.get_capability_interface(trt.PluginCapabilityType.CORE)
        attrs[core.plugin_name] = {f.name: np.asarray(f.data).tolist() for f in core.get_fields_to_serialize()}
    # the values contract_model() wrote on the nodes
    assert attrs["GatedDeltaRule"]["use_qk_l2norm"] == [1]
    assert attrs["GatedDeltaRule"]["scale"] == pytest.approx([0.35])
    assert attrs["MoE"] == {"top_k": [2], "norm_topk_prob": [1]}


def _draw(rng):
    hk = int(rng.integers(1, 4))
    return {"B": int(rng.integers(1, 5)), "T": int(rng.integers(1, 9)), "Hk": hk, "Hv": hk * int(rng.integers(1, 4)),
            "Dk": int(rng.choice([8, 16, 32])), "Dv": int(rng.choice([8, 16])), "N": int(rng.integers(1, 33)),
            "H": int(rng.choice([16, 48])), "E": int(rng.integers(2, 9))}


def _torch_fake(dims, dtype):
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode

    import deploykit.ops.torch_ops  # noqa: F401  (registers torch.ops.deploykit.*)

    act = getattr(torch, dtype)
    with FakeTensorMode():
        def t(shape, fp32=False):
            return torch.empty(shape, dtype=torch.float32 if fp32 else act)
        B, T, Hk, Hv, Dk, Dv = (dims[k] for k in ("B", "T", "Hk", "Hv", "Dk", "Dv"))
        gdr = torch.ops.deploykit.gated_delta_rule(
            t((B, T, Hk, Dk)), t((B, T, Hk, Dk)), t((B, T, Hv, Dv)), t((B, T, Hv), True), t((B, T, Hv)),
            t((B, Hv, Dk, Dv), True), 0.35, 1, "1")
        N, H, E, I2 = (dims[k] for k in ("N", "H", "E", "I2"))
        moe = torch.ops.deploykit.moe(t((N, H)), t((N, E)), t((E, I2, H)), t((E, H, I2 // 2)), 2, 1, "1")
        outs = [*gdr, moe]
        return [(tuple(o.shape), str(o.dtype).removeprefix("torch.")) for o in outs]


def _onnx_inference(model):
    import onnx

    from deploykit.export.schemas import register_schemas

    register_schemas()
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    names = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.FLOAT16: "float16",
             onnx.TensorProto.BFLOAT16: "bfloat16"}
    out = []
    for vi in inferred.graph.output:
        tt = vi.type.tensor_type
        out.append((tuple(d.dim_value for d in tt.shape.dim), names[tt.elem_type]))
    return out


def test_shapes_and_dtypes_agree_across_plugin_torch_fake_and_onnx_inference(backend, save):
    """Three sources for random shapes: TensorRT calling the plugins' get_output_shapes/get_output_data_types,
    torch.ops.deploykit.* under FakeTensorMode, ONNX shape inference with the exporter's schemas; plus the
    hand-derived rule from the contract docstring (GDN: output = v's shape, state = initial_state's; MoE:
    output = hidden's)."""
    rng = np.random.default_rng(0)
    trt_names = {"HALF": "float16", "BF16": "bfloat16", "FLOAT": "float32"}
    for case in range(6):
        dims = _draw(rng)
        dims["I"] = int(rng.integers(1, 9))
        dims["I2"] = 2 * dims["I"]  # gate_up is [gate; up] (a requirement of MoE)
        dtype = ("float16", "bfloat16", "float32")[case % 3]
        model = contract_model(dtype, body=False, dims=dims)
        parsed = parse_onnx(save(model, f"case{case}.onnx"), backend, plugins=True)
        assert [layer.type for layer in parsed.report.layers] == ["PLUGIN_V3", "PLUGIN_V3"]
        from_plugin = [(tuple(t.shape), trt_names[t.dtype]) for t in parsed.report.outputs]
        B, T, Hv, Dk, Dv, N, H = (dims[k] for k in ("B", "T", "Hv", "Dk", "Dv", "N", "H"))
        by_hand = [((B, T, Hv, Dv), dtype), ((B, Hv, Dk, Dv), "float32"), ((N, H), dtype)]
        assert from_plugin == by_hand, (case, dims)
        assert _torch_fake(dims, dtype) == by_hand, (case, dims)
        assert _onnx_inference(model) == by_hand, (case, dims)


@pytest.mark.parametrize("bad", ["g_fp16", "mixed_activation"])
def test_plugin_rejects_dtypes_outside_the_contract(backend, save, bad):
    """supports_format_combination is what stops a wrong dtype: the strongly typed build finds no format."""
    import onnx

    model = contract_model("float16", body=False, dims={"B": 1, "T": 1, "N": 1})
    name = "gdr_g" if bad == "g_fp16" else "gdr_k"
    new_type = onnx.TensorProto.FLOAT16 if bad == "g_fp16" else onnx.TensorProto.BFLOAT16
    next(i for i in model.graph.input if i.name == name).type.tensor_type.elem_type = new_type
    path = save(model)
    with pytest.raises(DeployKitError, match="could not build.*supported plugin"):
        build_engine(path, options=BuildOptions(profiles=STATIC))
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.onnx"]  # nothing partial written


def test_the_plugins_refuse_fixed_dims_their_launchers_refuse(backend, save, capfd):
    """Without deploykit's own check before it (a graph parsed by another tool that registers these plugins),
    the plugin's get_output_shapes refuses what the launcher would refuse when the engine runs."""
    from deploykit.build.registration import plugins_registered
    from deploykit.build.trt_backend import TrtLog

    path = save(contract_model(dims={"Hv": 3}))  # 3 value heads over 2 key heads
    trt = backend.trt
    with plugins_registered(backend, True):
        logger = backend.logger(TrtLog())  # TensorRT holds raw pointers: keep each object alive
        builder = trt.Builder(logger)
        network = backend.create_network(builder)
        parser = trt.OnnxParser(network, logger)
        assert not parser.parse_from_file(str(path))
    assert parser.get_error(0).node_operator() == "GatedDeltaRule"
    assert "GatedDeltaRule: needs Hv % Hk == 0, got Hv=3, Hk=2" in capfd.readouterr().err  # printed by TensorRT
