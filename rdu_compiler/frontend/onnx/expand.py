"""ONNX ops replaced by their ONNX function bodies: model-local functions, ops torch-mlir has no
conversion for, and ops whose direct lowering computes other numbers (:func:`forced_expansions`).
"""

from __future__ import annotations

from typing import Any

from rdu_compiler.frontend.onnx.errors import OnnxImportError, first_line
from rdu_compiler.frontend.onnx.graph import node_attr


def inline_functions(proto: Any, ops: set[str] | None, where: str) -> Any:
    """Inline model-local functions (``ops`` None) or the ONNX schema functions ``ops``."""
    from onnx import inliner

    try:
        if ops is None:
            return inliner.inline_local_functions(proto)
        _add_default_attributes(proto.graph, ops, proto)
        return inliner.inline_selected_functions(proto, [("", op) for op in sorted(ops)], inline_schema_functions=True)
    except Exception as e:  # noqa: BLE001
        raise OnnxImportError(f"{where}: inlining ONNX functions failed: {first_line(e)}.") from None


def expand_nodes(proto: Any, ops: set[str]) -> bool:
    """Replace every node of ``ops`` by its ONNX function body, node by node (context-
    dependent functions get the node's input types; missing optional inputs stay empty).
    Returns False, changing nothing, when a node cannot be expanded."""
    import onnx

    try:
        from onnx.backend.test.case.node import function_expand_helper
    except ImportError:  # pragma: no cover - onnx without its backend test helpers
        return False
    graph = proto.graph
    version = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 10**6)
    types: dict[str, Any] = {}
    for vi in [*graph.input, *graph.value_info, *graph.output]:
        types[vi.name] = vi.type
    for init in graph.initializer:
        types[init.name] = onnx.helper.make_tensor_type_proto(init.data_type, list(init.dims))
    new_nodes: list[Any] = []
    for i, node in enumerate(graph.node):
        if node.op_type not in ops or node.domain not in ("", "ai.onnx"):
            new_nodes.append(node)
            continue
        try:
            # Any: onnx's OpSchema stub lacks the function accessors the C++ class has.
            schema: Any = onnx.defs.get_schema(node.op_type, version, domain="")
            cd = [v for v in schema.context_dependent_function_opset_versions if v <= version]
            plain = [v for v in schema.function_opset_versions if v <= version]
            node = onnx.NodeProto.FromString(node.SerializeToString())
            _add_default_attributes_to(node, schema)
            fproto = onnx.FunctionProto()
            if cd and (not plain or max(cd) >= max(plain)):
                in_types = [types.get(n, onnx.TypeProto()) if n else onnx.TypeProto() for n in node.input]
                fproto.ParseFromString(
                    schema.get_context_dependent_function_with_opset_version(
                        max(cd), node.SerializeToString(), [t.SerializeToString() for t in in_types]
                    )
                )
            elif plain:
                fproto.ParseFromString(schema.get_function_with_opset_version(max(plain)))
            else:
                return False
            new_nodes.extend(function_expand_helper(node, fproto, f"{node.name or node.op_type}_{i}__"))
        except Exception:  # noqa: BLE001
            return False
    del graph.node[:]
    graph.node.extend(new_nodes)
    return True


def _add_default_attributes_to(node: Any, schema: Any) -> None:
    import onnx

    present = {a.name for a in node.attribute}
    for name, attr in schema.attributes.items():
        if name not in present and attr.default_value.name:
            default = onnx.AttributeProto()
            default.CopyFrom(attr.default_value)
            default.name = name
            node.attribute.append(default)


def _add_default_attributes(graph: Any, ops: set[str], proto: Any) -> None:
    """Write the schema's default value of every attribute a node of ``ops`` leaves out (a
    function body refers to its attributes by name, defaults included)."""
    import onnx

    version = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 10**6)
    for node in graph.node:
        if node.op_type not in ops or node.domain not in ("", "ai.onnx"):
            continue
        try:
            schema = onnx.defs.get_schema(node.op_type, domain="", max_inclusive_version=version)
        except Exception:  # noqa: BLE001
            continue
        present = {a.name for a in node.attribute}
        for name, attr in schema.attributes.items():
            if name not in present and attr.default_value.name:
                default = onnx.AttributeProto()
                default.CopyFrom(attr.default_value)
                default.name = name
                node.attribute.append(default)


def has_function(op_type: str, proto: Any) -> bool:
    """Whether ONNX defines ``op_type`` (default domain, at the model's opset) as a function."""
    import onnx

    version = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    try:
        schema: Any = onnx.defs.get_schema(op_type, domain="", max_inclusive_version=version or 10**6)
    except Exception:  # noqa: BLE001 - not an ONNX op
        return False
    limit = version or 10**6
    return any(v <= limit for v in schema.function_opset_versions) or any(
        v <= limit for v in schema.context_dependent_function_opset_versions
    )


def forced_expansions(graph: Any) -> set[str]:
    """Ops lowered through their ONNX function body because torch-mlir's direct lowering
    computes something else:

    - ``Gelu`` with ``approximate="tanh"``: torch-mlir uses 0.797724 for sqrt(2/pi)
      (0.7978846), a 2e-4 relative error in the constant;
    - ``NegativeLogLikelihoodLoss`` / ``SoftmaxCrossEntropyLoss`` with class weights and
      ``reduction="mean"``: torch-mlir truncates the sum of the weights to an integer.
    """
    ops: set[str] = set()
    for node in graph.node:
        if node.domain not in ("", "ai.onnx"):
            continue
        if node.op_type == "Gelu" and node_attr(node, "approximate", b"none") in (b"tanh", "tanh"):
            ops.add("Gelu")
        if node.op_type in ("NegativeLogLikelihoodLoss", "SoftmaxCrossEntropyLoss"):
            weighted = len(node.input) > 2 and node.input[2] != ""
            if weighted and node_attr(node, "reduction", b"mean") in (b"mean", "mean"):
                ops.add(node.op_type)
    return ops
