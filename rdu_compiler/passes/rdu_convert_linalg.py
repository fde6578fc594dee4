"""rdu-convert-linalg: every linalg/tensor op of a torch-mlir module becomes rdu.

- `linalg.generic` and the named structured ops (`matmul`, `batch_matmul`, `fill`,
  `transpose`, convolutions and poolings) become `rdu.kernel` with an explicit iteration
  domain, indexing maps, iterator types and payload (constants from outside are cloned
  into the payload; other outside values become captures).
- `tm_tensor.scan` becomes a `scan` kernel.
- `tensor.expand_shape` / `collapse_shape` / `extract_slice` become `rdu.view`,
  `tensor.concat` becomes `rdu.concat`, `tensor.pad` becomes `rdu.pad`.
- Any other op is refused by name.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
from xdsl.context import Context
from xdsl.dialects import arith, cf, func, tensor
from xdsl.dialects.builtin import (
    AffineMapAttr,
    ArrayAttr,
    DenseArrayBase,
    DenseIntOrFPElementsAttr,
    FloatAttr,
    IndexType,
    IntegerAttr,
    IntegerType,
    ModuleOp,
    StringAttr,
    TensorType,
    i64,
)
from xdsl.dialects.linalg.abstract_ops import NamedOperation
from xdsl.dialects.linalg.attrs import IteratorType, IteratorTypeAttr
from xdsl.dialects.linalg.ops import GenericOp, TransposeOp
from xdsl.ir import Block, BlockArgument, Operation, Region, SSAValue
from xdsl.ir.affine import AffineConstantExpr, AffineDimExpr, AffineExpr, AffineMap
from xdsl.passes import ModulePass
from xdsl.rewriter import Rewriter

from rdu_compiler.dialects import rdu
from rdu_compiler.dtypes import numpy_dtype
from rdu_compiler.errors import CompileError
from rdu_compiler.interpreters.payload import evaluate_op
from rdu_compiler.ir import op_name
from rdu_compiler.kernel.payload import classify_kernel

KEEP = {"tensor.empty", "arith.constant", "func.return"}


def infer_domain(maps: list[AffineMap], shapes: list[tuple[int, ...]], where: str) -> list[int]:
    """Loop bounds of a structured op from its indexing maps and operand shapes.

    Each loop dim must appear alone as a result of some map (linalg's shape inference).

    Raises:
        CompileError: a loop dim no operand determines.
    """
    n = maps[0].num_dims
    sizes: list[int | None] = [None] * n
    for amap, shape in zip(maps, shapes, strict=True):
        for expr, extent in zip(amap.results, shape, strict=False):
            if isinstance(expr, AffineDimExpr) and sizes[expr.position] is None:
                sizes[expr.position] = extent
    if any(s is None for s in sizes):
        raise CompileError("rdu-convert-linalg", f"cannot infer the iteration domain of {where}")
    return [int(s) for s in sizes]  # type: ignore[arg-type]


def _iter_attrs(types: list[str]) -> list[IteratorTypeAttr]:
    return [IteratorTypeAttr(IteratorType(t)) for t in types]


@dataclass
class _Structured:
    """A structured op seen in the linalg.generic form."""

    inputs: list[SSAValue]
    inits: list[SSAValue]
    maps: list[AffineMap]
    iterators: list[str] | None
    region: Region


def _contraction_iterators(maps: list[AffineMap]) -> list[str]:
    out_dims = {e.position for e in maps[-1].results if isinstance(e, AffineDimExpr)}
    return ["parallel" if d in out_dims else "reduction" for d in range(maps[0].num_dims)]


def _default_matmul_maps(name: str, rank: int) -> list[AffineMap]:
    d = [AffineDimExpr(i) for i in range(rank + 2)]
    if name == "linalg.dot":
        return [AffineMap(1, 0, (d[0],)), AffineMap(1, 0, (d[0],)), AffineMap(1, 0, ())]
    if name == "linalg.matvec":
        return [AffineMap(2, 0, (d[0], d[1])), AffineMap(2, 0, (d[1],)), AffineMap(2, 0, (d[0],))]
    if name == "linalg.vecmat":
        return [AffineMap(2, 0, (d[0],)), AffineMap(2, 0, (d[0], d[1])), AffineMap(2, 0, (d[1],))]
    if name == "linalg.batch_matvec":
        return [AffineMap(3, 0, (d[0], d[1], d[2])), AffineMap(3, 0, (d[0], d[2])), AffineMap(3, 0, (d[0], d[1]))]
    if name == "linalg.batch_vecmat":
        return [AffineMap(3, 0, (d[0], d[1])), AffineMap(3, 0, (d[0], d[1], d[2])), AffineMap(3, 0, (d[0], d[2]))]
    if name == "linalg.matmul":
        return [AffineMap(3, 0, (d[0], d[2])), AffineMap(3, 0, (d[2], d[1])), AffineMap(3, 0, (d[0], d[1]))]
    return [
        AffineMap(4, 0, (d[0], d[1], d[3])),
        AffineMap(4, 0, (d[0], d[3], d[2])),
        AffineMap(4, 0, (d[0], d[1], d[2])),
    ]


def _segments(op: Operation) -> tuple[list[SSAValue], list[SSAValue]]:
    seg = op.properties.get("operandSegmentSizes")
    operands = list(op.operands)
    if isinstance(seg, DenseArrayBase):
        n_in = int(seg.get_values()[0])
        return operands[:n_in], operands[n_in:]
    return operands[:-1], operands[-1:]


def _maps_prop(op: Operation) -> list[AffineMap] | None:
    attr = op.properties.get("indexing_maps")
    if not isinstance(attr, ArrayAttr):
        return None
    return [m.data for m in attr.data if isinstance(m, AffineMapAttr)]


def _as_structured(op: Operation) -> _Structured | None:
    """The op as inputs/inits/maps/payload, or None if it is not a structured op we know."""
    name = op_name(op)
    if name == "linalg.generic":
        assert isinstance(op, GenericOp)
        maps = [m.data for m in op.indexing_maps.data]
        its = [it.data.value for it in op.iterator_types.data]
        return _Structured(list(op.inputs), list(op.outputs), maps, its, op.regions[0])
    if name in ("linalg.matmul", "linalg.batch_matmul", "linalg.dot", "linalg.matvec", "linalg.vecmat", "linalg.batch_matvec", "linalg.batch_vecmat"):
        ins, outs = _segments(op)
        rank = len(rdu.shape_of(outs[0].type))
        maps = _maps_prop(op) or _default_matmul_maps(name, rank)
        return _Structured(ins, outs, maps, _contraction_iterators(maps), op.regions[0])
    if name == "linalg.fill":
        ins, outs = _segments(op)
        rank = len(rdu.shape_of(outs[0].type))
        maps = [AffineMap(rank, 0, ()), AffineMap.identity(rank)]
        return _Structured(ins, outs, maps, ["parallel"] * rank, op.regions[0])
    if name == "linalg.transpose":
        assert isinstance(op, TransposeOp)
        perm = list(op.permutation.get_values())
        rank = len(perm)
        in_map = AffineMap(rank, 0, tuple(AffineDimExpr(perm.index(j)) for j in range(rank)))
        return _Structured(list(op.inputs), list(op.outputs), [in_map, AffineMap.identity(rank)], ["parallel"] * rank, op.regions[0])
    if name == "linalg.broadcast":
        ins, outs = _segments(op)
        added = op.properties["dimensions"]
        assert isinstance(added, DenseArrayBase)
        rank = len(rdu.shape_of(outs[0].type))
        kept = [d for d in range(rank) if d not in set(added.get_values())]
        in_map = AffineMap(rank, 0, tuple(AffineDimExpr(d) for d in kept))
        return _Structured(ins, outs, [in_map, AffineMap.identity(rank)], ["parallel"] * rank, op.regions[0])
    if name.startswith(("linalg.conv_", "linalg.pooling_", "linalg.depthwise_conv")):
        maps = _maps_prop(op)
        if maps is None:
            memo = op.attributes.get("linalg.memoized_indexing_maps") or op.properties.get("linalg.memoized_indexing_maps")
            if isinstance(memo, ArrayAttr):
                maps = [m.data for m in memo.data if isinstance(m, AffineMapAttr)]
        if maps is None and isinstance(op, NamedOperation):
            maps = [m.data for m in op.get_indexing_maps().data] if hasattr(op, "get_indexing_maps") else None
        if maps is None:
            conv = _conv_maps(op)
            if conv is not None:
                ins, outs = _segments(op)
                return _Structured(ins, outs, conv[0], conv[1], op.regions[0])
        if maps is None:
            return None
        ins, outs = _segments(op)
        its = None
        if hasattr(op, "get_iterator_types"):
            its = [it.data.value for it in op.get_iterator_types().data]
        return _Structured(ins, outs, maps, its or _contraction_iterators(maps), op.regions[0])
    memo = op.attributes.get("linalg.memoized_indexing_maps") or op.properties.get("linalg.memoized_indexing_maps")
    if name.startswith("linalg.") and isinstance(memo, ArrayAttr) and op.regions:
        # Another named structured op (quantized_matmul, ...): its maps are memoized.
        maps = [m.data for m in memo.data if isinstance(m, AffineMapAttr)]
        ins, outs = _segments(op)
        if len(maps) == len(ins) + len(outs):
            return _Structured(ins, outs, maps, _contraction_iterators(maps), op.regions[0])
    return None


def _conv_maps(op: Operation) -> tuple[list[AffineMap], list[str]] | None:
    """Indexing maps and iterator types of a named convolution or pooling op, from its name
    (`linalg.conv_2d_nchw_fchw`, `linalg.depthwise_conv_2d_nchw_chw`, `linalg.pooling_ndhwc_sum`,
    ...), `strides` and `dilations`; None for a layout this does not know."""
    m = re.fullmatch(r"linalg\.(conv|depthwise_conv|pooling)_(?:\dd_)?([a-z]+)_([a-z]+)", op_name(op))
    if m is None:
        return None
    kind, in_layout, second = m.groups()
    if kind == "pooling":
        if second not in ("sum", "max", "min", "maxu", "minu"):
            return None
        filter_layout = "".join(c for c in in_layout if c in "dhw")
    else:
        filter_layout = second
    spatial = [c for c in in_layout if c in "dhw"]
    if set(in_layout) - set("ncdhw") or sorted(in_layout) != sorted(set(in_layout)) or "n" not in in_layout or "c" not in in_layout:
        return None
    expected_filter = set(spatial) | ({"f", "c"} if kind == "conv" else {"c"} if kind == "depthwise_conv" else set())
    if set(filter_layout) != expected_filter or len(filter_layout) != len(expected_filter):
        return None
    strides = _int_list(op, "strides", len(spatial))
    dilations = _int_list(op, "dilations", len(spatial))
    if strides is None or dilations is None:
        return None
    out_layout = in_layout.replace("c", "f") if kind == "conv" else in_layout
    dims: dict[str, int] = {}
    for c in out_layout:  # parallel loops, in output order
        dims["o" + c if c in "dhw" else c] = len(dims)
    n_par = len(dims)
    if kind == "conv":
        dims["c"] = len(dims)
    for c in spatial:
        dims["k" + c] = len(dims)
    rank = len(dims)

    def d(key: str) -> AffineExpr:
        return AffineDimExpr(dims[key])

    in_exprs = []
    for c in in_layout:
        if c in "dhw":
            i = spatial.index(c)
            in_exprs.append(d("o" + c) * strides[i] + d("k" + c) * dilations[i])
        else:
            in_exprs.append(d(c))
    filt = [d("k" + c) if c in "dhw" else d(c) for c in filter_layout]
    out = [d("o" + c) if c in "dhw" else d(c) for c in out_layout]
    maps = [AffineMap(rank, 0, tuple(in_exprs)), AffineMap(rank, 0, tuple(filt)), AffineMap(rank, 0, tuple(out))]
    return maps, ["parallel"] * n_par + ["reduction"] * (rank - n_par)


def _int_list(op: Operation, name: str, n: int) -> list[int] | None:
    attr = op.properties.get(name) or op.attributes.get(name)
    if attr is None:
        return [1] * n
    if isinstance(attr, DenseIntOrFPElementsAttr):
        values = [int(v) for v in attr.get_values()]
    elif isinstance(attr, DenseArrayBase):
        values = [int(v) for v in attr.get_values()]
    else:
        return None
    if len(values) == 1 and n > 1:
        values = values * n
    return values if len(values) == n else None


def _is_top_level_scalar_op(op: Operation) -> bool:
    """A pure scalar op at function level (`tensor.extract`, arith/math on scalars)."""
    name = op_name(op)
    if op.regions or len(op.results) != 1 or isinstance(op.results[0].type, TensorType):
        return False
    if name == "tensor.extract":
        return True
    return name.startswith(("arith.", "math.")) and not isinstance(op, arith.ConstantOp)


def _constant_indices(op: Operation) -> list[int] | None:
    """The indices of a `tensor.extract` when they are all `arith.constant`s."""
    out = []
    for v in op.operands[1:]:
        owner = v.owner
        if not isinstance(owner, arith.ConstantOp) or not isinstance(owner.value, IntegerAttr):
            return None
        out.append(int(owner.value.value.data))
    return out


def _build_payload(
    region: Region, n_inputs: int, n_mapped: int, rank: int, scalar_inputs: dict[int, SSAValue] | None = None
) -> tuple[Region, list[SSAValue], list[tuple[SSAValue, AffineMap]]]:
    """Clone a linalg payload into an rdu payload.

    Values from outside the payload: scalar constants are cloned in; a scalar read from a
    tensor at constant indices (`tensor.extract %t[c...]`, a 0-d tensor's value) becomes an
    extra input with a constant indexing map; scalar arith/math computed at function level
    from those is cloned in; anything else is captured whole. Returns the region, the
    captures and the extra inputs (value, map), which follow the original inputs.
    `scalar_inputs` (input index -> value): scalar inputs computed at function level; they
    are computed in the payload instead and their block arguments removed.
    """
    new_region = region.clone()
    block = new_region.block
    anchor = block.first_op
    inside: set[SSAValue] = set(block.args)
    for inner in block.walk():
        inside.update(inner.results)
    captures: list[SSAValue] = []
    extra: list[tuple[SSAValue, AffineMap]] = []
    mapping: dict[SSAValue, SSAValue] = {}

    def insert(new_op: Operation) -> None:
        if anchor is None:
            block.add_op(new_op)
        else:
            block.insert_op_before(new_op, anchor)

    def materialize(value: SSAValue) -> SSAValue:
        if value in mapping:
            return mapping[value]
        owner = value.owner
        result: SSAValue
        if isinstance(owner, arith.ConstantOp) and not isinstance(value.type, TensorType):
            const = owner.clone()
            insert(const)
            result = const.results[0]
        elif isinstance(owner, Operation) and op_name(owner) == "tensor.extract" and _constant_indices(owner) is not None:
            indices = _constant_indices(owner) or []
            source = owner.operands[0]
            amap = AffineMap(rank, 0, tuple(AffineConstantExpr(i) for i in indices))
            key = next((k for k, (v, mp) in enumerate(extra) if v is source and mp == amap), None)
            if key is None:
                key = len(extra)
                extra.append((source, amap))
                block.insert_arg(value.type, n_inputs + key)
            result = block.args[n_inputs + key]
        elif isinstance(owner, Operation) and _is_top_level_scalar_op(owner) and op_name(owner) != "tensor.extract":
            new_operands = [materialize(v) for v in owner.operands]
            clone = owner.clone()
            for i, v in enumerate(new_operands):
                clone.operands[i] = v
            insert(clone)
            result = clone.results[0]
        else:
            if value not in captures:
                captures.append(value)
                block.insert_arg(value.type, len(block.args))
            result = block.args[len(block.args) - len(captures) + captures.index(value)]
        mapping[value] = result
        return result

    for inner in list(block.walk()):
        for i, operand in enumerate(inner.operands):
            if operand in inside or operand in mapping.values():
                continue
            inner.operands[i] = materialize(operand)
    replaced = [(block.args[i], materialize(v)) for i, v in sorted((scalar_inputs or {}).items())]
    for arg, value in reversed(replaced):
        arg.replace_all_uses_with(value)
        block.erase_arg(arg)
    for inner in list(block.walk()):
        name = op_name(inner)
        if name == "linalg.index":
            dim = inner.properties["dim"]
            assert isinstance(dim, IntegerAttr)
            Rewriter.replace_op(inner, rdu.IndexOp(dim.value.data))
        elif name in ("linalg.yield", "tm_tensor.yield"):
            Rewriter.replace_op(inner, rdu.YieldOp(*inner.operands))
    return new_region, captures, extra


def _kernel_from(op: Operation, st: _Structured, index: int) -> list[Operation]:
    """The rdu ops replacing a structured op: its kernel, and for a kernel over an empty
    domain (every operand 0-d) views that give it a one-element domain, so that each
    operand and its result have a buffer like in every other kernel."""
    where = f"'{op_name(op)}' (op #{index})"
    shapes = [rdu.shape_of(v.type) for v in (*st.inputs, *st.inits)]
    domain = infer_domain(st.maps, shapes, where)
    iterators = st.iterators or ["parallel"] * len(domain)
    n_in = len(st.inputs)
    scalar_inputs = {
        i: v for i, v in enumerate(st.inputs)
        if not isinstance(v.type, TensorType) and isinstance(v.owner, Operation) and _is_top_level_scalar_op(v.owner)
    }
    payload, captures, extra = _build_payload(st.region, n_in, n_in + len(st.inits), len(domain), scalar_inputs)
    kept = [i for i in range(n_in) if i not in scalar_inputs]
    inputs = [*(st.inputs[i] for i in kept), *(v for v, _ in extra)]
    maps = [*(st.maps[i] for i in kept), *(m for _, m in extra), *st.maps[n_in:]]
    result_types = [r.type for r in op.results]
    before: list[Operation] = []
    after: list[Operation] = []
    if not domain:
        domain, iterators = [1], ["parallel"]
        d0 = AffineMap(1, 0, (AffineDimExpr(0),))

        def as_vector(v: SSAValue) -> SSAValue:
            if not isinstance(v.type, TensorType):
                return v
            if isinstance(v.owner, tensor.EmptyOp):
                empty = tensor.EmptyOp([], TensorType(v.type.element_type, [1]))
                before.append(empty)
                return empty.results[0]
            view = rdu.ViewOp(operands=[v], result_types=[TensorType(v.type.element_type, [1])], properties={"mode": StringAttr("reshape")})
            before.append(view)
            return view.results[0]

        operands, new_maps = [], []
        for v, mp in zip([*inputs, *st.inits], maps, strict=True):
            if isinstance(v.type, TensorType) and not rdu.shape_of(v.type):  # 0-d: a 1-vector
                operands.append(as_vector(v))
                new_maps.append(d0)
            else:  # scalars, and tensors read at constant indices
                operands.append(v)
                new_maps.append(AffineMap(1, 0, tuple(mp.results)))
        maps = new_maps
        inputs, inits = operands[: len(inputs)], operands[len(inputs):]
        result_types = [TensorType(t.element_type, [1]) if isinstance(t, TensorType) else t for t in result_types]
    else:
        inits = list(st.inits)
    kind = classify_kernel(payload.block, len(inputs), iterators, maps)
    kernel = rdu.KernelOp(
        inputs,
        inits,
        captures,
        result_types,
        kind,
        domain,
        [AffineMapAttr(m) for m in maps],
        _iter_attrs(iterators),
        payload,
        {"sym_name": StringAttr(f"k{index}_{kind.value}")},
    )
    for r, t in zip(kernel.results, [r.type for r in op.results], strict=True):
        if r.type != t:
            after.append(rdu.ViewOp(operands=[r], result_types=[t], properties={"mode": StringAttr("reshape")}))
    return [*before, kernel, *after]


def _scan_kernel(op: Operation, index: int) -> rdu.KernelOp:
    inp, out, acc = op.operands
    dim_attr = op.properties["dimension"]
    incl = op.properties.get("inclusive")
    assert isinstance(dim_attr, IntegerAttr)
    dim = dim_attr.value.data
    shape = rdu.shape_of(inp.type)
    rank = len(shape)
    acc_map = AffineMap(rank, 0, tuple(AffineDimExpr(d) for d in range(rank) if d != dim))
    elt = rdu.element_type_of(inp.type)
    block = Block(arg_types=[elt, elt, elt])
    combiner = op.regions[0].block
    mapping = {combiner.args[0]: block.args[2], combiner.args[1]: block.args[0]}
    for inner in combiner.ops:
        if op_name(inner) == "tm_tensor.yield":
            value = mapping[inner.operands[0]]
            block.add_op(rdu.YieldOp(value, value))
            break
        block.add_op(inner.clone(value_mapper=mapping))  # type: ignore[arg-type]
        for old, new in zip(inner.results, block.last_op.results, strict=True):  # type: ignore[union-attr]
            mapping[old] = new
    inclusive = 1 if isinstance(incl, IntegerAttr) and incl.value.data else 0
    return rdu.KernelOp(
        [inp],
        [out, acc],
        [],
        [r.type for r in op.results],
        rdu.Pattern.SCAN,
        shape,
        [AffineMapAttr(AffineMap.identity(rank)), AffineMapAttr(AffineMap.identity(rank)), AffineMapAttr(acc_map)],
        _iter_attrs(["parallel"] * rank),
        Region(block),
        {
            "sym_name": StringAttr(f"k{index}_scan"),
            "scan_dim": IntegerAttr(dim, i64),
            "scan_inclusive": IntegerAttr(inclusive, i64),
        },
    )


def _scatter_kernel(op: Operation, index: int) -> rdu.KernelOp:
    """`tm_tensor.scatter` with one full index per update (`updates: N`, `indices: N x K`,
    K = the destination's rank, as torch-mlir emits for ScatterElements / ScatterND /
    index_put) as a reduction over the updates for every destination point:
    `acc = select(index(i) == point, combine(update(i), acc), acc)`, in update order, so
    the last write wins for a plain scatter. The destination is the initial value."""
    updates, indices, original = op.operands
    dmap = op.properties.get("dimension_map")
    dims = list(dmap.get_values()) if isinstance(dmap, DenseArrayBase) else None
    ushape, ishape, dshape = rdu.shape_of(updates.type), rdu.shape_of(indices.type), rdu.shape_of(original.type)
    if dims is None or len(ushape) != 1 or len(ishape) != 2 or ishape[1] != len(dshape) or sorted(dims) != list(range(len(dshape))):
        raise CompileError(
            "rdu-convert-linalg",
            f"tm_tensor.scatter (op #{index}) with update slices (updates {updates.type}, indices "
            f"{indices.type}) is not supported; only one full index per scalar update is",
        )
    n, r = ushape[0], len(dshape)
    elt = rdu.element_type_of(original.type)
    ielt = rdu.element_type_of(indices.type)
    block = Block(arg_types=[elt, *([ielt] * r), elt])
    u, *cols, acc = block.args
    ops: list[Operation] = []
    match: SSAValue | None = None
    for c, d in enumerate(dims):
        pos = rdu.IndexOp(d)
        cast = arith.IndexCastOp(cols[c], IndexType())
        eq = arith.CmpiOp(cast.results[0], pos.results[0], "eq")
        ops += [pos, cast, eq]
        match = eq.results[0] if match is None else _and(ops, match, eq.results[0])
    # The combiner region: ^bb0(%update, %original): yield f(update, original).
    region = op.regions[0].block
    mapping: dict[SSAValue, SSAValue] = {region.args[0]: u, region.args[1]: acc}
    combined: SSAValue | None = None
    for inner in region.ops:
        if op_name(inner) == "tm_tensor.yield":
            combined = mapping[inner.operands[0]]
            break
        clone = inner.clone(value_mapper=mapping)  # type: ignore[arg-type]
        ops.append(clone)
        for old, new in zip(inner.results, clone.results, strict=True):
            mapping[old] = new
    assert match is not None and combined is not None
    if combined is u:
        pick = arith.SelectOp(match, u, acc)  # last write wins
        ops += [pick, rdu.YieldOp(pick.results[0])]
    else:
        comb_op = combined.owner
        name = op_name(comb_op) if isinstance(comb_op, Operation) else ""
        identity = {"arith.addf": 0.0, "arith.addi": 0, "arith.mulf": 1.0, "arith.muli": 1,
                    "arith.maximumf": float("-inf"), "arith.minimumf": float("inf")}.get(name)
        if identity is None or set(comb_op.operands) != {u, acc}:  # type: ignore[union-attr]
            raise CompileError("rdu-convert-linalg", f"tm_tensor.scatter (op #{index}) with combiner '{name or 'unknown'}' is not supported")
        for o in list(ops):
            if o is comb_op:
                ops.remove(o)
        ident = arith.ConstantOp(FloatAttr(identity, elt) if isinstance(identity, float) else IntegerAttr(identity, elt))  # type: ignore[arg-type]
        masked = arith.SelectOp(match, u, ident.results[0])
        total = type(comb_op)(acc, masked.results[0])  # type: ignore[call-arg]
        ops += [ident, masked, total, rdu.YieldOp(total.results[0])]
    for o in ops:
        block.add_op(o)
    rank = r + 1  # destination dims, then the updates
    par = [AffineDimExpr(d) for d in range(r)]
    i = AffineDimExpr(r)
    maps = [AffineMap(rank, 0, (i,))] + [AffineMap(rank, 0, (i, AffineConstantExpr(c))) for c in range(r)] + [AffineMap(rank, 0, tuple(par))]
    return rdu.KernelOp(
        [updates, *([indices] * r)], [original], [], [op.results[0].type], rdu.Pattern.REDUCE,
        [*dshape, n], [AffineMapAttr(m) for m in maps], _iter_attrs(["parallel"] * r + ["reduction"]),
        Region(block), {"sym_name": StringAttr(f"k{index}_reduce")},
    )


def _sort_kernels(op: Operation, index: int) -> list[Operation]:
    """`tm_tensor.sort` along `dimension` (n elements, comparator `c(lhs, rhs)`: lhs goes
    first) as two kernels: the rank of every element, `#{k : k goes first} + #{k < i : tie}`
    (a count reduction over k, so equal keys keep their order: a stable sort), then each
    operand permuted by a last-match reduction (`out[j] = x[i] where rank[i] == j`)."""
    operands = list(op.operands)
    dim_attr = op.properties.get("dimension")
    assert isinstance(dim_attr, IntegerAttr)
    shape = rdu.shape_of(operands[0].type)
    r, d = len(shape), dim_attr.value.data
    n = shape[d]
    comparator = op.regions[0].block
    i64 = IntegerType(64)
    ops: list[Operation] = []

    def build_rank() -> rdu.KernelOp:
        elts = [rdu.element_type_of(v.type) for v in operands]
        block = Block(arg_types=[t for e in elts for t in (e, e)] + [i64])
        args = list(block.args)
        self_vals, other_vals, acc = args[0:-1:2], args[1:-1:2], args[-1]
        body: list[Operation] = []

        def compare(lhs: list[SSAValue], rhs: list[SSAValue]) -> SSAValue:
            mapping: dict[SSAValue, SSAValue] = {}
            for m in range(len(operands)):
                mapping[comparator.args[2 * m]] = lhs[m]
                mapping[comparator.args[2 * m + 1]] = rhs[m]
            for inner in comparator.ops:
                if op_name(inner) == "tm_tensor.yield":
                    return mapping[inner.operands[0]]
                clone = inner.clone(value_mapper=mapping)  # type: ignore[arg-type]
                body.append(clone)
                for old, new in zip(inner.results, clone.results, strict=True):
                    mapping[old] = new
            raise CompileError("rdu-convert-linalg", f"tm_tensor.sort (op #{index}) comparator yields nothing")

        k_first = compare(other_vals, self_vals)
        i_first = compare(self_vals, other_vals)
        true = arith.ConstantOp(IntegerAttr(1, IntegerType(1)))
        not_i = arith.XOrIOp(i_first, true.results[0])
        not_k = arith.XOrIOp(k_first, true.results[0])
        k_before = arith.AndIOp(k_first, not_i.results[0])
        i_before = arith.AndIOp(i_first, not_k.results[0])
        either = arith.OrIOp(k_before.results[0], i_before.results[0])
        tie = arith.XOrIOp(either.results[0], true.results[0])
        pos_i, pos_k = rdu.IndexOp(d), rdu.IndexOp(r)
        earlier = arith.CmpiOp(pos_k.results[0], pos_i.results[0], "slt")
        tie_earlier = arith.AndIOp(tie.results[0], earlier.results[0])
        counts = arith.OrIOp(k_before.results[0], tie_earlier.results[0])
        one = arith.ExtUIOp(counts.results[0], i64)
        total = arith.AddiOp(acc, one.results[0])
        body += [true, not_i, not_k, k_before, i_before, either, tie, pos_i, pos_k, earlier, tie_earlier, counts, one, total, rdu.YieldOp(total.results[0])]
        for o in body:
            block.add_op(o)
        dims = [AffineDimExpr(x) for x in range(r + 1)]
        at_i = AffineMap(r + 1, 0, tuple(dims[:r]))
        at_k = AffineMap(r + 1, 0, tuple(dims[x] if x != d else dims[r] for x in range(r)))
        zeros = arith.ConstantOp(DenseIntOrFPElementsAttr.from_list(TensorType(i64, list(shape)), [0]))
        ops.append(zeros)
        ins = [v for v in operands for _ in (0, 1)]
        maps = [m for _ in operands for m in (at_i, at_k)] + [at_i]
        return rdu.KernelOp(
            ins, [zeros.results[0]], [], [TensorType(i64, list(shape))], rdu.Pattern.REDUCE, [*shape, n],
            [AffineMapAttr(m) for m in maps], _iter_attrs(["parallel"] * r + ["reduction"]), Region(block),
            {"sym_name": StringAttr(f"k{index}_sort_rank")},
        )

    rank = build_rank()
    ops.append(rank)
    # Permute: out_m[j] = operand_m[i] for the i whose rank is j (the last such i).
    # The number of elements ranked j is counted too: a comparator that is no strict weak
    # order (NaN keys) would leave holes, which the check kernel below refuses at run time.
    elts = [rdu.element_type_of(v.type) for v in operands]
    block = Block(arg_types=[i64, *elts, *elts, i64])
    rk, vals, accs, count = block.args[0], block.args[1 : 1 + len(operands)], block.args[1 + len(operands) : -1], block.args[-1]
    pos = rdu.IndexOp(d)
    cast = arith.IndexCastOp(pos.results[0], i64)
    match = arith.CmpiOp(rk, cast.results[0], "eq")
    picks = [arith.SelectOp(match.results[0], v, a) for v, a in zip(vals, accs, strict=True)]
    one = arith.ExtUIOp(match.results[0], i64)
    counted = arith.AddiOp(count, one.results[0])
    for o in [pos, cast, match, *picks, one, counted, rdu.YieldOp(*[p.results[0] for p in picks], counted.results[0])]:
        block.add_op(o)
    dims = [AffineDimExpr(x) for x in range(r + 1)]
    at_j = AffineMap(r + 1, 0, tuple(dims[:r]))
    at_i = AffineMap(r + 1, 0, tuple(dims[x] if x != d else dims[r] for x in range(r)))
    zeros = ops[0]
    permute = rdu.KernelOp(
        [rank.results[0], *operands], [*operands, zeros.results[0]], [], [*(v.type for v in operands), zeros.results[0].type],
        rdu.Pattern.REDUCE, [*shape, n],
        [AffineMapAttr(m) for m in [at_i, *([at_i] * len(operands)), *([at_j] * (len(operands) + 1))]],
        _iter_attrs(["parallel"] * r + ["reduction"]), Region(block), {"sym_name": StringAttr(f"k{index}_sort_permute")},
    )
    ops.append(permute)
    check = Block(arg_types=[i64, i64])
    c1 = arith.ConstantOp(IntegerAttr(1, i64))
    ok = arith.CmpiOp(check.args[0], c1.results[0], "eq")
    msg = "sort keys are not totally ordered (NaN?): the sort is undefined"
    for o in [c1, ok, cf.AssertOp(ok.results[0], msg), rdu.YieldOp(check.args[0])]:
        check.add_op(o)
    ident = AffineMapAttr(AffineMap.identity(r))
    checked = rdu.KernelOp(
        [permute.results[-1]], [zeros.results[0]], [], [zeros.results[0].type], rdu.Pattern.MAP, list(shape),
        [ident, ident], _iter_attrs(["parallel"] * r), Region(check), {"sym_name": StringAttr(f"k{index}_sort_check")},
    )
    ops.append(checked)
    return ops


def _dense(values: list[int]) -> DenseArrayBase:
    return DenseArrayBase.from_list(i64, values)


def _layout_op(op: Operation) -> Operation | None:
    name = op_name(op)
    if name in ("tensor.expand_shape", "tensor.collapse_shape"):
        return rdu.ViewOp(
            operands=[op.operands[0]], result_types=[op.results[0].type], properties={"mode": StringAttr("reshape")}
        )
    if name == "tensor.extract_slice":
        assert isinstance(op, tensor.ExtractSliceOp)
        if op.offsets or op.sizes or op.strides:
            raise CompileError("rdu-convert-linalg", "tensor.extract_slice with dynamic offsets/sizes is not supported")
        return rdu.ViewOp(
            operands=[op.source],
            result_types=[op.result.type],
            properties={
                "mode": StringAttr("slice"),
                "offsets": _dense(list(op.static_offsets.get_values())),
                "sizes": _dense(list(op.static_sizes.get_values())),
                "strides": _dense(list(op.static_strides.get_values())),
            },
        )
    if name == "tensor.concat":
        dim = op.properties["dim"]
        assert isinstance(dim, IntegerAttr)
        return rdu.ConcatOp(
            operands=[list(op.operands)], result_types=[op.results[0].type], properties={"dim": IntegerAttr(dim.value.data, i64)}
        )
    if name == "tensor.pad":
        return _pad(op)
    return None


def _insert_slice(op: Operation, index: int) -> list[Operation]:
    """`tensor.insert_slice` with static offsets/sizes/strides.

    Into a constant fill with unit strides it is padding (`rdu.pad`); otherwise a map kernel
    over the destination that reads the source (a capture) where the slice covers the point.
    """
    assert isinstance(op, tensor.InsertSliceOp)
    if op.offsets or op.sizes or op.strides:
        raise CompileError("rdu-convert-linalg", "tensor.insert_slice with dynamic offsets/sizes is not supported")
    src, dest = op.source, op.dest
    offsets = list(op.static_offsets.get_values())
    sizes = list(op.static_sizes.get_values())
    strides = list(op.static_strides.get_values())
    dshape = rdu.shape_of(dest.type)
    sshape = rdu.shape_of(src.type)
    fill = dest.owner
    if (
        all(st == 1 for st in strides)
        and list(sshape) == sizes
        and isinstance(fill, rdu.KernelOp)
        and fill.kind.data == rdu.Pattern.FILL
        and len(fill.inputs) == 1
        and isinstance(fill.inputs[0].owner, arith.ConstantOp)
        and not isinstance(fill.inputs[0].type, TensorType)
    ):
        high = [d - o - n for d, o, n in zip(dshape, offsets, sizes, strict=True)]
        return [rdu.PadOp(operands=[src, fill.inputs[0]], result_types=[op.result.type], properties={"low": _dense(offsets), "high": _dense(high)})]
    # General case: out[i] = covered(i) ? src[(i - off) / stride] : dest[i].
    rank = len(dshape)
    kept = [d for d, n in enumerate(sizes) if n != 1 or len(sshape) == rank]
    if len(sshape) != rank and [sizes[d] for d in kept] != list(sshape):
        raise CompileError("rdu-convert-linalg", "tensor.insert_slice with a rank-reducing source is not supported")
    elt = rdu.element_type_of(dest.type)
    block = Block(arg_types=[elt, elt, src.type])
    val, _, table = block.args
    idx_t = IndexType()
    ops: list[Operation] = []

    def const(v: int) -> SSAValue:
        c = arith.ConstantOp(IntegerAttr(v, idx_t))
        ops.append(c)
        return c.results[0]

    covered: SSAValue | None = None
    gather_idx: list[SSAValue] = []
    for d in range(rank):
        i = rdu.IndexOp(d)
        ops.append(i)
        rel = arith.SubiOp(i.results[0], const(offsets[d]))
        q = arith.FloorDivSIOp(rel.results[0], const(strides[d]))
        back = arith.MuliOp(q.results[0], const(strides[d]))
        exact = arith.CmpiOp(back.results[0], rel.results[0], "eq")
        lo = arith.CmpiOp(q.results[0], const(0), "sge")
        hi = arith.CmpiOp(q.results[0], const(sizes[d]), "slt")
        ops += [rel, q, back, exact, lo, hi]
        ok = _and(ops, _and(ops, exact.results[0], lo.results[0]), hi.results[0])
        covered = ok if covered is None else _and(ops, covered, ok)
        low = arith.MaxSIOp(q.results[0], const(0))
        ops.append(low)
        clamped = arith.MinSIOp(low.results[0], const(sizes[d] - 1))
        ops.append(clamped)
        if d in kept:
            gather_idx.append(clamped.results[0])
    read = tensor.ExtractOp(table, gather_idx, elt)
    assert covered is not None
    pick = arith.SelectOp(covered, read.results[0], val)
    ops += [read, pick, rdu.YieldOp(pick.results[0])]
    for o in ops:
        block.add_op(o)
    empty = tensor.EmptyOp([], dest.type)
    ident = AffineMapAttr(AffineMap.identity(rank))
    kernel = rdu.KernelOp(
        [dest], [empty.results[0]], [src], [dest.type], rdu.Pattern.GATHER, list(dshape),
        [ident, ident], _iter_attrs(["parallel"] * rank), Region(block),
        {"sym_name": StringAttr(f"k{index}_gather")},
    )
    return [empty, kernel]


def _and(ops: list[Operation], a: SSAValue, b: SSAValue) -> SSAValue:
    both = arith.AndIOp(a, b)
    ops.append(both)
    return both.results[0]


def _pad(op: Operation) -> Operation:
    assert isinstance(op, tensor.PadOp)
    if op.low or op.high:
        raise CompileError("rdu-convert-linalg", "tensor.pad with dynamic padding is not supported")
    yielded = op.region.block.last_op
    assert yielded is not None
    value = yielded.operands[0]
    if value.owner is op.region.block or (isinstance(value.owner, Operation) and value.owner.parent_block() is op.region.block):
        raise CompileError("rdu-convert-linalg", "tensor.pad whose padding value depends on the index is not supported")
    return rdu.PadOp(
        operands=[op.source, value],
        result_types=[op.result.type],
        properties={"low": _dense(list(op.static_low.get_values())), "high": _dense(list(op.static_high.get_values()))},
    )


_SUPPORTED = (
    "supported: linalg.generic/matmul/batch_matmul/dot/matvec/fill/transpose/broadcast/conv/pooling, "
    "tm_tensor.scan/scatter/sort, tensor.expand_shape/collapse_shape/extract_slice/insert_slice/concat/pad"
)

#: Ops without an rdu lowering, and what to write instead (for the refusal message).
_ALTERNATIVES = {
    "scf.for": "a loop unrolled at export time (static trip count)",
    "scf.while": "a loop unrolled at export time (static trip count)",
    "ml_program.global_load": "random values passed as an input (the program keeps no random-number state)",
}


#: The most elements one tensor of a program may have (2**32): a bound on what a small
#: input file can ask for (a 189-byte ONNX file can ask for a 10**12-element constant).
MAX_TENSOR_ELEMENTS = 1 << 32


def _check_static_nonempty(fn: func.FuncOp) -> None:
    """Refuse tensors with a dynamic dimension, a zero-size one (nothing to compute, no
    tile to place), or more than :data:`MAX_TENSOR_ELEMENTS` elements."""
    values = list(fn.body.block.args) + [r for op in fn.body.block.ops for r in op.results]
    for v in values:
        if isinstance(v.type, TensorType) and any(d < 0 for d in v.type.get_shape()):
            what = f"argument #{v.index}" if isinstance(v, BlockArgument) else f"the result of '{op_name(v.owner)}'"  # type: ignore[arg-type]
            raise CompileError(
                "rdu-convert-linalg",
                f"{what} in @{fn.sym_name.data} has a dynamic shape ({v.type}): its size depends on "
                "the input values (NonZero, NonMaxSuppression, data-dependent crops), and a dataflow "
                "program needs static shapes. Compute that part outside the model or give it a "
                "fixed output size.",
            )
        if isinstance(v.type, TensorType) and math.prod(rdu.shape_of(v.type)) > MAX_TENSOR_ELEMENTS:
            if isinstance(v, BlockArgument):
                what = f"argument #{v.index} of @{fn.sym_name.data}"
            else:  # 'op ... (op #i of @f)': the driver names the model line / ONNX node
                index = list(fn.body.block.ops).index(v.owner)  # type: ignore[arg-type]
                what = f"the result of op '{op_name(v.owner)}' (op #{index} of @{fn.sym_name.data})"  # type: ignore[arg-type]
            raise CompileError(
                "rdu-convert-linalg",
                f"{what} is a tensor of {math.prod(rdu.shape_of(v.type)):,} "
                f"elements ({v.type}), more than the {MAX_TENSOR_ELEMENTS:,} (2**32) one tensor may "
                "have (the emulator holds every tensor in host memory). Check the shapes the "
                "model asks for (a ConstantOfShape / Expand / zeros(...) with a wrong size), or "
                "split the tensor.",
            )
        if isinstance(v.type, TensorType) and 0 in rdu.shape_of(v.type) and (v.uses or not isinstance(v, BlockArgument)):
            what = f"argument #{v.index}" if isinstance(v, BlockArgument) else f"the result of '{op_name(v.owner)}'"  # type: ignore[arg-type]
            raise CompileError(
                "rdu-convert-linalg",
                f"{what} in @{fn.sym_name.data} is an empty tensor ({v.type}); tensors with a "
                "zero-size dimension are not supported. Remove the empty computation from the model.",
            )


def convert_function(fn: func.FuncOp) -> None:
    """Convert every op in `fn`'s body; refuse the first op there is no rule for."""
    _check_static_nonempty(fn)
    for inner in fn.walk():
        # Newer MLIR gives arith.trunci no-wrap flags, which xDSL 0.74's op does not define;
        # they only allow optimizations (the value is the same), so they are dropped.
        if op_name(inner) == "arith.trunci":
            inner.properties.pop("overflowFlags", None)
    position = {op: i for i, op in enumerate(fn.body.block.ops)}  # "op #i" as in the input
    fold_constants(fn)
    deferred: list[tuple[int, Operation]] = []
    for op in list(fn.body.block.ops):
        index = position.get(op, -1)
        name = op_name(op)
        if name in KEEP:
            continue
        if _is_top_level_scalar_op(op):
            deferred.append((index, op))  # cloned into the payloads that use it, see below
            continue
        if name == "tm_tensor.scan":
            Rewriter.replace_op(op, _scan_kernel(op, index))
            continue
        if name == "tm_tensor.scatter":
            Rewriter.replace_op(op, _scatter_kernel(op, index))
            continue
        if name == "tm_tensor.sort":
            new_ops = _sort_kernels(op, index)
            Rewriter.replace_op(op, new_ops, list(new_ops[-2].results)[:-1])
            continue
        st = _as_structured(op)
        if st is not None:
            new_ops = _kernel_from(op, st, index)
            Rewriter.replace_op(op, new_ops, [r for o in new_ops[-len(op.results):] for r in o.results] if len(new_ops) > 1 else None)
            continue
        layout = _layout_op(op)
        if layout is not None:
            Rewriter.replace_op(op, layout)
            continue
        if name == "tensor.insert_slice":
            new_ops = _insert_slice(op, index)
            dest_owner = op.operands[1].owner
            Rewriter.replace_op(op, new_ops, [new_ops[-1].results[0]])
            if isinstance(dest_owner, rdu.KernelOp) and not any(r.uses for r in dest_owner.results):
                dest_owner.detach()
                dest_owner.erase()
            continue
        alt = _ALTERNATIVES.get(name)
        hint = f"; nearest supported alternative: {alt}" if alt else ""
        if name == "cf.assert":
            msg = op.properties.get("msg") or op.attributes.get("msg")
            raise CompileError(
                "rdu-convert-linalg",
                f"a runtime check on values computed from the inputs (op #{index} of "
                f"@{fn.sym_name.data}: \"{getattr(msg, 'data', '')}\") has no rdu lowering; the "
                "fabric runs no scalar control code. Make the checked value a compile-time constant.",
            )
        raise CompileError(
            "rdu-convert-linalg",
            f"op '{name}' (op #{index} of @{fn.sym_name.data}) has no rdu lowering{hint}; {_SUPPORTED}",
        )
    # Scalar ops at function level were cloned into the kernels that read them; drop them.
    for _index, op in reversed(deferred):
        if not any(r.uses for r in op.results):
            op.detach()
            op.erase()
    for index, op in deferred:
        if op.parent is not None:
            user = next(iter(op.results[0].uses)).operation
            raise CompileError(
                "rdu-convert-linalg",
                f"scalar op '{op_name(op)}' (op #{index} of @{fn.sym_name.data}) feeds "
                f"'{op_name(user)}', which is not a kernel payload; scalar code outside kernels has "
                f"no rdu lowering. {_SUPPORTED}",
            )


# ------------------------------------------------------------------------ constant folding

#: Function-level ops evaluated when every operand is a constant (shape checks, scalars).
_FOLDABLE = {"tensor.concat", "tensor.extract_slice", "tensor.collapse_shape", "tensor.expand_shape", "tensor.extract"}
#: A folded tensor larger than this (elements) stays computation.
_FOLD_MAX_ELEMENTS = 4096


def _constant_array(op: arith.ConstantOp) -> np.ndarray | None:
    t = op.results[0].type
    value = op.value
    try:
        if isinstance(t, TensorType):
            if not isinstance(value, DenseIntOrFPElementsAttr):
                return None
            dtype = numpy_dtype(t.element_type)
            shape = rdu.shape_of(t)
            data = np.asarray(value.get_values(), dtype=dtype).reshape(-1)
            # a splat stays one element (a read-only broadcast view), never materialised
            return np.broadcast_to(data[0], shape) if data.size == 1 else data.reshape(shape)
        if isinstance(value, FloatAttr | IntegerAttr):
            return np.asarray(value.value.data, dtype=numpy_dtype(t))
    except Exception:  # noqa: BLE001 - an attribute we do not read: not folded
        return None
    return None


def _constant_op(value: np.ndarray, t: Any) -> arith.ConstantOp | None:
    elt = t.element_type if isinstance(t, TensorType) else t
    flat = np.asarray(value).reshape(-1)
    if isinstance(elt, IntegerType | IndexType):
        items: list[Any] = [int(x) for x in flat.astype(np.int64)]
        if isinstance(elt, IntegerType) and elt.width.data == 1:
            items = [1 if x else 0 for x in items]
    else:
        items = [float(x) for x in flat.astype(np.float64)]
    if isinstance(t, TensorType):
        return arith.ConstantOp(DenseIntOrFPElementsAttr.from_list(t, items))
    if isinstance(elt, IntegerType | IndexType):
        return arith.ConstantOp(IntegerAttr(items[0], elt))
    return arith.ConstantOp(FloatAttr(items[0], elt))  # type: ignore[arg-type]


def fold_constants(fn: func.FuncOp) -> None:
    """Evaluate function-level ops whose operands are all constants: shape-check chains that
    torch-mlir emits (`tensor.concat` of constants -> `extract_slice` -> `tensor.extract` ->
    `arith.cmpi` -> `cf.assert`) and scalar arithmetic. A check that holds is removed; one
    that fails for every input is an error."""
    ops = list(fn.body.block.ops)
    # Only the scalar side is folded: scalar ops, checks, and the tensor ops whose every use
    # is on the scalar side (a constant tensor a kernel reads stays as it is).
    scalar_side: set[Operation] = set()
    for op in reversed(ops):
        name = op_name(op)
        if name == "cf.assert" or _is_top_level_scalar_op(op):
            scalar_side.add(op)
        elif name in _FOLDABLE and all(u.operation in scalar_side for r in op.results for u in r.uses):
            scalar_side.add(op)
    known: dict[SSAValue, np.ndarray] = {}
    for index, op in enumerate(ops):
        name = op_name(op)
        if isinstance(op, arith.ConstantOp):
            value = _constant_array(op)
            if value is not None:
                known[op.results[0]] = value
            continue
        if name == "cf.assert":
            cond = known.get(op.operands[0])
            if cond is None:
                continue
            if not bool(np.all(cond)):
                msg = op.properties.get("msg") or op.attributes.get("msg")
                raise CompileError(
                    "rdu-convert-linalg",
                    f"runtime check (op #{index} of @{fn.sym_name.data}) fails for every input: "
                    f"{getattr(msg, 'data', 'assertion failed')}",
                )
            op.detach()
            op.erase()
            continue
        if op not in scalar_side or len(op.results) != 1 or op.regions or not op.operands:
            continue
        if not all(v in known for v in op.operands):
            continue
        try:
            value = _fold_one(op, name, [known[v] for v in op.operands])
        except Exception:  # noqa: BLE001 - not foldable: converted as usual
            value = None
        if value is None or value.size > _FOLD_MAX_ELEMENTS:
            continue
        const = _constant_op(value, op.results[0].type)
        if const is None:
            continue
        Rewriter.replace_op(op, const)
        known[const.results[0]] = value


def _fold_one(op: Operation, name: str, args: list[np.ndarray]) -> np.ndarray | None:
    shape = rdu.shape_of(op.results[0].type) if isinstance(op.results[0].type, TensorType) else ()
    if name == "tensor.concat":
        dim = op.properties["dim"]
        assert isinstance(dim, IntegerAttr)
        return np.concatenate(args, axis=dim.value.data)
    if name in ("tensor.collapse_shape", "tensor.expand_shape"):
        return args[0].reshape(shape)
    if name == "tensor.extract_slice":
        assert isinstance(op, tensor.ExtractSliceOp)
        if op.offsets or op.sizes or op.strides:
            return None
        offsets = op.static_offsets.get_values()
        sizes = op.static_sizes.get_values()
        strides = op.static_strides.get_values()
        index = tuple(slice(o, o + (n - 1) * st + 1, st) for o, n, st in zip(offsets, sizes, strides, strict=True))
        return args[0][index].reshape(shape)
    if name == "tensor.extract":
        return np.asarray(args[0][tuple(int(i) for i in args[1:])])
    out = evaluate_op(op, args)
    dtype = numpy_dtype(op.results[0].type)
    return np.asarray(out).astype(dtype)


@dataclass(frozen=True)
class RduConvertLinalgPass(ModulePass):
    """Lower linalg-on-tensors (torch-mlir's output) to rdu kernels and layout ops."""

    name = "rdu-convert-linalg"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for fn in op.ops:
            if isinstance(fn, func.FuncOp) and not fn.is_declaration:
                convert_function(fn)
                refuse_unrunnable(fn)


def refuse_unrunnable(fn: func.FuncOp) -> None:
    """Refuse, at compile time, what the emulator would refuse at run time: each kernel is
    prepared as the emulator prepares it (its payload compiled, its reductions matched to
    a combiner), and a constant must have its data (not an elided ``dense_resource``).
    Whatever compiles then runs.

    Raises:
        CompileError: naming the kernel ('k7_gather', whose number is the op's position in
            the input, so the caller can name the model line) and the emulator's reason.
    """
    from xdsl.dialects.builtin import DenseResourceAttr

    from rdu_compiler.errors import EmulatorError
    from rdu_compiler.interpreters.kernel import KernelExecutor

    for op in fn.body.block.ops:
        if isinstance(op, arith.ConstantOp) and isinstance(op.value, DenseResourceAttr):
            raise CompileError(
                "rdu-convert-linalg",
                f"a constant of @{fn.sym_name.data} ({op.value}) is a resource blob whose data "
                "the input does not hold (elided, or not in a trailing dialect_resources "
                "section); the compiler needs its values. Print the module with its resources "
                "(no --mlir-elide-resource-strings-if-larger).",
            )
        if isinstance(op, rdu.KernelOp):
            try:
                KernelExecutor(op)
            except EmulatorError as e:
                raise CompileError(
                    "rdu-convert-linalg",
                    f"{e} (refused at compile time: the emulator cannot run this kernel). "
                    "Rewrite the model op it comes from with supported operations.",
                ) from None
