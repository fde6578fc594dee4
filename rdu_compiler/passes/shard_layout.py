"""What rdu-shard, the node emulator and the node cost model share: the layouts of a
tensor-parallel program and where the pass records them.

- `Shard(dim, blocks, ways)`: a dim of N viewed as `[blocks, ways, N / (blocks ways)]`,
  socket r holds `[:, r // (tp / ways), :]` (`dialects/rdu/collectives.py`): `ways = tp`
  is one shard per socket, fewer ways a shard per sub-group of tp / ways sockets (KV heads
  replicated on socket pairs when tp = 2 x n_kv_heads); `None` is replicated, `PARTIAL` a
  partial sum.
- on the module `rdu.tp = N : i64` (`module_tp`); on each function argument that every
  socket gets a shard of, `rdu.shard = array<i64: dim, tp, blocks>` (`arg_shards`); user
  inputs marked `rdu.input` (`mark_inputs`) are never taken for weights.
- `linear`: an affine index as a sum of loops times constants (the form a shard can
  follow through an indexing map).
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.dialects import arith, func
from xdsl.dialects.builtin import (
    ArrayAttr,
    DenseArrayBase,
    DenseIntOrFPElementsAttr,
    DictionaryAttr,
    FloatAttr,
    IntegerAttr,
    ModuleOp,
    TensorType,
    UnitAttr,
)
from xdsl.ir import BlockArgument, Operation, SSAValue
from xdsl.ir.affine import (
    AffineBinaryOpExpr,
    AffineBinaryOpKind,
    AffineConstantExpr,
    AffineDimExpr,
    AffineExpr,
    AffineMap,
)

from rdu_compiler.dialects import rdu

TP_ATTR = "rdu.tp"
ARG_SHARD_ATTR = "rdu.shard"
INPUT_ATTR = "rdu.input"
PARTIAL = "partial"


@dataclass(frozen=True)
class Shard:
    """Sharded along `dim` in `blocks` blocks (layout of `dialects/rdu/collectives.py`)."""

    dim: int
    blocks: int = 1
    ways: int = 0  # distinct shards (a divisor of tp); socket r holds shard r // (tp / ways). 0: tp


Layout = Shard | str | None  # None: replicated; PARTIAL: partial sums


def linear(e: AffineExpr) -> tuple[dict[int, int], int] | None:
    """`e` as ({loop: coefficient}, constant), None when not a sum of loops times constants."""
    if isinstance(e, AffineDimExpr):
        return {e.position: 1}, 0
    if isinstance(e, AffineConstantExpr):
        return {}, e.value
    if isinstance(e, AffineBinaryOpExpr) and e.kind == AffineBinaryOpKind.Add:
        a, b = linear(e.lhs), linear(e.rhs)
        if a is None or b is None:
            return None
        coeffs = dict(a[0])
        for k, v in b[0].items():
            coeffs[k] = coeffs.get(k, 0) + v
        return {k: v for k, v in coeffs.items() if v}, a[1] + b[1]
    if isinstance(e, AffineBinaryOpExpr) and e.kind == AffineBinaryOpKind.Mul:
        a, b = linear(e.lhs), linear(e.rhs)
        if a is None or b is None:
            return None
        if not a[0]:
            a, b = b, a
        if b[0]:
            return None
        return {k: v * b[1] for k, v in a[0].items() if v * b[1]}, a[1] * b[1]
    return None


def from_linear(coeffs: dict[int, int], const: int) -> AffineExpr:
    expr: AffineExpr = AffineExpr.constant(0)
    terms = [AffineExpr.dimension(k) * v if v != 1 else AffineExpr.dimension(k) for k, v in sorted(coeffs.items())]
    for i, t in enumerate(terms):
        expr = t if i == 0 else expr + t
    if const or not terms:
        expr = expr + const if terms else AffineExpr.constant(const)
    return expr


def mentions(e: AffineExpr, loop: int) -> bool:
    if isinstance(e, AffineDimExpr):
        return e.position == loop
    if isinstance(e, AffineBinaryOpExpr):
        return mentions(e.lhs, loop) or mentions(e.rhs, loop)
    return False


def mentions_map(m: AffineMap, loop: int) -> bool:
    return any(mentions(e, loop) for e in m.results)


def is_input(arg: BlockArgument) -> bool:
    """An argument marked `rdu.input` (a user input, not a weight: `api` marks them)."""
    fn = arg.block.parent_op()
    if not isinstance(fn, func.FuncOp) or fn.arg_attrs is None or arg.index >= len(fn.arg_attrs.data):
        return False
    entry = fn.arg_attrs.data[arg.index]
    return isinstance(entry, DictionaryAttr) and INPUT_ATTR in entry.data


def mark_inputs(module: ModuleOp, kinds: list[str]) -> None:
    """Mark the function arguments whose kind is "input" (user inputs) with `rdu.input`, so
    rdu-shard never takes them for weights (`kinds`: one per argument, as
    `ImportedProgram.arg_kinds`)."""
    for fn in (op for op in module.ops if isinstance(op, func.FuncOp) and not op.is_declaration):
        attrs = list(fn.arg_attrs.data) if fn.arg_attrs is not None else [DictionaryAttr({})] * len(fn.args)
        for i, kind in enumerate(kinds[: len(attrs)]):
            if kind == "input":
                attrs[i] = DictionaryAttr({**attrs[i].data, INPUT_ATTR: UnitAttr()})
        fn.arg_attrs = ArrayAttr(attrs)


def arg_shards(fn: func.FuncOp) -> list[tuple[int, ...] | None]:
    """Per function argument: (dim, tp, blocks) of the shard each socket gets, or None;
    (dim, tp, blocks, ways) when fewer than tp distinct shards (socket r gets shard
    r // (tp / ways) of `ways`)."""
    out: list[tuple[int, ...] | None] = []
    attrs = fn.arg_attrs.data if fn.arg_attrs is not None else [None] * len(fn.args)
    for a in attrs:
        entry = a.data.get(ARG_SHARD_ATTR) if isinstance(a, DictionaryAttr) else None
        out.append(tuple(int(x) for x in entry.get_values()) if isinstance(entry, DenseArrayBase) else None)  # type: ignore[misc]
    return out


def module_tp(module: ModuleOp) -> int:
    """The tp degree `rdu-shard` wrote on the module (1 when unsharded)."""
    attr = module.attributes.get(TP_ATTR)
    return attr.value.data if isinstance(attr, IntegerAttr) else 1


def _has_shape(v: SSAValue) -> bool:
    return isinstance(v.type, TensorType)


def is_zero(v: SSAValue) -> bool:
    """`v` is a constant zero scalar or splat."""
    op = v.owner
    if not isinstance(op, arith.ConstantOp):
        return False
    value = op.value
    if isinstance(value, DenseIntOrFPElementsAttr):
        vals = value.get_values()
        return len(vals) >= 1 and all(x == 0 for x in vals)
    if isinstance(value, FloatAttr | IntegerAttr):
        return value.value.data == 0
    return False


def same_shard(a: Operation, b: rdu.ShardOp) -> bool:
    return (isinstance(a, rdu.ShardOp) and a.dim == b.dim and a.group == b.group and a.n_blocks == b.n_blocks
            and a.n_ways == b.n_ways and a.result.type == b.result.type)


def weight_like(v: SSAValue, depth: int = 0) -> bool:
    """Computed from function arguments alone, by all-parallel kernels without captures (a
    weight, its transpose) or views of them."""
    owner = v.owner
    if isinstance(v, BlockArgument):
        return not is_input(v)
    if depth > 4:
        return False
    if isinstance(owner, rdu.ViewOp):
        return weight_like(owner.source, depth + 1)
    if isinstance(owner, rdu.KernelOp) and not owner.reduction_dims and not len(owner.captures):
        return all(weight_like(x, depth + 1) for x in owner.inputs if _has_shape(x))
    return False
