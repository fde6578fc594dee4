"""What the conversion patterns of `rdu-convert-linalg` share: the function being
converted and the input position of each of its ops, loop-bound inference, iterator
attributes, and which function-level ops are scalar code.

Matching is by op class (`isinstance`, `op_type_rewrite_pattern`) for every op xDSL
defines; ops xDSL 0.74 does not define (`linalg.batch_matmul`, `linalg.dot`, the
`tm_tensor` dialect) reach us as unregistered ops and are matched by name (`named`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from xdsl.dialects import arith, func, tensor
from xdsl.dialects.builtin import (
    IntegerAttr,
    TensorType,
    UnregisteredOp,
)
from xdsl.dialects.linalg.attrs import IteratorType, IteratorTypeAttr
from xdsl.ir import Operation, SSAValue
from xdsl.ir.affine import AffineDimExpr, AffineMap
from xdsl.pattern_rewriter import (
    PatternRewriter,
    RewritePattern,
    op_type_rewrite_pattern,
)

from rdu_compiler.errors import CompileError
from rdu_compiler.ir import op_name


def named(op: Operation, *names: str) -> bool:
    """`op` is an op xDSL does not define (parsed unregistered) with one of `names`."""
    return isinstance(op, UnregisteredOp) and op.op_name.data in names


@dataclass
class FunctionConversion:
    """The function a pattern converts and the position of each of its ops in the
    imported program ("op #i", `k<i>_...` kernel names: the driver maps them back to
    model lines), taken before anything is rewritten."""

    fn: func.FuncOp
    positions: dict[Operation, int] = field(default_factory=dict[Operation, int])
    refusal: CompileError | None = None
    """The first refusal; once set, no pattern converts anything more."""

    @staticmethod
    def of(fn: func.FuncOp) -> FunctionConversion:
        return FunctionConversion(fn, {op: i for i, op in enumerate(fn.body.block.ops)})

    def index(self, op: Operation) -> int:
        return self.positions.get(op, -1)

    def to_convert(self, op: Operation) -> bool:
        """A function-level op that becomes rdu: not kept (`tensor.empty`, constants,
        `func.return`) and not scalar code (cloned into the payloads that read it)."""
        return (
            self.refusal is None
            and op.parent_op() is self.fn
            and not isinstance(op, KEEP)
            and not is_top_level_scalar_op(op)
        )

    def raise_refusal(self) -> None:
        """Raise the recorded refusal, if any (after the walk: a pattern that raises has
        the walker print the whole module into the exception)."""
        if self.refusal is not None:
            raise self.refusal


class ConversionPattern(RewritePattern):
    """A pattern converting function-level ops of `cx.fn` (see `FunctionConversion.to_convert`);
    a `CompileError` it raises is recorded as the function's refusal and ends the conversion."""

    def __init__(self, cx: FunctionConversion):
        self.cx = cx

    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter) -> None:
        if not self.cx.to_convert(op):
            return
        try:
            self.convert(op, rewriter)
        except CompileError as e:
            self.cx.refusal = e

    def convert(self, op: Operation, rewriter: PatternRewriter) -> None:
        """Rewrite `op` if this pattern applies (it is a function-level op to convert)."""
        raise NotImplementedError


#: Function-level ops that stay as they are.
KEEP = (tensor.EmptyOp, arith.ConstantOp, func.ReturnOp)


class DropTrunciOverflowFlags(RewritePattern):
    """Newer MLIR gives `arith.trunci` no-wrap flags, which xDSL 0.74's op does not
    define (the module would not verify); they only allow optimizations (the value is the
    same), so they are dropped."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: arith.TruncIOp, rewriter: PatternRewriter) -> None:
        if "overflowFlags" in op.properties:
            del op.properties["overflowFlags"]
            rewriter.notify_op_modified(op)


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


def iter_attrs(types: list[str]) -> list[IteratorTypeAttr]:
    return [IteratorTypeAttr(IteratorType(t)) for t in types]


def is_top_level_scalar_op(op: Operation) -> bool:
    """A pure scalar op at function level (`tensor.extract`, arith/math on scalars)."""
    if op.regions or len(op.results) != 1 or isinstance(op.results[0].type, TensorType):
        return False
    if isinstance(op, tensor.ExtractOp):
        return True
    return op_name(op).split(".", 1)[0] in ("arith", "math") and not isinstance(op, arith.ConstantOp)


def constant_indices(op: Operation) -> list[int] | None:
    """The indices of a `tensor.extract` when they are all `arith.constant`s."""
    out = []
    for v in op.operands[1:]:
        owner = v.owner
        if not isinstance(owner, arith.ConstantOp) or not isinstance(owner.value, IntegerAttr):
            return None
        out.append(int(owner.value.value.data))
    return out


def and_i1(ops: list[Operation], a: SSAValue, b: SSAValue) -> SSAValue:
    both = arith.AndIOp(a, b)
    ops.append(both)
    return both.results[0]


