"""tm_tensor -> rdu: `tm_tensor.scan` becomes a `scan` kernel, `tm_tensor.scatter` a
`scatter` kernel over the updates, `tm_tensor.sort` a rank-counting kernel, a gather
and a check (see each function).

xDSL defines no `tm_tensor` dialect: these ops arrive unregistered and are matched by
name (`named`); their payload ops are ordinary arith ops.
"""

from __future__ import annotations

from xdsl.dialects import arith, cf
from xdsl.dialects.builtin import (
    AffineMapAttr,
    DenseArrayBase,
    DenseIntOrFPElementsAttr,
    IntegerAttr,
    IntegerType,
    StringAttr,
    TensorType,
    i64,
)
from xdsl.ir import Block, Operation, Region, SSAValue
from xdsl.ir.affine import AffineConstantExpr, AffineDimExpr, AffineMap
from xdsl.pattern_rewriter import PatternRewriter

from rdu_compiler.dialects import rdu
from rdu_compiler.errors import CompileError
from rdu_compiler.passes.convert.common import (
    ConversionPattern,
    iter_attrs,
    named,
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
    mapping: dict[SSAValue, SSAValue] = {combiner.args[0]: block.args[2], combiner.args[1]: block.args[0]}
    for inner in combiner.ops:
        if named(inner, "tm_tensor.yield"):
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
        iter_attrs(["parallel"] * rank),
        Region(block),
        {
            "sym_name": StringAttr(f"k{index}_scan"),
            "scan_dim": IntegerAttr(dim, i64),
            "scan_inclusive": IntegerAttr(inclusive, i64),
        },
    )


def _scatter_kernel(op: Operation, index: int) -> rdu.KernelOp:
    """`tm_tensor.scatter` (updates `N x S...`, indices `N x K`, a destination of rank R,
    `dimension_map` naming the K destination dims the index columns address) as one
    `scatter` kernel over the updates' domain: O(N x |S|) points, each written once.

    Update `i`'s slice (the trailing `len(S)` destination dims, as torch-mlir's TMTensor
    aligns it) goes to `original[idx(i) + s]`, combined by the op's region
    (`combine(update, original)`; a region that yields the update is a plain write: the
    last one wins), in update order. This covers torch-mlir's point scatters
    (ScatterElements, index_put, scatter_reduce: `S` empty, K = R) and slice scatters
    (index_add / index_put with accumulate: `S` the row). The payload is the region with
    `acc` for the destination value; the kernel's inputs are the K index columns, then
    the updates.

    Raises:
        CompileError: an index or update shape that does not fit the destination.
    """
    updates, indices, original = op.operands
    dmap = op.properties.get("dimension_map")
    dims = [int(d) for d in dmap.get_values()] if isinstance(dmap, DenseArrayBase) else []
    ushape, ishape, dshape = rdu.shape_of(updates.type), rdu.shape_of(indices.type), rdu.shape_of(original.type)
    r, s = len(dshape), len(ushape) - 1
    lead = r - s  # destination dims before the update slice
    ok = (
        len(ishape) == 2 and ishape[0] == ushape[0] and ishape[1] == len(dims) >= 1
        and 0 <= lead and len(set(dims)) == len(dims) and all(0 <= d < r for d in dims)
        and all(ushape[1 + d - lead] <= dshape[d] for d in range(lead, r))
    )
    if not ok:
        raise CompileError(
            "rdu-convert-linalg",
            f"tm_tensor.scatter (op #{index}): updates {updates.type}, indices {indices.type} and dimension_map "
            f"{dims} do not fit the destination {original.type} (one index row of K = len(dimension_map) "
            "columns per update, the update slice aligned with the destination's trailing dims)",
        )
    n_idx = len(dims)
    elt = rdu.element_type_of(original.type)
    ielt = rdu.element_type_of(indices.type)
    block = Block(arg_types=[*([ielt] * n_idx), rdu.element_type_of(updates.type), elt])
    u, acc = block.args[n_idx], block.args[n_idx + 1]
    region = op.regions[0].block
    mapping: dict[SSAValue, SSAValue] = {region.args[0]: u, region.args[1]: acc}
    for inner in region.ops:
        if named(inner, "tm_tensor.yield"):
            block.add_op(rdu.YieldOp(mapping[inner.operands[0]]))
            break
        clone = inner.clone(value_mapper=mapping)  # type: ignore[arg-type]
        block.add_op(clone)
        for old, new in zip(inner.results, clone.results, strict=True):
            mapping[old] = new
    rank = 1 + s
    i = AffineDimExpr(0)
    dest = tuple(AffineDimExpr(1 + d - lead) if d >= lead else AffineConstantExpr(0) for d in range(r))
    maps = [AffineMap(rank, 0, (i, AffineConstantExpr(c))) for c in range(n_idx)]
    maps += [AffineMap.identity(rank), AffineMap(rank, 0, dest)]
    return rdu.KernelOp(
        [*([indices] * n_idx), updates], [original], [], [op.results[0].type], rdu.Pattern.SCATTER,
        list(ushape), [AffineMapAttr(m) for m in maps], iter_attrs(["parallel"] * rank), Region(block),
        {"sym_name": StringAttr(f"k{index}_scatter"), "scatter_dims": DenseArrayBase.from_list(i64, dims)},
    )


#: `arith.cmpf` predicates a sort comparator uses for "goes first": ogt and oge (a
#: descending sort: torch-mlir's ONNX TopK uses oge), olt and ole (ascending).
_NAN_LAST = {2: "ogt", 3: "oge", 4: "olt", 5: "ole"}


def _nan_largest(a: SSAValue, b: SSAValue, predicate: int, body: list[Operation]) -> SSAValue:
    """`cmpf(a, b)` for an ordered predicate of `_NAN_LAST`, with NaN ordered above every
    number and equal to NaN, appending the ops to `body`. With `big` the side that must be
    the larger for the comparison to hold (a for ogt/oge, b for olt/ole) and `small` the
    other: strict (ogt/olt) `cmpf or (isnan(big) and not isnan(small))`; non-strict
    (oge/ole) `cmpf or isnan(big)`. This is the order of torch.sort/topk and of ONNX's TopK
    reference (`np.lexsort` puts NaN last): a descending sort puts NaN first, an ascending
    one last, and NaNs among themselves tie, so they keep index order."""
    cmp = arith.CmpfOp(a, b, predicate)
    big, small = (a, b) if predicate in (2, 3) else (b, a)
    big_nan = arith.CmpfOp(big, big, "uno")
    new: list[Operation] = [cmp, big_nan]
    over = big_nan.results[0]
    if predicate in (2, 4):
        small_nan = arith.CmpfOp(small, small, "uno")
        true = arith.ConstantOp(IntegerAttr(1, IntegerType(1)))
        small_num = arith.XOrIOp(small_nan.results[0], true.results[0])
        nan_over = arith.AndIOp(big_nan.results[0], small_num.results[0])
        new += [small_nan, true, small_num, nan_over]
        over = nan_over.results[0]
    out = arith.OrIOp(cmp.results[0], over)
    body += [*new, out]
    return out.results[0]


def _sort_kernels(op: Operation, index: int) -> list[Operation]:
    """`tm_tensor.sort` along `dimension` (n elements, comparator `c(lhs, rhs)`: lhs goes
    first; its `cmpf ogt/olt` order NaN above every number, see `_nan_largest`) as two kernels: the rank of every element, `#{k : k goes first} + #{k < i : tie}`
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
        args: list[SSAValue] = list(block.args)
        self_vals, other_vals, acc = args[0:-1:2], args[1:-1:2], args[-1]
        body: list[Operation] = []

        def compare(lhs: list[SSAValue], rhs: list[SSAValue]) -> SSAValue:
            mapping: dict[SSAValue, SSAValue] = {}
            for m in range(len(operands)):
                mapping[comparator.args[2 * m]] = lhs[m]
                mapping[comparator.args[2 * m + 1]] = rhs[m]
            for inner in comparator.ops:
                if named(inner, "tm_tensor.yield"):
                    return mapping[inner.operands[0]]
                if isinstance(inner, arith.CmpfOp) and inner.predicate.value.data in _NAN_LAST:
                    a, b = (mapping.get(v, v) for v in inner.operands)
                    mapping[inner.results[0]] = _nan_largest(a, b, inner.predicate.value.data, body)
                    continue
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
            [AffineMapAttr(m) for m in maps], iter_attrs(["parallel"] * r + ["reduction"]), Region(block),
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
        iter_attrs(["parallel"] * r + ["reduction"]), Region(block), {"sym_name": StringAttr(f"k{index}_sort_permute")},
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
        [ident, ident], iter_attrs(["parallel"] * r), Region(check), {"sym_name": StringAttr(f"k{index}_sort_check")},
    )
    ops.append(checked)
    return ops


class ConvertTmTensorOp(ConversionPattern):
    """A function-level `tm_tensor.scan` / `scatter` / `sort` becomes its kernels."""

    def convert(self, op: Operation, rewriter: PatternRewriter) -> None:
        index = self.cx.index(op)
        if named(op, "tm_tensor.scan"):
            rewriter.replace(op, _scan_kernel(op, index))
        elif named(op, "tm_tensor.scatter"):
            rewriter.replace(op, _scatter_kernel(op, index))
        elif named(op, "tm_tensor.sort"):
            new_ops = _sort_kernels(op, index)
            rewriter.replace(op, new_ops, list(new_ops[-2].results)[:-1])
