"""ONNX rewrites for ops torch-mlir lowers with other semantics than ONNX: refused
(:func:`refuse_known_wrong`, :func:`check_types`), decomposed (:func:`decompose`) or computed in a
wider type (:func:`widen_unsigned`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rdu_compiler.frontend.onnx import nan
from rdu_compiler.frontend.onnx.errors import OnnxImportError
from rdu_compiler.frontend.onnx.graph import dtype_name, node_attr, types_and_shapes


def refuse_known_wrong(proto: Any, where: str) -> None:
    """Refuse ONNX ops (with the attributes) that torch-mlir lowers to different numbers
    than ONNX specifies, found by the ONNX backend node tests: a refusal is better than a
    wrong result."""
    graph = proto.graph
    inits = {i.name: i for i in graph.initializer}
    shapes: dict[str, list[int]] = {}
    for vi in [*graph.input, *graph.value_info, *graph.output]:
        if vi.type.WhichOneof("value") == "tensor_type" and vi.type.tensor_type.HasField("shape"):
            shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else -1 for d in vi.type.tensor_type.shape.dim]
    for i in inits.values():
        shapes[i.name] = list(i.dims)

    def elem(name: str) -> int | None:
        if name in inits:
            return inits[name].data_type
        for vi in [*graph.input, *graph.value_info, *graph.output]:
            if vi.name == name:
                return vi.type.tensor_type.elem_type
        return None

    import onnx
    from onnx import numpy_helper

    for node in graph.node:
        if node.domain not in ("", "ai.onnx"):
            continue
        why = None
        op = node.op_type
        if op == "DequantizeLinear" and len(node.input) > 2 and node.input[2]:
            zp = node.input[2]
            if elem(zp) == onnx.TensorProto.UINT8 and int(np.prod(shapes.get(zp, [1]) or [1])) > 1:
                why = "a per-axis uint8 zero point is sign-extended (values >= 128 come out wrong)"
        elif op == "QLinearMatMul" and any(len(shapes.get(node.input[k], [])) > 2 for k in (0, 3)):
            why = "for inputs of rank > 2 the zero points of A and B are ignored"
        elif op == "GridSample" and node_attr(node, "mode", b"linear") in (b"nearest", "nearest"):
            why = "mode='nearest' rounds grid coordinates differently"
        elif op == "LSTM" and len(node.input) > 7 and node.input[7]:
            why = "the peephole weights (input P) are ignored"
        elif op == "SpaceToDepth" and node_attr(node, "mode", b"DCR") in (b"CRD", "CRD"):
            why = "mode='CRD' is lowered as 'DCR'"
        elif op == "Resize" and node_attr(node, "coordinate_transformation_mode", b"half_pixel") in (b"align_corners", "align_corners"):
            scales = node.input[2] if len(node.input) > 2 else ""
            x_shape = shapes.get(node.input[0], [])
            if scales and scales in inits and x_shape and all(d > 0 for d in x_shape):
                factors = numpy_helper.to_array(inits[scales]).astype(np.float64)
                if factors.size == len(x_shape) and any(
                    abs(d * f - round(d * f)) > 1e-6 for d, f in zip(x_shape, factors, strict=True)
                ):
                    why = "align_corners with scales that give a fractional output size uses the scale, not the sizes"
        if why:
            raise OnnxImportError(
                f"{where}: ONNX op '{op}' (node '{node.name or op}'): torch-mlir's lowering computes "
                f"different numbers than ONNX specifies here ({why}); refused rather than compiled "
                "wrong. Re-export without that option or compute that part outside the model.",
                op,
                node.name or None,
            )


def _rewrite_node(node: Any, graph: Any, types: dict[str, int], shapes: dict[str, list[int]], version: int) -> list[Any] | None:
    """ONNX nodes replacing ``node`` (see :func:`decompose`), or None to keep it."""
    import onnx
    from onnx import helper, numpy_helper

    if node.domain not in ("", "ai.onnx"):
        return None
    op = node.op_type
    if version >= 9 and (kept := nan.rewrite(node, graph, types, shapes, version)) is not None:
        return kept  # Clip/Sign/Max/Min/ArgMax/ArgMin/Hardmax keeping NaN as ONNX does (nan.py)
    base = f"{node.name or op}__rdu"

    def const(value: np.ndarray, suffix: str) -> str:
        t = numpy_helper.from_array(value, f"{base}_{suffix}")
        graph.initializer.append(t)
        return t.name

    def axes_node(kind: str, x: str, axes: list[int], out: str, **kw: Any) -> Any:
        # Unsqueeze/Squeeze take axes as an input from opset 13, reductions from opset 18.
        as_input = version >= (13 if kind in ("Unsqueeze", "Squeeze", "ReduceSum") else 18)
        if as_input:
            return helper.make_node(kind, [x, const(np.array(axes, np.int64), f"{kind}{len(graph.initializer)}")], [out], **kw)
        return helper.make_node(kind, [x], [out], axes=axes, **kw)

    if op in ("Softmax", "LogSoftmax") and types.get(node.input[0]) == onnx.TensorProto.FLOAT16 and node.input[0] in shapes:
        # ONNX defines (Log)Softmax on float16 op by op in float16 (its function body; the
        # reference rounds exp(x - max) to float16 before the sum and the division);
        # torch-mlir computes the whole softmax in float32 and rounds once, one ulp off.
        rank = len(shapes[node.input[0]])
        axis = int(node_attr(node, "axis", -1 if version >= 13 else 1))
        axis = axis % max(rank, 1)
        if version < 13 and axis != rank - 1:
            return None  # opset < 13 coerces to 2-D over all axes from `axis`
        x, out = node.input[0], node.output[0]
        nodes = [
            axes_node("ReduceMax", x, [axis], f"{base}_max", keepdims=1),
            helper.make_node("Sub", [x, f"{base}_max"], [f"{base}_shift"]),
            helper.make_node("Exp", [f"{base}_shift"], [f"{base}_exp"]),
            axes_node("ReduceSum", f"{base}_exp", [axis], f"{base}_sum", keepdims=1),
        ]
        if op == "Softmax":
            return [*nodes, helper.make_node("Div", [f"{base}_exp", f"{base}_sum"], [out], name=node.name)]
        return [
            *nodes,
            helper.make_node("Div", [f"{base}_exp", f"{base}_sum"], [f"{base}_sm"]),
            helper.make_node("Log", [f"{base}_sm"], [out], name=node.name),
        ]
    if op == "Dropout":
        # Inference, or training with ratio 0: the identity, and an all-true mask (training
        # with a nonzero ratio needs random masks: left to torch-mlir, which refuses it).
        inits = {i.name: i for i in graph.initializer}

        def scalar(k: int, default: Any) -> Any:
            if k >= len(node.input) or not node.input[k]:
                return default
            if node.input[k] not in inits:
                return None
            return numpy_helper.to_array(inits[node.input[k]]).reshape(-1)[0].item()

        training, ratio = scalar(2, False), scalar(1, 0.5)
        if training is None or (training and ratio != 0):
            return None
        x = node.input[0]
        out = [helper.make_node("Identity", [x], [node.output[0]], name=node.name)]
        if len(node.output) > 1 and node.output[1]:
            if x not in shapes:
                return None
            out.append(helper.make_node("Identity", [const(np.ones(shapes[x], np.bool_), "mask")], [node.output[1]]))
        return out
    if op == "MatMul" and all(n in shapes for n in node.input):
        ra, rb = len(shapes[node.input[0]]), len(shapes[node.input[1]])
        a, b = node.input
        out = node.output[0]
        if ra == 1 and rb >= 3:
            return [
                axes_node("Unsqueeze", a, [0], f"{base}_a2"),
                helper.make_node("MatMul", [f"{base}_a2", b], [f"{base}_c2"], name=node.name),
                axes_node("Squeeze", f"{base}_c2", [-2], out),
            ]
        if rb == 1 and ra >= 3:
            return [
                axes_node("Unsqueeze", b, [1], f"{base}_b2"),
                helper.make_node("MatMul", [a, f"{base}_b2"], [f"{base}_c2"], name=node.name),
                axes_node("Squeeze", f"{base}_c2", [-1], out),
            ]
        return None
    if op == "CumProd" and node.input[0] in shapes and node.input[1] in {i.name for i in graph.initializer}:
        # cumprod along an axis of length n: the product over k of x[k] masked to 1 where
        # k is not (yet) included for output position i (an n x n mask).
        shape = shapes[node.input[0]]
        axis_init = next(i for i in graph.initializer if i.name == node.input[1])
        a = int(np.asarray(numpy_helper.to_array(axis_init)).reshape(-1)[0]) % max(len(shape), 1)
        n = shape[a]
        if n > 256:
            return None
        i, k = np.arange(n)[:, None], np.arange(n)[None, :]
        exclusive, reverse = int(node_attr(node, "exclusive", 0)), int(node_attr(node, "reverse", 0))
        mask = (k >= i) if reverse else (k <= i)
        if exclusive:
            mask &= k != i
        mask = mask.reshape([1] * a + [n, n] + [1] * (len(shape) - a - 1))
        dtype = onnx.helper.tensor_dtype_to_np_dtype(types[node.input[0]])
        x = node.input[0]
        return [
            axes_node("Unsqueeze", x, [a], f"{base}_xk"),
            helper.make_node("Where", [const(mask, "mask"), f"{base}_xk", const(np.ones((), dtype), "one")], [f"{base}_w"]),
            axes_node("ReduceProd", f"{base}_w", [a + 1], node.output[0], keepdims=0),
        ]
    return None


def decompose(proto: Any) -> bool:
    """Rewrite ops whose torch-mlir lowering differs from ONNX into ONNX ops it lowers right:

    - ``LpNormalization``: x / norm, with the norm of an all-zero vector taken as 1 (ONNX
      gives 0 there; torch-mlir's lowering gives 0/0 = NaN);
    - ``CastLike``: a ``Cast`` to the target's element type (the target is not read);
    - inference ``Dropout``, or training with ratio 0: the identity (and an all-true mask);
    - ``MatMul`` of a 1-D operand with one of rank >= 3 (torch-mlir's aten.matmul does not
      lower it): through an unsqueezed 2-D operand;
    - ``CumProd`` with a constant axis (torch-mlir has no conversion): a masked
      ``ReduceProd`` over an n x n mask;
    - ``Softmax`` / ``LogSoftmax`` on float16: op by op in float16, as ONNX defines them
      (torch-mlir computes them in float32 and rounds once).
    - float ``Clip``, ``Sign``, ``Max``, ``Min``, ``ArgMax``, ``ArgMin``, ``Hardmax``: NaN kept (``nan.py``).

    Returns whether anything was rewritten.
    """
    import onnx
    from onnx import helper, numpy_helper

    graph = proto.graph
    version = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 1)
    types, shapes = types_and_shapes(graph)
    nodes, changed = [], False
    for node in graph.node:
        if node.op_type == "CastLike" and node.domain in ("", "ai.onnx") and node.input[1] in types:
            # Only the target's type matters: a Cast, and the target is no longer read.
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            nodes.append(helper.make_node("Cast", [node.input[0]], list(node.output), name=node.name, to=types[node.input[1]], **attrs))
            changed = True
            continue
        rewritten = _rewrite_node(node, graph, types, shapes, version)
        if rewritten is not None:
            nodes.extend(rewritten)
            changed = True
            continue
        if node.op_type != "LpNormalization" or node.domain not in ("", "ai.onnx") or node.input[0] not in types:
            nodes.append(node)
            continue
        p = int(node_attr(node, "p", 2))
        axis = int(node_attr(node, "axis", -1))
        if p not in (1, 2):
            nodes.append(node)
            continue
        x, y = node.input[0], node.output[0]
        base = f"{node.name or 'LpNormalization'}__rdu"
        dtype = onnx.helper.tensor_dtype_to_np_dtype(types[x])
        reduce = "ReduceL2" if p == 2 else "ReduceL1"
        if version >= 18:
            axes = numpy_helper.from_array(np.array([axis], dtype=np.int64), f"{base}_axes")
            graph.initializer.append(axes)
            nodes.append(helper.make_node(reduce, [x, axes.name], [f"{base}_norm"], keepdims=1))
        else:
            nodes.append(helper.make_node(reduce, [x], [f"{base}_norm"], axes=[axis], keepdims=1))
        zero = numpy_helper.from_array(np.zeros((), dtype=dtype), f"{base}_zero")
        one = numpy_helper.from_array(np.ones((), dtype=dtype), f"{base}_one")
        graph.initializer.extend([zero, one])
        nodes += [
            helper.make_node("Equal", [f"{base}_norm", zero.name], [f"{base}_is0"]),
            helper.make_node("Where", [f"{base}_is0", one.name, f"{base}_norm"], [f"{base}_safe"]),
            helper.make_node("Div", [x, f"{base}_safe"], [y], name=node.name),
        ]
        changed = True
    if changed:
        del graph.node[:]
        graph.node.extend(nodes)
    return changed


#: Ops computed exactly on the wider signed type for values of an unsigned 16/32-bit one.
_WIDEN_EXACT = {
    "Equal", "Greater", "GreaterOrEqual", "Less", "LessOrEqual", "Max", "Min", "Div", "Mod",
    "BitwiseAnd", "BitwiseOr", "BitwiseXor", "Identity", "Reshape", "Transpose", "Squeeze",
    "Unsqueeze", "Flatten", "Concat", "Slice", "Gather", "Expand", "Where", "Abs", "ReduceMax",
    "ReduceMin", "ArgMax", "ArgMin", "Tile", "Sign",
}


#: Ops whose unsigned result wraps around: computed wide, then reduced modulo 2**bits.
_WIDEN_WRAP = {"Add", "Sub", "Mul", "Neg", "BitwiseNot", "Sum"}


#: Ops that give the same bits on int64 as on uint64 (two's complement): uint64 is computed
#: as int64 only where every op is one of these (left shifts too).
_SAME_BITS_64 = {
    "Add", "Sub", "Mul", "Neg", "Sum", "BitwiseAnd", "BitwiseOr", "BitwiseXor", "BitwiseNot",
    "Equal", "Identity", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Concat",
    "Slice", "Gather", "Expand", "Where", "Tile",
}


def widen_unsigned(proto: Any) -> bool:
    """Compute uint16 / uint32 tensors (which torch-mlir cannot lower) as int32 / int64.

    Every value keeps its number (the wider signed type holds all of them); ops whose
    result wraps around (Add, Sub, Mul, left shifts, ...) are followed by a reduction
    modulo 2**16 / 2**32, so results are those of the unsigned type. uint64 is computed as
    int64 (same bits) where only ops with identical two's-complement bits touch it. Applies only when
    every op touching such a tensor is one this handles; otherwise nothing changes (and
    the element type is refused as before). Returns whether the model was rewritten.
    """
    import onnx
    from onnx import helper, numpy_helper

    T = onnx.TensorProto
    wide: dict[int, tuple[int, int | None]] = {T.UINT16: (T.INT32, 1 << 16), T.UINT32: (T.INT64, 1 << 32), T.UINT64: (T.INT64, None)}
    graph = proto.graph
    types, _ = types_and_shapes(graph)
    narrow = {n for n, t in types.items() if t in wide}
    casts = [n for n in graph.node if n.op_type == "Cast" and node_attr(n, "to") in wide]
    if not narrow and not casts:
        return False
    for node in graph.node:
        touched = [n for n in [*node.input, *node.output] if n in narrow]
        if node.op_type == "Cast" and node_attr(node, "to") == T.UINT64:
            return False  # a cast to uint64 does not wrap like one to int64
        if node.op_type in ("Cast", "Constant"):
            continue
        if not touched:
            continue
        if node.domain not in ("", "ai.onnx") or any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
            return False
        op = node.op_type
        left = op == "BitShift" and node_attr(node, "direction") in (b"LEFT", "LEFT")
        if any(types.get(n) == T.UINT64 for n in touched):
            if op in _SAME_BITS_64 or left:
                continue
            return False
        if op == "BitShift" or op in _WIDEN_EXACT or op in _WIDEN_WRAP:
            continue
        if op == "Pow" and node.input[0] not in narrow:
            continue  # an unsigned exponent only
        return False
    for node in graph.node:
        if node.op_type == "Constant" and any(a.type == onnx.AttributeProto.TENSOR and a.t.data_type in wide for a in node.attribute):
            return False
    # Rewrite: types, initializers, casts, and a modulo after each wrapping op.
    for v in [*graph.input, *graph.output]:
        if v.type.WhichOneof("value") == "tensor_type" and v.type.tensor_type.elem_type in wide:
            v.type.tensor_type.elem_type = wide[v.type.tensor_type.elem_type][0]
    inits = []
    for init in graph.initializer:
        if init.data_type in wide:
            arr = numpy_helper.to_array(init).astype(onnx.helper.tensor_dtype_to_np_dtype(wide[init.data_type][0]))
            init = numpy_helper.from_array(arr, init.name)
        inits.append(init)
    del graph.initializer[:]
    graph.initializer.extend(inits)
    nodes = []
    for k, node in enumerate(graph.node):
        out = node.output[0] if node.output else ""
        width = None
        if node.op_type == "Cast" and node_attr(node, "to") in wide:
            width = node_attr(node, "to")
            for a in node.attribute:
                if a.name == "to":
                    a.i = wide[width][0]
        elif out in narrow and (node.op_type in _WIDEN_WRAP or (node.op_type == "BitShift" and node_attr(node, "direction") in (b"LEFT", "LEFT"))):
            width = types[out]
        if width is None:
            nodes.append(node)
            continue
        wide_t, modulus = wide[width]
        if modulus is None:  # uint64 as int64: the bits are already right
            nodes.append(node)
            continue
        raw = f"{out}__rdu_wide{k}"
        mod = numpy_helper.from_array(np.array(modulus, dtype=onnx.helper.tensor_dtype_to_np_dtype(wide_t)), f"{out}__rdu_mod{k}")
        graph.initializer.append(mod)
        node.output[0] = raw
        nodes += [node, helper.make_node("Mod", [raw, mod.name], [out], fmod=0)]
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.value_info[:]
    return True


def _unsupported_types() -> set[int]:
    import onnx

    names = [
        "STRING", "COMPLEX64", "COMPLEX128", "FLOAT8E4M3FN", "FLOAT8E4M3FNUZ", "FLOAT8E5M2",
        "FLOAT8E5M2FNUZ", "UINT4", "INT4", "FLOAT4E2M1", "FLOAT8E8M0", "UINT2", "INT2",
    ]
    return {getattr(onnx.TensorProto, n) for n in names if hasattr(onnx.TensorProto, n)}


UNSUPPORTED_TYPES = _unsupported_types()

def check_types(proto: Any, where: str) -> None:
    """Refuse element types torch-mlir aborts on (unsigned 16/32/64-bit integers) up front."""
    import onnx

    bad = {onnx.TensorProto.UINT16, onnx.TensorProto.UINT32, onnx.TensorProto.UINT64}
    graph = proto.graph
    found: tuple[str, int] | None = None
    for vi in [*graph.input, *graph.output, *graph.value_info]:
        if vi.type.WhichOneof("value") == "tensor_type" and vi.type.tensor_type.elem_type in bad:
            found = (f"'{vi.name}'", vi.type.tensor_type.elem_type)
            break
    if found is None:
        for init in graph.initializer:
            if init.data_type in bad:
                found = (f"initializer '{init.name}'", init.data_type)
                break
    if found is None:
        for node in graph.node:
            for attr in node.attribute:
                if attr.name == "to" and attr.type == onnx.AttributeProto.INT and attr.i in bad:
                    found = (f"the result of {node.op_type} node '{node.name}'", attr.i)
                    break
            if found:
                break
    if found:
        what, et = found
        raise OnnxImportError(
            f"{where}: {what} has element type {dtype_name(et)}, which torch-mlir does not lower "
            "(of the unsigned integers only uint8 is supported; the compiler computes uint16/uint32 "
            "on int32/int64 and uint64 on int64 where that gives the same results, which is not "
            "the case for an op here). Use a signed type (int32/int64) or uint8 in the model.",
        )
