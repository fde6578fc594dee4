"""Analyses of kernel payloads shared by passes, the cost model and the emulator."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from xdsl.dialects import arith, tensor
from xdsl.ir import Block, Operation, SSAValue
from xdsl.ir.affine import AffineMap

from rdu_compiler.dialects import rdu
from rdu_compiler.dialects.rdu import Pattern
from rdu_compiler.ir import op_name
from rdu_compiler.kernel.access import Access

#: Combiners a reduction payload may use on its accumulator, with their numpy ufunc name.
COMBINERS = {
    "arith.addf": "add",
    "arith.addi": "add",
    "arith.mulf": "multiply",
    "arith.muli": "multiply",
    "arith.maximumf": "maximum",
    "arith.minimumf": "minimum",
    "arith.maxnumf": "fmax",
    "arith.minnumf": "fmin",
    "arith.maxsi": "maximum",
    "arith.minsi": "minimum",
    "arith.maxui": "maximum",
    "arith.minui": "minimum",
    "arith.ori": "bitwise_or",
    "arith.andi": "bitwise_and",
    "arith.xori": "bitwise_xor",
}

#: Payload ops that are free on the PCU (casts, index arithmetic, constants, control).
FREE_OPS = {
    "arith.constant", "rdu.yield", "rdu.index", "cf.assert", "arith.index_cast", "arith.extf",
    "arith.truncf", "arith.extsi", "arith.extui", "arith.trunci", "arith.sitofp", "arith.uitofp",
    "arith.fptosi", "arith.fptoui", "arith.bitcast", "tensor.extract",
}


def _yield_op(block: Block) -> Operation:
    last = block.last_op
    assert last is not None and isinstance(last, rdu.YieldOp)
    return last


def reduction_combiner(block: Block, out_arg: SSAValue, yielded: SSAValue) -> tuple[str, SSAValue] | None:
    """If `yielded == comb(out_arg, expr)` with expr independent of out_arg, return (comb, expr)."""
    owner = yielded.owner
    if not isinstance(owner, Operation) or op_name(owner) not in COMBINERS or len(owner.operands) != 2:
        return None
    a, b = owner.operands
    if a is out_arg and not depends_on(b, out_arg):
        return op_name(owner), b
    if b is out_arg and not depends_on(a, out_arg):
        return op_name(owner), a
    return None


@dataclass(frozen=True)
class IndexSelect:
    """A reduction result that keeps the index of the best value (argmax / argmin):
    `acc_i = select(cmp(x, acc_v), e, acc_i)`, where result `value_result` reduces
    `acc_v = comb(acc_v, x)`. Each step, in iteration order, replaces the index with `e`
    when the comparison of `x` with the running value (before this step) says so. With
    `value_result = -1` the condition `x` reads no accumulator (see `last_match`)."""

    value_result: int
    cmp: Operation | None
    x: SSAValue
    x_is_lhs: bool
    e: SSAValue
    update_on_true: bool
    select: Operation

    @property
    def last_match(self) -> bool:
        """`acc_i = select(cond, e, acc_i)` with `cond` free of accumulators (`x` is `cond`):
        the value of the last step whose condition holds (a scatter's last write wins)."""
        return self.value_result < 0


def index_select_reduction(block: Block, n_inputs: int, i: int) -> IndexSelect | None:
    """Recognise result `i` of a reduction payload as an :class:`IndexSelect`, or None."""
    yielded = _yield_op(block).operands
    y = yielded[i]
    acc_i = block.args[n_inputs + i]
    sel = y.owner
    if not isinstance(sel, Operation) or op_name(sel) != "arith.select":
        return None
    cond, a, b = sel.operands
    if b is acc_i and not depends_on(a, acc_i):
        e, update_on_true = a, True
    elif a is acc_i and not depends_on(b, acc_i):
        e, update_on_true = b, False
    else:
        return None
    accs = list(block.args[n_inputs : n_inputs + len(yielded)])
    if any(depends_on(e, acc) for acc in accs):
        return None
    if not any(depends_on(cond, acc) for acc in accs):
        return IndexSelect(-1, None, cond, True, e, update_on_true, sel)
    cmp = cond.owner
    if not isinstance(cmp, Operation) or op_name(cmp) not in ("arith.cmpf", "arith.cmpi"):
        return None
    p, q = cmp.operands
    for j, acc_v in enumerate(accs):
        if j == i or (p is not acc_v and q is not acc_v):
            continue
        x = q if p is acc_v else p
        found = reduction_combiner(block, acc_v, yielded[j])
        if found is None or found[1] is not x or any(depends_on(x, acc) for acc in accs):
            return None
        if len(list(cond.uses)) != 1:
            return None
        return IndexSelect(j, cmp, x, x is p, e, update_on_true, sel)
    return None


def depends_on(value: SSAValue, target: SSAValue) -> bool:
    """Whether `value` is computed from `target` inside one payload block."""
    stack, seen = [value], set()
    while stack:
        v = stack.pop()
        if v is target:
            return True
        if v in seen or not isinstance(v.owner, Operation):
            continue
        seen.add(v)
        stack.extend(v.owner.operands)
    return False


def strip_casts(value: SSAValue) -> SSAValue:
    """Look through extf/truncf casts."""
    while isinstance(value.owner, arith.ExtFOp | arith.TruncFOp):
        value = value.owner.operands[0]
    return value


def cast_chain(mul: Operation, arg: SSAValue) -> list[Operation]:
    """The extf/truncf ops between block argument `arg` and the multiply `mul` that reads it
    (first applied first), or [] if `mul` reads `arg` directly or not at all."""
    for v in mul.operands:
        if strip_casts(v) is arg:
            chain: list[Operation] = []
            while isinstance(v.owner, arith.ExtFOp | arith.TruncFOp):
                chain.append(v.owner)
                v = v.owner.operands[0]
            return list(reversed(chain))
    return []


def only_feeding(block: Block, value: SSAValue) -> set[Operation]:
    """Ops of the payload whose results reach only `value` (dead once it is dropped)."""
    dead: set[Operation] = set()
    stack = [value.owner] if isinstance(value.owner, Operation) else []
    while stack:
        op = stack.pop()
        if op in dead or op is block.last_op:
            continue
        users = {u.operation for r in op.results for u in r.uses}
        if users - dead - {block.last_op}:
            continue
        dead.add(op)
        stack.extend(v.owner for v in op.operands if isinstance(v.owner, Operation))
    return dead


def contraction_mul(block: Block, n_inputs: int) -> Operation | None:
    """The `arith.mulf` of an `out += a * b` payload (one result), or None."""
    yielded = _yield_op(block).operands
    if len(yielded) != 1:
        return None
    found = reduction_combiner(block, block.args[n_inputs], yielded[0])
    if found is None or found[0] != "arith.addf":
        return None
    mul = found[1].owner
    return mul if isinstance(mul, arith.MulfOp) else None


def contraction_operands(block: Block, n_inputs: int) -> tuple[int, int] | None:
    """For `out += a * b` payloads with a, b input block args: their input indices."""
    mul = contraction_mul(block, n_inputs)
    if mul is None:
        return None
    a, b = (strip_casts(v) for v in mul.operands)
    args: list[SSAValue] = list(block.args[:n_inputs])
    if a not in args or b not in args:
        return None
    return args.index(a), args.index(b)


def classify_kernel(
    block: Block, n_inputs: int, iterators: list[str], maps: list[AffineMap], domain: Sequence[int] | None = None
) -> Pattern:
    """The parallel pattern of a payload, for reports and the cost model. With the
    iteration `domain` (sizes), loops of size 1 do not make a copy a broadcast."""
    if any(isinstance(o, tensor.ExtractOp) for o in block.walk()):
        return Pattern.GATHER
    if "reduction" in iterators:
        if contraction_operands(block, n_inputs) is not None:
            return Pattern.MATMUL
        return Pattern.REDUCE
    yielded = _yield_op(block).operands
    if n_inputs == 1 and len(yielded) == 1 and yielded[0] is block.args[0]:
        in_map = maps[0]
        if len(in_map.results) == 0:
            return Pattern.FILL
        # a relayout: every output element copied from its own place (a transpose, or a
        # transpose through a folded reshape/slice); a broadcast skips a loop and stays a map
        unit = {d for d, n in enumerate(domain or ()) if n == 1}
        uses_every_loop = set().union(unit, *(e.used_dims() for e in in_map.results)) == set(range(in_map.num_dims))
        if uses_every_loop and in_map != AffineMap.identity(in_map.num_dims):
            return Pattern.TRANSPOSE
    return Pattern.MAP


def flops_per_point(block: Block) -> int:
    """Arithmetic ops executed per iteration-domain point (a multiply-add counts 2)."""
    return sum(1 for o in block.walk() if op_name(o) not in FREE_OPS and not o.regions)


@dataclass(frozen=True)
class ReductionRole:
    """What one result of a reduction payload does with its accumulator.

    `kind` is "combine" (`acc = combiner(acc, expr)`), "select" (an index-of-best or
    last-write result, `select`), "dead" (no recognised form and the result is never read:
    not computed) or "unrecognised" (no recognised form, read: a user must refuse it).
    """

    kind: str
    combiner: str = ""
    expr: SSAValue | None = None
    select: IndexSelect | None = None


@dataclass(frozen=True)
class ReductionPlan:
    """The roles of a reduction payload's results, one analysis for every user (emulator,
    Triton generator). `skip` holds the ops the reducer applies itself (combiners, the
    select and compare of index-of-best results) and the ops feeding only dead results:
    the payload evaluator leaves them out. `misread` is an op outside `skip` that reads an
    accumulator (users refuse: the accumulator is read outside its combiner), or None.
    `contraction` is `contraction_operands` for single-result payloads (`out += a * b`)."""

    roles: tuple[ReductionRole, ...]
    skip: frozenset[Operation]
    misread: Operation | None
    contraction: tuple[int, int] | None


def reduction_plan(block: Block, n_inputs: int, dead: Sequence[bool]) -> ReductionPlan:
    """Analyse a reduction payload (block args: inputs, then one accumulator per result,
    then captures). `dead[i]`: result i is never read."""
    yielded = _yield_op(block).operands
    roles: list[ReductionRole] = []
    skip: set[Operation] = set()
    for i, y in enumerate(yielded):
        found = reduction_combiner(block, block.args[n_inputs + i], y)
        if found is not None:
            assert isinstance(y.owner, Operation)
            skip.add(y.owner)
            roles.append(ReductionRole("combine", found[0], found[1]))
            continue
        if dead[i]:
            roles.append(ReductionRole("dead"))
            skip.update(only_feeding(block, y))
            continue
        select = index_select_reduction(block, n_inputs, i)
        if select is None:
            roles.append(ReductionRole("unrecognised"))
            continue
        skip.update(o for o in (select.select, select.cmp) if o is not None)
        roles.append(ReductionRole("select", select=select))
    accs = set(block.args[n_inputs : n_inputs + len(yielded)])
    misread = next(
        (op for op in block.ops if op not in skip and op is not block.last_op and accs & set(op.operands)), None
    )
    contraction = contraction_operands(block, n_inputs) if len(yielded) == 1 else None
    return ReductionPlan(tuple(roles), frozenset(skip), misread, contraction)


@dataclass(frozen=True)
class ContractionDims:
    """The loops of a contraction `out += a * b` by role (ascending): in all three operands
    (`batch`), in a and out (`m`), in b and out (`n`), in a and b, reduced (`k`)."""

    batch: list[int]
    m: list[int]
    n: list[int]
    k: list[int]


def contraction_dims(a: Access, b: Access, out: Access, rank: int) -> ContractionDims | None:
    """The roles of the `rank` loops of `out += a * b` from the three access patterns, or
    None when a loop is read by one operand alone or by none (no batched matmul). The
    emulator runs such a contraction as `np.matmul` per tile; the Triton generator as
    `tl.dot` (with conditions of its own)."""
    da, db, do = a.dims, b.dims, out.dims
    dims = ContractionDims(sorted(da & db & do), sorted((da & do) - db), sorted((db & do) - da), sorted((da & db) - do))
    if set(dims.batch + dims.m + dims.n + dims.k) != set(range(rank)):
        return None
    return dims
