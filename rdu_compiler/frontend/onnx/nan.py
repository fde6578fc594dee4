"""ONNX rewrites that keep NaN where torch-mlir's lowerings drop it.

torch-mlir lowers ONNX ``Clip``, ``Sign``, ``Max``, ``Min``, ``ArgMax`` and ``ArgMin`` to
``arith.cmpf ogt|olt`` + ``select``, which never picks a NaN operand, so a NaN
input comes out as a number (``Clip(nan, 0.5, 2) = 0.5``) or as another index. ONNX's
reference evaluator follows numpy: ``np.clip``/``np.maximum``/``np.minimum`` propagate NaN
and ``np.argmax``/``np.argmin`` return the first NaN (the last one with
``select_last_index=1``). The rewrites here put that back (from opset 9, which has ``IsNaN``) with ``IsNaN`` (torch-mlir lowers
it to ``cmpf uno``) and ``Where``, on float inputs only (integer ops are exact):

- ``Clip(x, ...)`` -> ``Where(IsNaN(x), x, Clip(x, ...))`` (a NaN bound already gives NaN);
- ``Sign(x)`` -> ``Where(IsNaN(x), x, Sign(x))`` (torch-mlir's lowering gives 0 for NaN,
  numpy's ``np.sign`` NaN);
- ``Max(a, b, ...)`` / ``Min`` -> ``Where(IsNaN(a) | IsNaN(b) | ..., Sum(a, b, ...), Max(...))``
  (the sum of the inputs is NaN where one is; broadcasting as ``Max``);
- ``Hardmax(x)`` (opset >= 13, static shape) -> ``Cast(Equal(arange(n), ArgMax(x)))``
  along its axis, with the ArgMax rewritten as below (one-hot at the first NaN);
- ``ArgMax(x)`` / ``ArgMin`` -> ``Where(any NaN along axis, ArgMax(Cast(IsNaN(x))), ArgMax(x))``
  (the arg-reduction of the 0/1 NaN mask with the same attributes finds the first, or with
  ``select_last_index`` the last, NaN).

:func:`rewrite` is called from :func:`rdu_compiler.frontend.onnx.rewrites.decompose` (the
``decompose`` step of :data:`rdu_compiler.frontend.onnx.prepare.STEPS`), before torch-mlir's ONNX
importer sees the graph.
"""

from __future__ import annotations

from typing import Any

import numpy as np

_FLOAT_TYPES = frozenset({1, 10, 11, 16})  # FLOAT, FLOAT16, DOUBLE, BFLOAT16


def _attr(node: Any, name: str, default: Any) -> Any:
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def rewrite(node: Any, graph: Any, types: dict[str, int], shapes: dict[str, list[int]], version: int) -> list[Any] | None:
    """NaN-propagating ONNX nodes replacing ``node``, or None to keep it.

    ``types`` maps tensor names to ONNX element types (nodes whose data input has an
    unknown or non-float type are kept), ``shapes`` names to static shapes (Hardmax needs
    its input's); ``version`` is the model's default-domain opset.
    New tensors are named after ``node.output[0]``, which is unique in the graph.
    """
    from onnx import TensorProto, helper, numpy_helper

    op = node.op_type
    if op == "Hardmax":
        return _hardmax(node, graph, types, shapes, version)
    if op not in ("Clip", "Sign", "Max", "Min", "ArgMax", "ArgMin") or not node.input:
        return None
    data = [n for n in (node.input[:1] if op in ("Clip", "Sign", "ArgMax", "ArgMin") else node.input) if n]
    if not data or any(types.get(n) not in _FLOAT_TYPES for n in data):
        return None
    if op in ("Max", "Min") and len(data) < 2:
        return None
    out = node.output[0]
    base = f"{out}__nan"
    kept = helper.make_node(op, list(node.input), [f"{base}_op"], name=node.name)
    kept.attribute.extend(node.attribute)
    nans = [helper.make_node("IsNaN", [n], [f"{base}_isnan{k}"]) for k, n in enumerate(data)]
    if op in ("Clip", "Sign"):
        where = helper.make_node("Where", [nans[0].output[0], data[0], kept.output[0]], [out])
        return [kept, nans[0], where]
    if op in ("Max", "Min"):
        mask = nans[0].output[0]
        ors = []
        for k, n in enumerate(nans[1:], 1):
            ors.append(helper.make_node("Or", [mask, n.output[0]], [f"{base}_any{k}"]))
            mask = ors[-1].output[0]
        total = helper.make_node("Sum", data, [f"{base}_sum"])
        where = helper.make_node("Where", [mask, total.output[0], kept.output[0]], [out])
        return [kept, *nans, *ors, total, where]
    # ArgMax / ArgMin: the same arg-reduction over the NaN mask (as float 0/1, ties keep the
    # first or, with select_last_index, the last index), taken where the axis has a NaN.
    axis = int(_attr(node, "axis", 0))
    keepdims = int(_attr(node, "keepdims", 1))
    as_float = helper.make_node("Cast", [nans[0].output[0]], [f"{base}_mask"], to=TensorProto.FLOAT)
    first = helper.make_node("ArgMax", [as_float.output[0]], [f"{base}_first"])
    first.attribute.extend(node.attribute)
    if version >= 18:
        axes = numpy_helper.from_array(np.array([axis], np.int64), f"{base}_axes")
        graph.initializer.append(axes)
        count = helper.make_node("ReduceMax", [as_float.output[0], axes.name], [f"{base}_anyf"], keepdims=keepdims)
    else:
        count = helper.make_node("ReduceMax", [as_float.output[0]], [f"{base}_anyf"], axes=[axis], keepdims=keepdims)
    any_nan = helper.make_node("Cast", [count.output[0]], [f"{base}_anynan"], to=TensorProto.BOOL)
    where = helper.make_node("Where", [any_nan.output[0], first.output[0], kept.output[0]], [out])
    return [kept, nans[0], as_float, first, count, any_nan, where]


def _hardmax(node: Any, graph: Any, types: dict[str, int], shapes: dict[str, list[int]], version: int) -> list[Any] | None:
    """Hardmax as a one-hot of a NaN-aware ArgMax (first maximum, or first NaN) along its
    axis; None (kept) below opset 13 (which flattens to 2-D) or without a static shape."""
    from onnx import helper, numpy_helper

    x, out = node.input[0], node.output[0]
    if version < 13 or types.get(x) not in _FLOAT_TYPES or x not in shapes:
        return None
    shape = shapes[x]
    rank = len(shape)
    if rank == 0:
        return None
    axis = int(_attr(node, "axis", -1)) % rank
    base = f"{out}__nan"
    arg = helper.make_node("ArgMax", [x], [f"{base}_arg"], axis=axis, keepdims=1)
    arg_nodes = rewrite(arg, graph, types, shapes, version) or [arg]
    positions = numpy_helper.from_array(
        np.arange(shape[axis], dtype=np.int64).reshape([1] * axis + [shape[axis]] + [1] * (rank - axis - 1)), f"{base}_pos"
    )
    graph.initializer.append(positions)
    return [
        *arg_nodes,
        helper.make_node("Equal", [positions.name, f"{base}_arg"], [f"{base}_hot"]),
        helper.make_node("Cast", [f"{base}_hot"], [out], name=node.name, to=types[x]),
    ]
