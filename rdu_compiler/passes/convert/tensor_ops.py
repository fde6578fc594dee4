"""tensor -> rdu: `tensor.expand_shape` / `collapse_shape` / `extract_slice` become
`rdu.view`, `tensor.concat` becomes `rdu.concat`, `tensor.pad` becomes `rdu.pad`;
`tensor.insert_slice` becomes `rdu.pad` (into a constant fill) or a gather kernel.
"""

from __future__ import annotations

from xdsl.dialects import arith, tensor
from xdsl.dialects.builtin import (
    AffineMapAttr,
    IndexType,
    IntegerAttr,
    StringAttr,
    TensorType,
)
from xdsl.ir import Block, Operation, Region, SSAValue
from xdsl.ir.affine import AffineMap
from xdsl.pattern_rewriter import PatternRewriter

from rdu_compiler.dialects import rdu
from rdu_compiler.errors import CompileError
from rdu_compiler.passes.convert.common import (
    ConversionPattern,
    and_i1,
    iter_attrs,
)


def _layout_op(op: Operation) -> Operation | None:
    if isinstance(op, tensor.ExpandShapeOp | tensor.CollapseShapeOp):
        return rdu.ViewOp(op.operands[0], op.results[0].type)
    if isinstance(op, tensor.ExtractSliceOp):
        if op.offsets or op.sizes or op.strides:
            raise CompileError("rdu-convert-linalg", "tensor.extract_slice with dynamic offsets/sizes is not supported")
        return rdu.ViewOp(
            op.source,
            op.result.type,
            rdu.ViewMode.SLICE,
            op.static_offsets.get_values(),
            op.static_sizes.get_values(),
            op.static_strides.get_values(),
        )
    if isinstance(op, tensor.ConcatOp):
        return rdu.ConcatOp(list(op.operands), op.results[0].type, op.dim.value.data)
    if isinstance(op, tensor.PadOp):
        return _pad(op)
    return None


def _insert_slice(op: tensor.InsertSliceOp, index: int) -> list[Operation]:
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
        return [rdu.PadOp(src, fill.inputs[0], op.result.type, offsets, high)]
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
        ok = and_i1(ops, and_i1(ops, exact.results[0], lo.results[0]), hi.results[0])
        covered = ok if covered is None else and_i1(ops, covered, ok)
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
        [ident, ident], iter_attrs(["parallel"] * rank), Region(block),
        {"sym_name": StringAttr(f"k{index}_gather")},
    )
    return [empty, kernel]



def _pad(op: tensor.PadOp) -> Operation:
    if op.low or op.high:
        raise CompileError("rdu-convert-linalg", "tensor.pad with dynamic padding is not supported")
    yielded = op.region.block.last_op
    assert yielded is not None
    value = yielded.operands[0]
    if value.owner is op.region.block or (isinstance(value.owner, Operation) and value.owner.parent_block() is op.region.block):
        raise CompileError("rdu-convert-linalg", "tensor.pad whose padding value depends on the index is not supported")
    return rdu.PadOp(op.source, value, op.result.type, op.static_low.get_values(), op.static_high.get_values())


class ConvertLayoutOp(ConversionPattern):
    """A function-level reshape, slice, concat or pad becomes its rdu layout op."""

    def convert(self, op: Operation, rewriter: PatternRewriter) -> None:
        if (layout := _layout_op(op)) is not None:
            rewriter.replace(op, layout)


class ConvertInsertSlice(ConversionPattern):
    """A function-level `tensor.insert_slice` becomes a pad or a gather kernel; a fill
    kernel it was the only reader of is erased."""

    def convert(self, op: Operation, rewriter: PatternRewriter) -> None:
        if not isinstance(op, tensor.InsertSliceOp):
            return
        new_ops = _insert_slice(op, self.cx.index(op))
        dest_owner = op.operands[1].owner
        rewriter.replace(op, new_ops, [new_ops[-1].results[0]])
        if isinstance(dest_owner, rdu.KernelOp) and not any(r.uses for r in dest_owner.results):
            rewriter.erase(dest_owner)
