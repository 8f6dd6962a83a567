"""From the weight-streamed IR graph to the saved, checked model.onnx, and the manifest that describes it."""

from __future__ import annotations

from pathlib import Path

import onnx
import onnx.inliner

from deploykit.export.functions import attach_functions
from deploykit.export.manifest import (
    FileHash,
    Manifest,
    OpVersion,
    Readiness,
    TensorIO,
    config_hash,
    file_sha256,
)
from deploykit.export.readiness import check_readiness, parser_ops
from deploykit.export.schemas import register_schemas
from deploykit.export.trace import OPSET
from deploykit.ops.contract import DOMAIN, ONNX_OPS, OP_SET_VERSION

KV_LENGTH = "past + tokens"  # name of the attention-mask / present KV length dim


def _rename_dims(proto: onnx.ModelProto) -> None:
    """attention_mask's length is past + tokens; torch.export gives it an anonymous symbol (s53...)."""
    mask = next(i for i in proto.graph.input if i.name == "attention_mask")
    anon = mask.type.tensor_type.shape.dim[1].dim_param
    if not anon or anon == KV_LENGTH:
        return
    for vi in [*proto.graph.input, *proto.graph.output, *proto.graph.value_info]:
        for d in vi.type.tensor_type.shape.dim:
            if d.dim_param == anon:
                d.dim_param = KV_LENGTH


def finish_graph(ir_model, path: Path, decompose: bool = False) -> onnx.ModelProto:
    """Serialises (weights stay external), attaches or inlines the op bodies, checks and saves to `path`."""
    import onnx_ir as ir

    register_schemas()
    proto = ir.serde.serialize_model(ir_model)
    _rename_dims(proto)
    attach_functions(proto, OPSET)
    if decompose:
        proto = onnx.inliner.inline_local_functions(proto)
        del proto.functions[:]
        kept = [o for o in proto.opset_import if o.domain != DOMAIN]
        del proto.opset_import[:]
        proto.opset_import.extend(kept)
    proto.producer_name = "deploykit"
    onnx.save(proto, path)
    onnx.checker.check_model(str(path), full_check=True)
    return proto


def _io(values) -> list[TensorIO]:
    out = []
    for v in values:
        tt = v.type.tensor_type
        dims = [d.dim_param if d.dim_param else d.dim_value for d in tt.shape.dim]
        out.append(
            TensorIO(
                name=v.name,
                dtype=onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type).name
                if tt.elem_type != onnx.TensorProto.BFLOAT16
                else "bfloat16",
                shape=dims,
            )
        )
    return out


def _tool_versions() -> dict[str, str]:
    import onnxruntime
    import onnxscript
    import torch
    import transformers

    return {
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxscript": onnxscript.__version__,
        "onnxruntime": onnxruntime.__version__,
        "transformers": transformers.__version__,
    }


def build_manifest(
    proto: onnx.ModelProto, *, source, dtype, layers: int, random_weights: bool, seed: int, decompose: bool
) -> Manifest:
    from deploykit import __version__

    count, findings = check_readiness(proto)
    src = parser_ops().source
    nodes = {}
    for n in proto.graph.node:
        if n.domain == DOMAIN:
            nodes[n.op_type] = nodes.get(n.op_type, 0) + 1
    ops = [
        OpVersion(
            name=s.name,
            domain=DOMAIN,
            version=s.version,
            plugin_version=s.plugin_version,
            nodes=nodes.get(s.name, 0),
        )
        for s in ONNX_OPS.values()
    ]
    arch = (source.config.get("architectures") or ["?"])[0]
    return Manifest(
        deploykit_version=__version__,
        model=source.label,
        checkpoint_dir=str(source.checkpoint_dir.resolve()) if source.checkpoint_dir else None,
        architecture=arch,
        config=source.config,
        config_hash=config_hash(source.config),
        checkpoint_files=[] if random_weights else [file_sha256(f) for f in source.files],
        random_weights=random_weights,
        seed=seed if random_weights else None,
        layers=layers,
        dtype=str(dtype).removeprefix("torch."),
        decompose=decompose,
        opset=OPSET,
        domains={} if decompose else {DOMAIN: OP_SET_VERSION},
        ops=[] if decompose else ops,
        inputs=_io(proto.graph.input),
        outputs=_io(proto.graph.output),
        files=["model.onnx", "model.onnx.data"],
        readiness=Readiness(
            nodes_checked=count,
            parser_ops_source=f"onnx-tensorrt {src['release']} {src['path']} @ {src['commit'][:12]}",
            not_ready=[f"{f.op} ({f.domain}) in {f.where}: {f.reason}" for f in findings],
        ),
        tools=_tool_versions(),
    )


__all__ = ["FileHash", "build_manifest", "finish_graph"]
