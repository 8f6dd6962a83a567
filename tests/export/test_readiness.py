"""The TensorRT readiness check flags what the ONNX-TensorRT parser cannot import."""

from __future__ import annotations

from onnx import TensorProto as TP
from onnx import helper as oh

from deploykit.export.readiness import check_readiness, parser_ops


def test_parser_list_is_the_recorded_table():
    ops = parser_ops()
    assert ops.source["release"] == "10.1 GA" and len(ops.source["commit"]) == 40
    # rows of onnx-tensorrt 10.1 GA docs/operators.md
    assert {"Scan", "TopK", "ScatterElements", "Conv", "MatMul"} <= ops.supported
    assert {"Bernoulli", "StringNormalizer"} <= ops.unsupported


def test_flags_unsupported_foreign_and_nested_nodes():
    vi = oh.make_tensor_value_info
    body = oh.make_graph(
        [oh.make_node("Bernoulli", ["s_in"], ["s_out"])],
        "body",
        [vi("s_in", TP.FLOAT, [1])],
        [vi("s_out", TP.FLOAT, [1])],
    )
    nodes = [
        oh.make_node("Relu", ["x"], ["a"]),
        oh.make_node("GatedDeltaRule", ["a"], ["b"], domain="deploykit"),
        oh.make_node("Foo", ["b"], ["c"], domain="com.example"),
        oh.make_node("Loop", ["", "", "c"], ["d"], body=body),
        oh.make_node("NotAnOnnxOp", ["d"], ["y"]),
    ]
    graph = oh.make_graph(nodes, "g", [vi("x", TP.FLOAT, [1])], [vi("y", TP.FLOAT, [1])])
    count, findings = check_readiness(oh.make_model(graph))
    assert count == 6
    assert [(f.op, f.domain) for f in findings] == [
        ("Foo", "com.example"),
        ("Bernoulli", "ai.onnx"),
        ("NotAnOnnxOp", "ai.onnx"),
    ]
    assert "Loop" in findings[1].where
