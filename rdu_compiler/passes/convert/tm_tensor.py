"""tm_tensor -> rdu: `tm_tensor.scan` becomes a `scan` kernel, `tm_tensor.scatter` a
gather kernel over the destination, `tm_tensor.sort` a rank-counting kernel, a gather
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
    FloatAttr,
    IndexType,
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
from rdu_compiler.ir import op_name
from rdu_compiler.passes.convert.common import (
    ConversionPattern,
    and_i1,
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


#: The identity of each combiner a scatter may accumulate with.
_COMBINER_IDENTITY: dict[type, float | int] = {
    arith.AddfOp: 0.0,
    arith.AddiOp: 0,
    arith.MulfOp: 1.0,
    arith.MuliOp: 1,
    arith.MaximumfOp: float("-inf"),
    arith.MinimumfOp: float("inf"),
}


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
        match = eq.results[0] if match is None else and_i1(ops, match, eq.results[0])
    # The combiner region: ^bb0(%update, %original): yield f(update, original).
    region = op.regions[0].block
    mapping: dict[SSAValue, SSAValue] = {region.args[0]: u, region.args[1]: acc}
    combined: SSAValue | None = None
    for inner in region.ops:
        if named(inner, "tm_tensor.yield"):
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
        identity = _COMBINER_IDENTITY.get(type(comb_op))
        if identity is None or not isinstance(comb_op, Operation) or set(comb_op.operands) != {u, acc}:
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
        [*dshape, n], [AffineMapAttr(m) for m in maps], iter_attrs(["parallel"] * r + ["reduction"]),
        Region(block), {"sym_name": StringAttr(f"k{index}_reduce")},
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
