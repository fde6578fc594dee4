"""Constant folding at import time: nodes whose inputs are all constants evaluated with ONNX's
reference evaluator; small constants stored so torch-mlir makes them dense literals.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from rdu_compiler.frontend.onnx.graph import quiet

#: Ops never evaluated at import time: random, with subgraphs, or with side outputs.
_NO_FOLD = {
    "RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Multinomial",
    "Bernoulli", "If", "Loop", "Scan", "SequenceMap", "Optional", "OptionalGetElement",
    "OptionalHasElement", "SequenceConstruct", "SequenceEmpty", "SequenceInsert", "SequenceAt",
    "SequenceErase", "SequenceLength", "SplitToSequence", "ConcatFromSequence", "ImageDecoder",
}


#: A folded result larger than this (elements) stays computation, unless it is no larger
#: than the initializers it is computed from (a transposed or cast weight).
_FOLD_MAX_ELEMENTS = 1 << 16


def fold_constants(proto: Any) -> bool:
    """Evaluate nodes whose inputs are all constants (initializers, Constant nodes, shapes of
    statically shaped values) with ONNX's reference evaluator; their outputs become
    initializers. Returns whether anything was folded."""
    import onnx
    from onnx import numpy_helper

    graph = proto.graph
    inits = {i.name: i for i in graph.initializer}
    values: dict[str, np.ndarray] = {}

    def value(name: str) -> np.ndarray:
        if name not in values:
            values[name] = numpy_helper.to_array(inits[name])
        return values[name]

    static: dict[str, tuple[int, ...]] = {}
    for vi in [*graph.input, *graph.value_info, *graph.output]:
        tt = vi.type.tensor_type if vi.type.WhichOneof("value") == "tensor_type" else None
        if tt is not None and tt.HasField("shape") and all(d.HasField("dim_value") for d in tt.shape.dim):
            static[vi.name] = tuple(int(d.dim_value) for d in tt.shape.dim)
    opset = [o for o in proto.opset_import]
    kept, added = [], []
    folded_any = False
    for node in graph.node:
        outs = _try_fold(node, inits, value, static, opset)
        if outs is None:
            kept.append(node)
            continue
        folded_any = True
        for name, arr in zip(node.output, outs, strict=True):
            if not name:
                continue
            tensor = numpy_helper.from_array(np.asarray(arr), name)
            inits[name] = tensor
            values[name] = np.asarray(arr)
            added.append(tensor)
    if not folded_any:
        return False
    del graph.node[:]
    graph.node.extend(kept)
    graph.initializer.extend(added)
    # Drop initializers nothing reads any more (inputs of folded nodes).
    used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    used |= _subgraph_reads(graph)
    keep = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    declared = {i.name for i in keep}
    inputs = [vi for vi in graph.input if vi.name not in inits or vi.name in declared]
    del graph.input[:]
    graph.input.extend(inputs)
    # Folded values are no longer computed: their value_info entries go.
    vis = [vi for vi in graph.value_info if vi.name not in inits]
    del graph.value_info[:]
    graph.value_info.extend(vis)
    del onnx
    return True


def _subgraph_reads(graph: Any) -> set[str]:
    """Names read inside subgraph attributes (If/Loop/Scan bodies) of ``graph``'s nodes."""
    import onnx

    names: set[str] = set()
    for node in graph.node:
        for attr in node.attribute:
            subs = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)
            for g in subs:
                names |= {i for n in g.node for i in n.input} | _subgraph_reads(g)
    return names


def _try_fold(node: Any, inits: dict[str, Any], value: Any, static: dict[str, tuple[int, ...]], opset: list[Any]) -> list[Any] | None:
    """The node's output values if it can be evaluated now, else None."""
    import onnx

    if node.domain not in ("", "ai.onnx") or node.op_type in _NO_FOLD:
        return None
    if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
        return None
    ins = [i for i in node.input if i]
    if node.op_type in ("Shape", "Size") and ins and ins[0] in static and ins[0] not in inits:
        shape = np.asarray(static[ins[0]], dtype=np.int64)
        if node.op_type == "Size":
            return [np.asarray(int(np.prod(shape)), dtype=np.int64)]
        start = next((a.i for a in node.attribute if a.name == "start"), 0)
        end = next((a.i for a in node.attribute if a.name == "end"), None)
        return [shape[start:end] if end is not None else shape[start:]]
    if not all(i in inits for i in ins) or (not ins and node.op_type != "Constant"):
        return None
    in_elements = sum(int(np.prod(inits[i].dims)) for i in ins)
    if _fold_output_elements(node, value) > max(_FOLD_MAX_ELEMENTS, in_elements):
        return None  # never evaluate a large output (ConstantOfShape([10**6, 10**6]))
    try:
        from onnx.reference import ReferenceEvaluator

        single = onnx.helper.make_model(
            onnx.helper.make_graph(
                [node], "fold",
                [onnx.helper.make_tensor_value_info(i, inits[i].data_type, list(inits[i].dims)) for i in dict.fromkeys(ins)],
                [onnx.helper.make_empty_tensor_value_info(o) for o in node.output if o],
            ),
            opset_imports=opset,
        )
        single.ir_version = onnx.IR_VERSION
        with warnings.catch_warnings(), np.errstate(all="ignore"), quiet():
            warnings.simplefilter("ignore")
            results = ReferenceEvaluator(single).run(None, {i: value(i) for i in dict.fromkeys(ins)})
    except Exception:  # noqa: BLE001 - not foldable here; torch-mlir gets the node
        return None
    out: list[Any] = []
    it = iter(results)
    for name in node.output:
        if not name:
            out.append(None)
            continue
        r = next(it, None)
        if not isinstance(r, np.ndarray) or r.dtype == object:
            return None
        if r.size > _FOLD_MAX_ELEMENTS and r.size > in_elements:
            return None
        out.append(r)
    return out


def _fold_output_elements(node: Any, value: Any) -> int:
    """Elements of the output of a node whose output size is set by an input's values
    (ConstantOfShape, Expand, Tile, Range), computed without evaluating it; 0 for others."""
    try:
        if node.op_type == "ConstantOfShape":
            return int(np.prod([max(int(d), 0) for d in value(node.input[0]).reshape(-1)], dtype=object))
        if node.op_type == "Expand":
            x = value(node.input[0]).shape
            shape = [int(d) for d in value(node.input[1]).reshape(-1)]
            rank = max(len(x), len(shape))
            x = (1,) * (rank - len(x)) + tuple(x)
            shape = [1] * (rank - len(shape)) + shape
            return int(np.prod([max(a, b) for a, b in zip(x, shape, strict=True)], dtype=object))
        if node.op_type == "Tile":
            reps = value(node.input[1]).reshape(-1)
            return int(value(node.input[0]).size * np.prod([max(int(r), 0) for r in reps], dtype=object))
        if node.op_type == "Range":
            start, limit, delta = (float(value(i)) for i in node.input[:3])
            return max(int(np.ceil((limit - start) / delta)), 0) if delta else 0
    except Exception:  # noqa: BLE001 - malformed inputs: let the evaluator report them
        return 0
    return 0


def inline_small_constants(proto: Any) -> None:
    """Store small constant tensors in typed fields instead of raw bytes, so torch-mlir's
    importer makes them dense literals (raw bytes become resource blobs)."""
    import onnx
    from onnx import numpy_helper

    inline_types = {
        onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.BOOL, onnx.TensorProto.UINT8,
        onnx.TensorProto.INT8, onnx.TensorProto.INT16, onnx.TensorProto.INT32, onnx.TensorProto.INT64,
    }

    def plain(t: Any) -> None:
        if not t.HasField("raw_data") or t.data_type not in inline_types:
            return
        arr = numpy_helper.to_array(t)
        new = onnx.helper.make_tensor(t.name, t.data_type, list(t.dims), arr.flatten().tolist())
        t.CopyFrom(new)

    for init in proto.graph.initializer:
        plain(init)
    for node in proto.graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.TENSOR:
                    plain(attr.t)
