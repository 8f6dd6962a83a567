"""ONNX OpSchemas for the `deploykit` domain, generated from the op contract (deploykit/ops/contract.py).

Registering them (`register_schemas()`, idempotent) lets the onnxscript translation emit the nodes,
lets `onnx.checker` validate their attributes, and lets ONNX shape inference give every output its
dtype and shape through the contract's single shape rule (`OpSpec.output_dims`).
"""

from __future__ import annotations

import onnx
from onnx import TensorProto
from onnx.defs import OpSchema

from deploykit.ops.contract import DOMAIN, KNOWN_INT_ARITH, PLUGIN_OPS, AttributeSpec, OpSpec

# TensorRT's ONNX parser looks plugins up by (op_type, plugin_version, plugin_namespace). The namespace
# attribute also makes a registered plugin win over the model-local function body (verified with
# TensorRT for RTX 1.7.1, /work/shared/reference/tensorrt-rtx.md), so every deploykit node carries it.
PLUGIN_NAMESPACE_ATTR = AttributeSpec(
    name="plugin_namespace",
    type="string",
    default=DOMAIN,
    doc="TensorRT plugin namespace; its presence makes TensorRT prefer a registered plugin over the body.",
)

ACTIVATION_TYPES = ["tensor(float)", "tensor(float16)", "tensor(bfloat16)"]

_ATTR_TYPES = {
    "int": OpSchema.AttrType.INT,
    "float": OpSchema.AttrType.FLOAT,
    "string": OpSchema.AttrType.STRING,
}


def onnx_attributes(spec: OpSpec) -> tuple[AttributeSpec, ...]:
    """The attributes of the ONNX node: the contract's plus `plugin_namespace`."""
    return (*spec.attributes, PLUGIN_NAMESPACE_ATTR)


def _attribute(a: AttributeSpec) -> OpSchema.Attribute:
    if a.default is None:
        return OpSchema.Attribute(a.name, _ATTR_TYPES[a.type], a.doc, required=True)
    value = onnx.helper.make_attribute(a.name, a.default)
    return OpSchema.Attribute(a.name, value, a.doc)


_FIXED_TYPES = {"float32": ("tensor(float)", TensorProto.FLOAT), "int32": ("tensor(int32)", TensorProto.INT32)}


def _param(t) -> OpSchema.FormalParameter:
    type_str = "T" if t.dtype == "T" else _FIXED_TYPES[t.dtype][0]
    return OpSchema.FormalParameter(t.name, type_str, f"{list(t.dims)} {t.doc}".strip())


def _dim_value(dim):
    if dim.HasField("dim_value"):
        return dim.dim_value
    return dim.dim_param or None


def _node_int_attributes(spec: OpSpec, ctx) -> dict[str, int]:
    out = {}
    for a in spec.attributes:
        proto = ctx.get_attribute(a.name) if a.type == "int" else None
        if proto is not None:
            out[a.name] = onnx.AttributeProto.FromString(proto.SerializeToString()).i
    return out


def _inference_function(spec: OpSpec):
    """Output dtype from the contract ('T' copies the first 'T' input) and shape from `infer_shapes`."""
    first_t = spec.activation_input

    def infer(ctx) -> None:
        in_types = [
            onnx.TypeProto.FromString(ctx.get_input_type(i).SerializeToString())
            for i in range(ctx.get_num_inputs())
        ]
        act = in_types[first_t].tensor_type.elem_type
        have_shapes = all(t.tensor_type.HasField("shape") for t in in_types)
        if have_shapes:
            dims = [tuple(_dim_value(d) for d in t.tensor_type.shape.dim) for t in in_types]
            attrs = _node_int_attributes(spec, ctx)
            spec.check_static(dims, attrs)  # what its kernels would refuse, on the dims fixed in the graph
            shapes = spec.infer_shapes(dims, attrs, KNOWN_INT_ARITH)  # a dim_param is copied, not computed
        else:
            shapes = [None] * len(spec.outputs)
        for o, (out, shape) in enumerate(zip(spec.outputs, shapes, strict=True)):
            tp = onnx.TypeProto()
            tp.tensor_type.elem_type = act if out.dtype == "T" else _FIXED_TYPES[out.dtype][1]
            if shape is not None:
                tp.tensor_type.shape.SetInParent()
                for value in shape:
                    dim = tp.tensor_type.shape.dim.add()
                    if isinstance(value, int):
                        dim.dim_value = value
                    elif value:
                        dim.dim_param = value
            ctx.set_output_type(o, tp)

    return infer


def build_schema(spec: OpSpec) -> OpSchema:
    schema = OpSchema(
        spec.name,
        DOMAIN,
        spec.version,
        doc=spec.doc,
        inputs=[_param(t) for t in spec.inputs],
        outputs=[_param(t) for t in spec.outputs],
        type_constraints=[("T", ACTIVATION_TYPES, "activation dtype")],
        attributes=[_attribute(a) for a in onnx_attributes(spec)],
    )
    schema.set_type_and_shape_inference_function(_inference_function(spec))
    return schema


def register_schemas() -> None:
    """Registers every ONNX op of the contract, MoE's stages included, once per process (a second call does
    nothing)."""
    for spec in PLUGIN_OPS.values():
        try:
            onnx.defs.get_schema(spec.name, spec.version, DOMAIN)
            continue
        except onnx.defs.SchemaError:
            pass
        onnx.defs.register_schema(build_schema(spec))
