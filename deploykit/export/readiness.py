"""TensorRT readiness check without TensorRT: is every node something the ONNX-TensorRT parser imports?

A node passes when its op is marked supported in profiles/tensorrt/onnx_tensorrt_ops.yaml (onnx-tensorrt's
docs/operators.md, version recorded in the file) or when it belongs to the `deploykit` domain (TensorRT maps
it to our plugin, or imports its function body). Subgraphs (Scan/Loop/If bodies) and model-local function
bodies are walked too, so the --decompose form and the bodies TensorRT may import are checked as well.
"""

from __future__ import annotations

from functools import lru_cache

import yaml
from pydantic import BaseModel

from deploykit.ops.contract import DOMAIN
from deploykit.resources import profiles_dir

STANDARD_DOMAINS = ("", "ai.onnx")


class ParserOpList(BaseModel):
    source: dict
    supported: frozenset[str]
    unsupported: frozenset[str]


class Finding(BaseModel):
    node: str
    op: str
    domain: str
    where: str  # "graph", a subgraph path or "function deploykit::GatedDeltaRule"
    reason: str


@lru_cache(maxsize=1)
def parser_ops() -> ParserOpList:
    data = yaml.safe_load((profiles_dir() / "tensorrt" / "onnx_tensorrt_ops.yaml").read_text())
    ops = data["operators"]
    return ParserOpList(
        source=data["source"],
        supported=frozenset(o["op"] for o in ops if o["supported"]),
        unsupported=frozenset(o["op"] for o in ops if not o["supported"]),
    )


def _check_node(node, where: str, ops: ParserOpList) -> Finding | None:
    if node.domain == DOMAIN:
        return None
    if node.domain not in STANDARD_DOMAINS:
        reason = f"domain '{node.domain}' is neither ai.onnx nor {DOMAIN}"
    elif node.op_type in ops.supported:
        return None
    elif node.op_type in ops.unsupported:
        reason = "marked unsupported by the ONNX-TensorRT parser"
    else:
        reason = "not in the ONNX-TensorRT parser's operator list"
    return Finding(
        node=node.name, op=node.op_type, domain=node.domain or "ai.onnx", where=where, reason=reason
    )


def _walk(nodes, where: str, ops: ParserOpList, out: list[Finding]) -> int:
    count = 0
    for node in nodes:
        count += 1
        finding = _check_node(node, where, ops)
        if finding:
            out.append(finding)
        for attr in node.attribute:
            graphs = [attr.g] if attr.HasField("g") else list(attr.graphs)
            for g in graphs:
                count += _walk(g.node, f"{where}/{node.op_type}:{node.name}.{attr.name}", ops, out)
    return count


def check_readiness(model) -> tuple[int, list[Finding]]:
    """(nodes checked, findings) for an onnx.ModelProto; no findings = every node is ready for TensorRT."""
    ops = parser_ops()
    findings: list[Finding] = []
    count = _walk(model.graph.node, "graph", ops, findings)
    for fn in model.functions:
        count += _walk(fn.node, f"function {fn.domain}::{fn.name}", ops, findings)
    return count, findings
