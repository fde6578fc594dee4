"""Element types below 8 bits, float8 and float4 (no numpy arithmetic, no torch-mlir lowering):
computed in a type where every value is exact, and quantization written out explicitly.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rdu_compiler.frontend.onnx.graph import node_attr, types_and_shapes


#: Element types below 8 bits and float8/float4 (no numpy arithmetic, no torch-mlir
#: lowering) -> the type they are computed in: every value of theirs is exact there.
def _narrow_types() -> dict[int, int]:
    import onnx

    T = onnx.TensorProto
    wide = {
        "INT4": T.INT8, "INT2": T.INT8, "UINT4": T.UINT8, "UINT2": T.UINT8, "FLOAT4E2M1": T.FLOAT,
        "FLOAT8E4M3FN": T.FLOAT, "FLOAT8E4M3FNUZ": T.FLOAT, "FLOAT8E5M2": T.FLOAT, "FLOAT8E5M2FNUZ": T.FLOAT,
    }
    return {getattr(T, n): w for n, w in wide.items() if hasattr(T, n)}


_NARROW_CACHE: dict[tuple[int, bool], tuple[np.ndarray, np.ndarray, float] | None] = {}

def _f32_key(x: np.ndarray) -> np.ndarray:
    """float32 -> int64 keys in the order of the values (-0.0 just below +0.0); an involution."""
    i = np.asarray(x, np.float32).view(np.int32).astype(np.int64)
    return np.where(i < 0, -(i & 0x7FFFFFFF) - 1, i)


def _f32_of_key(k: np.ndarray) -> np.ndarray:
    k = np.asarray(k, np.int64)
    i = np.where(k < 0, (-(k + 1)) | -0x80000000, k)
    return i.astype(np.int32).view(np.float32)


def _narrow_float_table(to: int, saturate: bool) -> tuple[np.ndarray, np.ndarray, float] | None:
    """How ONNX's reference casts float32 to the narrow float type ``to``, as a step function:
    (thresholds t ascending, values v with len(t) + 1 entries, value of NaN) such that
    cast(x) = v[#{j: x >= t[j]}] for every non-NaN float32 x. The thresholds are found on the
    reference cast itself (a bisection per step between adjacent representable values), and
    the table is checked on every threshold +-1 ulp and on random values; None if the
    reference is not such a step function."""
    key = (to, saturate)
    if key in _NARROW_CACHE:
        return _NARROW_CACHE[key]
    import onnx
    from onnx.reference.ops.op_cast import cast_to

    def ref(x: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            # onnx's stub types `to` as the DataType enum, whose values are these ints.
            return np.asarray(cast_to(np.asarray(x, np.float32), to, saturate)).astype(np.float32)  # pyright: ignore[reportArgumentType]

    def same(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return (a == b) | (np.isnan(a) & np.isnan(b))

    result: tuple[np.ndarray, np.ndarray, float] | None = None
    try:
        dtype = onnx.helper.tensor_dtype_to_np_dtype(to)
        bits = 16 if np.dtype(dtype).itemsize == 1 and "float4" in np.dtype(dtype).name else 256
        with np.errstate(all="ignore"):
            allv = np.arange(bits, dtype=np.uint8).view(dtype).astype(np.float32)
        vals = np.unique(allv[np.isfinite(allv)])  # -0.0 and +0.0 merge
        big = np.float32(np.finfo(np.float32).max)
        # the values below the lowest and above the highest finite value (saturation or overflow)
        lo_v, hi_v = ref(np.array([-np.inf]))[0], ref(np.array([np.inf]))[0]
        lows = [] if same(ref(np.array([-big])), vals[:1])[0] and same(np.array([lo_v]), vals[:1])[0] else [lo_v]
        highs = [] if same(ref(np.array([big])), vals[-1:])[0] and same(np.array([hi_v]), vals[-1:])[0] else [hi_v]
        table = np.array([*lows, *vals, *highs], np.float32)
        # step j goes from table[j] to table[j + 1]: bisect between two keys where it happens
        lo_k = _f32_key(np.array([-big] * len(lows) + list(vals) + [vals[-1]] * len(highs), np.float32))
        hi_k = _f32_key(np.array([vals[0]] * len(lows) + list(vals[1:]) + [big] * len(highs), np.float32))
        lo_k, hi_k = lo_k[: len(table) - 1], hi_k[: len(table) - 1]
        want = table[1:]
        if not np.all(same(ref(_f32_of_key(hi_k)), want)):
            raise ValueError("not a step function")
        while np.any(hi_k - lo_k > 1):
            mid = (lo_k + hi_k) // 2
            up = same(ref(_f32_of_key(mid)), want)
            hi_k = np.where(up, mid, hi_k)
            lo_k = np.where(up, lo_k, mid)
        thresholds = _f32_of_key(hi_k)
        nan_v = float(ref(np.array([np.nan]))[0])
        rng = np.random.default_rng(0)
        span = float(np.max(np.abs(vals))) * 1.5
        probe = np.concatenate([
            _f32_of_key(hi_k), _f32_of_key(hi_k - 1), _f32_of_key(hi_k + 1), vals, -vals,
            rng.uniform(-span, span, 20000).astype(np.float32),
            (rng.standard_normal(20000) * np.float32(span / 64)).astype(np.float32),
            np.array([np.inf, -np.inf, big, -big, 0.0, -0.0], np.float32),
        ]).astype(np.float32)
        idx = np.sum(probe[:, None] >= thresholds[None, :], axis=1)
        if not np.all(same(table[idx], ref(probe))):
            raise ValueError("table disagrees with the reference")
        result = (thresholds.astype(np.float32), table, nan_v)
    except Exception:  # noqa: BLE001 - no table: the cast stays refused
        result = None
    _NARROW_CACHE[key] = result
    return result


def _plan_narrow_quant(node: Any, types: dict[str, int], shapes: dict[str, list[int]], byte: bool = False) -> tuple[str, Any] | None:
    """How :func:`lower_narrow_types` rewrites a (De)QuantizeLinear with a narrow quantized
    type (scalar or per-axis scale and zero point), or None to refuse it. ``byte``: plan
    int8/uint8 instead (see :func:`explicit_quant`)."""
    import onnx

    T = onnx.TensorProto
    wide: dict[int, int] = {T.INT8: T.INT8, T.UINT8: T.UINT8} if byte else _narrow_types()
    if int(node_attr(node, "block_size", 0) or 0) or node_attr(node, "precision") is not None or node_attr(node, "output_dtype"):
        return None
    ins = [*node.input, "", ""][:3]
    x, scale, zp = ins
    if x not in shapes or scale not in shapes or (zp and zp not in shapes):
        return None
    rank = len(shapes[x])
    axis = int(node_attr(node, "axis", 1))
    if rank:
        axis %= rank

    def param_shape(name: str) -> list[int] | None:
        shp = shapes[name]
        if int(np.prod(shp)) == 1:
            return []
        if len(shp) == 1 and rank and shapes[x][axis] == shp[0]:
            return [1] * axis + [shp[0]] + [1] * (rank - axis - 1)
        return None

    pshape = {n: param_shape(n) for n in (scale, zp) if n}
    if any(v is None for v in pshape.values()) or types.get(scale) not in (T.FLOAT, T.FLOAT16, T.BFLOAT16):
        return None
    if node.op_type == "DequantizeLinear":
        qt = types.get(x)
        if qt not in wide:
            return None
        return "deq", (qt, pshape, types[scale])
    qt = types.get(zp) if zp else None
    if qt is None or qt not in wide or types.get(x) not in (T.FLOAT, T.FLOAT16, T.BFLOAT16):
        return None
    if wide[qt] == T.FLOAT:
        table = _narrow_float_table(qt, bool(node_attr(node, "saturate", 1)))
        if table is None or int(np.prod(shapes[x])) * len(table[0]) > (1 << 24):
            return None
        return "q", (qt, pshape, table)
    return "q", (qt, pshape, None)


def _narrow_quant_nodes(kind: str, data: Any, node: Any, base: str, const: Any) -> list[Any]:
    """ONNX nodes computing a (De)QuantizeLinear on a narrow type's wide stand-in, as ONNX's
    reference does: dequantize (float32(x) - zero point) * scale in float32, rounded to the
    scale's type; quantize rint(x / scale) + zero point saturated to the integer range, or
    x / scale (+ zero point for float4) converted like ``Cast`` to the float type."""
    import onnx
    from onnx import helper

    T = onnx.TensorProto
    qt, pshape, extra = data
    wide = {**_narrow_types(), T.INT8: T.INT8, T.UINT8: T.UINT8}
    ins = [*node.input, "", ""][:3]
    x, scale, zp = ins
    out = node.output[0]
    nodes: list[Any] = []

    def param(name: str, to: int, tag: str) -> str:
        nodes.append(helper.make_node("Cast", [name], [f"{base}_{tag}c"], to=to))
        nodes.append(helper.make_node("Reshape", [f"{base}_{tag}c", const(np.array(pshape[name], np.int64), f"{tag}shape")], [f"{base}_{tag}"]))
        return f"{base}_{tag}"

    s = param(scale, T.FLOAT, "scale")
    if kind == "deq":
        scale_t = extra
        nodes.append(helper.make_node("Cast", [x], [f"{base}_xf"], to=T.FLOAT))
        dx = f"{base}_xf"
        if zp and wide[qt] != T.FLOAT:  # float8 zero points are 0 (ignored)
            z = param(zp, T.FLOAT, "zp")
            nodes.append(helper.make_node("Sub", [dx, z], [f"{base}_dx"]))
            dx = f"{base}_dx"
        nodes.append(helper.make_node("Mul", [dx, s], [f"{base}_y"]))
        nodes.append(helper.make_node("Cast", [f"{base}_y"], [out], to=scale_t))
        return nodes
    nodes.append(helper.make_node("Cast", [x], [f"{base}_xf"], to=T.FLOAT))
    nodes.append(helper.make_node("Div", [f"{base}_xf", s], [f"{base}_q"]))
    if extra is None:  # integer: rint, + zero point, saturate
        lo, hi = {T.INT4: (-8, 7), T.UINT4: (0, 15), T.INT2: (-2, 1), T.UINT2: (0, 3), T.INT8: (-128, 127), T.UINT8: (0, 255)}[qt]
        z = param(zp, T.FLOAT, "zp")
        nodes += [
            helper.make_node("Round", [f"{base}_q"], [f"{base}_r"]),
            helper.make_node("Add", [f"{base}_r", z], [f"{base}_rz"]),
            helper.make_node("Clip", [f"{base}_rz", const(np.array(lo, np.float32), "lo"), const(np.array(hi, np.float32), "hi")], [f"{base}_c"]),
            helper.make_node("Cast", [f"{base}_c"], [out], to=wide[qt]),
        ]
        return nodes
    thresholds, table, nan_v = extra
    q = f"{base}_q"
    if qt == getattr(T, "FLOAT4E2M1", -1) and zp:
        z = param(zp, T.FLOAT, "zp")
        nodes.append(helper.make_node("Add", [q, z], [f"{base}_qz"]))
        q = f"{base}_qz"
    nodes += [
        helper.make_node("Unsqueeze", [q, const(np.array([-1], np.int64), "ax")], [f"{base}_xu"]),
        helper.make_node("GreaterOrEqual", [f"{base}_xu", const(thresholds, "thr")], [f"{base}_ge"]),
        helper.make_node("Cast", [f"{base}_ge"], [f"{base}_gei"], to=T.INT64),
        helper.make_node("ReduceSum", [f"{base}_gei", const(np.array([-1], np.int64), "rax")], [f"{base}_idx"], keepdims=0),
        helper.make_node("Gather", [const(table, "table"), f"{base}_idx"], [f"{base}_g"], axis=0),
        helper.make_node("IsNaN", [q], [f"{base}_nan"]),
        helper.make_node("Where", [f"{base}_nan", const(np.array(nan_v, np.float32), "nanv"), f"{base}_g"], [out]),
    ]
    return nodes


def explicit_quant(proto: Any) -> bool:
    """Per-axis int8/uint8 ``DequantizeLinear`` / ``QuantizeLinear`` as explicit ONNX ops
    (:func:`_narrow_quant_nodes`): torch-mlir's per-axis lowering sign-extends uint8 zero
    points and does not lower per-axis quantization. Returns whether anything changed."""
    graph = proto.graph
    version = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 1)
    if version < 13:
        return False
    types, shapes = types_and_shapes(graph)
    nodes: list[Any] = []
    changed = False
    for k, node in enumerate(graph.node):
        per_axis = node.domain in ("", "ai.onnx") and node.op_type in ("DequantizeLinear", "QuantizeLinear") and any(
            int(np.prod(shapes.get(n, [1]))) > 1 for n in node.input[1:3] if n
        )
        plan = _plan_narrow_quant(node, types, shapes, byte=True) if per_axis else None
        if plan is None:
            nodes.append(node)
            continue
        base = f"{node.name or node.op_type}__rdu_quant{k}"

        def const(value: np.ndarray, suffix: str, base: str = base) -> str:
            from onnx import numpy_helper

            t = numpy_helper.from_array(np.asarray(value), f"{base}_{suffix}")
            graph.initializer.append(t)
            return t.name

        nodes += _narrow_quant_nodes(plan[0], plan[1], node, base, const)
        changed = True
    if changed:
        del graph.node[:]
        graph.node.extend(nodes)
    return changed


def lower_narrow_types(proto: Any) -> bool:
    """Compute int4/uint4/int2/uint2/float4/float8 tensors (which torch-mlir cannot lower) in a
    type that holds every value exactly: int8 / uint8 / float32.

    Inputs, outputs and initializers of such a type are computed in the wider type (the
    runtime converts at the boundary, exactly); a ``Cast`` from it reads the wider value
    (the same number); a ``Cast`` to it becomes ONNX ops that compute the reference's
    conversion exactly: for float targets a step function of the float32 value (compares
    with the rounding thresholds of the target, then a lookup; :func:`_narrow_float_table`),
    for integer targets truncation toward zero and wrap-around modulo 2**bits (NaN and
    infinities give 0), as ``ml_dtypes`` (ONNX's reference) converts. Applies only when every
    op touching such a tensor is a ``Cast`` or ``Identity``; otherwise nothing changes and
    the type is refused as before. Returns whether the model was rewritten.
    """
    import onnx
    from onnx import helper, numpy_helper

    T = onnx.TensorProto
    wide = _narrow_types()
    graph = proto.graph
    version = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 1)
    types, shapes = types_and_shapes(graph)
    narrow = {n for n, t in types.items() if t in wide}
    casts = [n for n in graph.node if n.op_type == "Cast" and node_attr(n, "to") in wide]
    if (not narrow and not casts) or version < 13:
        return False
    float_src = {T.FLOAT, T.FLOAT16, T.BFLOAT16}
    int_src = {T.INT8, T.INT16, T.INT32, T.INT64, T.UINT8, T.BOOL}
    plans: dict[int, tuple[str, Any]] = {}
    for k, node in enumerate(graph.node):
        touched = [n for n in [*node.input, *node.output] if n in narrow]
        if node.domain not in ("", "ai.onnx"):
            if touched:
                return False
            continue
        if node.op_type == "Constant" and any(a.type == onnx.AttributeProto.TENSOR and a.t.data_type in wide for a in node.attribute):
            return False
        if node.op_type == "Cast" and node_attr(node, "to") in wide:
            to = node_attr(node, "to")
            src = types.get(node.input[0])
            src = wide.get(src, src) if src is not None else None
            n = int(np.prod(shapes.get(node.input[0], [1 << 30])))
            if wide[to] == T.FLOAT:
                if src not in float_src:
                    return False
                table = _narrow_float_table(to, bool(node_attr(node, "saturate", 1)))
                if table is None or n * len(table[0]) > (1 << 24):
                    return False
                plans[k] = ("float", table)
            else:
                if src not in float_src | int_src:
                    return False
                plans[k] = ("int", (to, src in float_src))
            continue
        if node.op_type in ("DequantizeLinear", "QuantizeLinear") and touched:
            plan = _plan_narrow_quant(node, types, shapes)
            if plan is None:
                return False
            plans[k] = plan
            continue
        if node.op_type in ("Cast", "Identity") or not touched:
            continue
        return False
    # Rewrite: boundary types, initializers, casts to narrow types.
    for v in [*graph.input, *graph.output]:
        if v.type.WhichOneof("value") == "tensor_type" and v.type.tensor_type.elem_type in wide:
            v.type.tensor_type.elem_type = wide[v.type.tensor_type.elem_type]
    inits = []
    for init in graph.initializer:
        if init.data_type in wide:
            arr = numpy_helper.to_array(init).astype(helper.tensor_dtype_to_np_dtype(wide[init.data_type]))
            init = numpy_helper.from_array(arr, init.name)
        inits.append(init)
    del graph.initializer[:]
    graph.initializer.extend(inits)

    nodes: list[Any] = []
    for k, node in enumerate(graph.node):
        if k not in plans:
            nodes.append(node)
            continue
        kind, data = plans[k]
        base = f"{node.name or 'Cast'}__rdu_narrow{k}"
        x, out = node.input[0], node.output[0]

        def const(value: np.ndarray, suffix: str, base: str = base) -> str:
            t = numpy_helper.from_array(np.asarray(value), f"{base}_{suffix}")
            graph.initializer.append(t)
            return t.name

        if kind in ("deq", "q"):
            nodes += _narrow_quant_nodes(kind, data, node, base, const)
            continue
        if kind == "float":
            thresholds, table, nan_v = data
            nodes += [
                helper.make_node("Cast", [x], [f"{base}_x"], to=T.FLOAT),
                helper.make_node("Unsqueeze", [f"{base}_x", const(np.array([-1], np.int64), "ax")], [f"{base}_xu"]),
                helper.make_node("GreaterOrEqual", [f"{base}_xu", const(thresholds, "thr")], [f"{base}_ge"]),
                helper.make_node("Cast", [f"{base}_ge"], [f"{base}_gei"], to=T.INT64),
                helper.make_node("ReduceSum", [f"{base}_gei", const(np.array([-1], np.int64), "rax")], [f"{base}_idx"], keepdims=0),
                helper.make_node("Gather", [const(table, "table"), f"{base}_idx"], [f"{base}_r"], axis=0),
                helper.make_node("IsNaN", [f"{base}_x"], [f"{base}_nan"]),
                helper.make_node("Where", [f"{base}_nan", const(np.array(nan_v, np.float32), "nanv"), f"{base}_r"], [out]),
            ]
            continue
        to, from_float = data
        bits = 4 if to in (T.INT4, T.UINT4) else 2
        signed = to in (T.INT4, T.INT2)
        m = 1 << bits
        out_t = wide[to]
        if from_float:
            # trunc toward zero, wrap modulo 2**bits; NaN and +-inf give 0
            nodes += [
                helper.make_node("Cast", [x], [f"{base}_x"], to=T.FLOAT),
                helper.make_node("IsNaN", [f"{base}_x"], [f"{base}_nan"]),
                helper.make_node("IsInf", [f"{base}_x"], [f"{base}_inf"]),
                helper.make_node("Or", [f"{base}_nan", f"{base}_inf"], [f"{base}_bad"]),
                helper.make_node("Where", [f"{base}_bad", const(np.array(0, np.float32), "zf"), f"{base}_x"], [f"{base}_xf"]),
                helper.make_node("Mod", [f"{base}_xf", const(np.array(m, np.float32), "mf")], [f"{base}_rf"], fmod=1),
                helper.make_node("Cast", [f"{base}_rf"], [f"{base}_ri"], to=T.INT64),
            ]
        else:
            nodes.append(helper.make_node("Cast", [x], [f"{base}_ri"], to=T.INT64))
        nodes.append(helper.make_node("Mod", [f"{base}_ri", const(np.array(m, np.int64), "m")], [f"{base}_u"], fmod=0))
        if signed:
            nodes += [
                helper.make_node("GreaterOrEqual", [f"{base}_u", const(np.array(m // 2, np.int64), "half")], [f"{base}_neg"]),
                helper.make_node("Sub", [f"{base}_u", const(np.array(m, np.int64), "m2")], [f"{base}_s"]),
                helper.make_node("Where", [f"{base}_neg", f"{base}_s", f"{base}_u"], [f"{base}_v"]),
                helper.make_node("Cast", [f"{base}_v"], [out], to=out_t),
            ]
        else:
            nodes.append(helper.make_node("Cast", [f"{base}_u"], [out], to=out_t))
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.value_info[:]
    return True
