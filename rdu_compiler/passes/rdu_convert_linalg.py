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

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import arith, func, tensor
from xdsl.dialects.builtin import (
    AffineMapAttr,
    ArrayAttr,
    DenseArrayBase,
    IntegerAttr,
    ModuleOp,
    StringAttr,
    i64,
)
from xdsl.dialects.linalg.abstract_ops import NamedOperation
from xdsl.dialects.linalg.attrs import IteratorType, IteratorTypeAttr
from xdsl.dialects.linalg.ops import GenericOp, TransposeOp
from xdsl.ir import Block, Operation, Region, SSAValue
from xdsl.ir.affine import AffineDimExpr, AffineMap
from xdsl.passes import ModulePass
from xdsl.rewriter import Rewriter

from rdu_compiler.dialects import rdu
from rdu_compiler.errors import CompileError
from rdu_compiler.ir import op_name
from rdu_compiler.passes.payload import classify_kernel

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
    d = [AffineDimExpr(i) for i in range(rank + 1)]
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
    if name in ("linalg.matmul", "linalg.batch_matmul"):
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
        if maps is None and isinstance(op, NamedOperation):
            maps = [m.data for m in op.get_indexing_maps().data] if hasattr(op, "get_indexing_maps") else None
        if maps is None:
            return None
        ins, outs = _segments(op)
        its = None
        if hasattr(op, "get_iterator_types"):
            its = [it.data.value for it in op.get_iterator_types().data]
        return _Structured(ins, outs, maps, its or _contraction_iterators(maps), op.regions[0])
    return None


def _build_payload(region: Region, n_mapped: int) -> tuple[Region, list[SSAValue]]:
    """Clone a linalg payload into an rdu payload; return it and the captured outside values."""
    new_region = region.clone()
    block = new_region.block
    inside: set[SSAValue] = set(block.args)
    for inner in block.walk():
        inside.update(inner.results)
    captures: list[SSAValue] = []
    cloned_consts: dict[SSAValue, SSAValue] = {}
    for inner in list(block.walk()):
        for i, operand in enumerate(inner.operands):
            if operand in inside:
                continue
            owner = operand.owner
            if isinstance(owner, arith.ConstantOp):
                if operand not in cloned_consts:
                    const = owner.clone()
                    block.insert_op_before(const, block.first_op)  # type: ignore[arg-type]
                    cloned_consts[operand] = const.results[0]
                inner.operands[i] = cloned_consts[operand]
                continue
            if operand not in captures:
                captures.append(operand)
                block.insert_arg(operand.type, len(block.args))
            arg_index = n_mapped + captures.index(operand)
            inner.operands[i] = block.args[arg_index]
    for inner in list(block.walk()):
        name = op_name(inner)
        if name == "linalg.index":
            dim = inner.properties["dim"]
            assert isinstance(dim, IntegerAttr)
            Rewriter.replace_op(inner, rdu.IndexOp(dim.value.data))
        elif name in ("linalg.yield", "tm_tensor.yield"):
            Rewriter.replace_op(inner, rdu.YieldOp(*inner.operands))
    return new_region, captures


def _kernel_from(op: Operation, st: _Structured, index: int) -> rdu.KernelOp:
    where = f"'{op_name(op)}' (op #{index})"
    shapes = [rdu.shape_of(v.type) for v in (*st.inputs, *st.inits)]
    domain = infer_domain(st.maps, shapes, where)
    iterators = st.iterators or ["parallel"] * len(domain)
    payload, captures = _build_payload(st.region, len(st.inputs) + len(st.inits))
    kind = classify_kernel(payload.block, len(st.inputs), iterators, st.maps)
    return rdu.KernelOp(
        st.inputs,
        st.inits,
        captures,
        [r.type for r in op.results],
        kind,
        domain,
        [AffineMapAttr(m) for m in st.maps],
        _iter_attrs(iterators),
        payload,
        {"sym_name": StringAttr(f"k{index}_{kind.value}")},
    )


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


def convert_function(fn: func.FuncOp) -> None:
    """Convert every op in `fn`'s body; refuse the first op there is no rule for."""
    for index, op in enumerate(list(fn.body.block.ops)):
        name = op_name(op)
        if name in KEEP:
            continue
        if name == "tm_tensor.scan":
            Rewriter.replace_op(op, _scan_kernel(op, index))
            continue
        st = _as_structured(op)
        if st is not None:
            Rewriter.replace_op(op, _kernel_from(op, st, index))
            continue
        layout = _layout_op(op)
        if layout is not None:
            Rewriter.replace_op(op, layout)
            continue
        raise CompileError(
            "rdu-convert-linalg",
            f"op '{name}' (op #{index} of @{fn.sym_name.data}) has no rdu lowering; "
            "supported: linalg.generic/matmul/batch_matmul/fill/transpose/broadcast/conv/pooling, "
            "tm_tensor.scan, tensor.expand_shape/collapse_shape/extract_slice/concat/pad",
        )


@dataclass(frozen=True)
class RduConvertLinalgPass(ModulePass):
    """Lower linalg-on-tensors (torch-mlir's output) to rdu kernels and layout ops."""

    name = "rdu-convert-linalg"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for fn in op.ops:
            if isinstance(fn, func.FuncOp) and not fn.is_declaration:
                convert_function(fn)
