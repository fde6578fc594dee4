"""Translate a kernel payload (scalar arith/math ops) into Triton block expressions.

Every payload op becomes one line of Triton on whole blocks, with the meaning the
emulator gives it (`interpreters/payload.py`). Ops without an exact or well-conditioned
Triton form are refused by name with a CompileError (never approximated silently).
fp16/bf16 math functions are evaluated in fp32 and rounded back (Triton's math
functions take fp32), as numpy does for ml_dtypes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from xdsl.dialects import arith, cf, math, tensor
from xdsl.dialects.builtin import FloatAttr, IntegerAttr, IntegerType
from xdsl.ir import Attribute, Block, Operation, SSAValue

from rdu_compiler.dialects import rdu
from rdu_compiler.dtypes import is_float, is_low_float, numpy_dtype
from rdu_compiler.interpreters.payload import OpKey, evaluate_op, op_key
from rdu_compiler.ir import op_name
from rdu_compiler.runtime.triton.exprs import (
    Coord,
    Writer,
    literal,
    py_literal,
    tl_dtype,
    tl_unsigned,
)
from rdu_compiler.runtime.triton.program import fail

_BIN: dict[OpKey, str] = {
    arith.AddfOp: "{a} + {b}", arith.SubfOp: "{a} - {b}", arith.MulfOp: "{a} * {b}", arith.DivfOp: "{a} / {b}",
    arith.AddiOp: "{a} + {b}", arith.SubiOp: "{a} - {b}", arith.MuliOp: "{a} * {b}",
    arith.DivSIOp: "{a} // {b}", arith.RemSIOp: "{a} % {b}", "arith.remf": "{a} % {b}",
    arith.AndIOp: "{a} & {b}", arith.OrIOp: "{a} | {b}", arith.XOrIOp: "{a} ^ {b}",
    arith.ShLIOp: "{a} << {b}", arith.ShRSIOp: "{a} >> {b}",
    arith.MaxSIOp: "tl.maximum({a}, {b})", arith.MinSIOp: "tl.minimum({a}, {b})",
    arith.MaximumfOp: "tl.maximum({a}, {b}, propagate_nan=tl.PropagateNan.ALL)",
    arith.MinimumfOp: "tl.minimum({a}, {b}, propagate_nan=tl.PropagateNan.ALL)",
    arith.MaxnumfOp: "tl.maximum({a}, {b})", arith.MinnumfOp: "tl.minimum({a}, {b})",
    arith.FloorDivSIOp: "_floordiv({a}, {b})", arith.CeilDivSIOp: "_ceildiv({a}, {b})",
    math.PowFOp: "_powf({a}, {b})", math.CopySignOp: "_copysign({a}, {b})",
}
#: Integer divisions and remainders, checked for a zero divisor (`_check_division`).
_SIGNED_DIVISIONS: frozenset[OpKey] = frozenset({arith.DivSIOp, arith.RemSIOp, arith.FloorDivSIOp, arith.CeilDivSIOp})
_DIVISIONS: frozenset[OpKey] = _SIGNED_DIVISIONS | {arith.DivUIOp, arith.RemUIOp}
_UNSIGNED_BIN: dict[OpKey, str] = {
    arith.DivUIOp: "{a} // {b}", arith.RemUIOp: "{a} % {b}", arith.ShRUIOp: "{a} >> {b}",
    arith.MaxUIOp: "tl.maximum({a}, {b})", arith.MinUIOp: "tl.minimum({a}, {b})",
}
#: Float math functions: Triton expression of `x` (fp32 / fp64).
_MATH: dict[OpKey, str] = {
    math.ExpOp: "tl.exp({x})", math.Exp2Op: "tl.exp2({x})", math.LogOp: "tl.log({x})",
    math.Log2Op: "tl.log2({x})", math.Log10Op: "tl.log2({x}) * 0.30102999566398120",
    math.SqrtOp: "tl.sqrt({x})", math.RsqrtOp: "tl.rsqrt({x})", math.AbsFOp: "tl.abs({x})",
    math.ErfOp: "tl.erf({x})", math.SinOp: "tl.sin({x})", math.CosOp: "tl.cos({x})",
    math.TanOp: "tl.sin({x}) / tl.cos({x})", math.FloorOp: "tl.floor({x})", math.CeilOp: "tl.ceil({x})",
    math.TanhOp: "_tanh({x})", math.ExpM1Op: "_expm1({x})", math.Log1pOp: "_log1p({x})",
    "math.sigmoid": "_sigmoid({x})", math.SinhOp: "_sinh({x})", math.CoshOp: "_cosh({x})",
    math.TruncOp: "_trunc({x})", math.RoundEvenOp: "_roundeven({x})", math.RoundOp: "_round({x})",
}
_CASTS: set[OpKey] = {
    arith.ExtFOp, arith.TruncFOp, arith.SIToFPOp, arith.UIToFPOp, arith.FPToSIOp, arith.FPToUIOp,
    arith.IndexCastOp, "arith.index_castui", arith.ExtSIOp, arith.ExtUIOp, arith.TruncIOp, arith.BitcastOp,
}
#: Payload ops with an emulator rule (`interpreters.payload.PAYLOAD_OPS`) that the Triton
#: generator refuses, and why. Every other op of that table has a rule here
#: (testsuite/unit/test_op_table.py).
_NO_LIBDEVICE = "Triton has no such function without libdevice (which its interpreter lacks) and the formulas lose precision"
REFUSED: dict[OpKey, str] = {
    math.AsinOp: _NO_LIBDEVICE, math.AcosOp: _NO_LIBDEVICE, math.AtanOp: _NO_LIBDEVICE,
    math.Atan2Op: _NO_LIBDEVICE, math.AsinhOp: _NO_LIBDEVICE, math.AcoshOp: _NO_LIBDEVICE,
    math.AtanhOp: _NO_LIBDEVICE, math.CbrtOp: _NO_LIBDEVICE, "math.erfc": _NO_LIBDEVICE,
}
#: Ops with a rule of their own in `PayloadEmitter._emit`.
_SPECIAL: set[OpKey] = {
    arith.NegfOp, math.AbsIOp, arith.ConstantOp, arith.CmpfOp, arith.CmpiOp, arith.SelectOp, math.FPowIOp,
    rdu.IndexOp, tensor.ExtractOp, cf.AssertOp,
}
# arith.cmpf predicates in MLIR's enum order
_CMPF = [
    "({a} != {a}) & ({a} == {a})", "{a} == {b}", "{a} > {b}", "{a} >= {b}", "{a} < {b}",
    "{a} <= {b}", "({a} != {b}) & ({a} == {a}) & ({b} == {b})", "({a} == {a}) & ({b} == {b})",
    "({a} == {b}) | ({a} != {a}) | ({b} != {b})", "~({a} <= {b})", "~({a} < {b})", "~({a} >= {b})",
    "~({a} > {b})", "{a} != {b}", "({a} != {a}) | ({b} != {b})", "({a} == {a}) | ({a} != {a})",
]
_CMPI = ["{a} == {b}", "{a} != {b}", "{a} < {b}", "{a} <= {b}", "{a} > {b}", "{a} >= {b}",
         "{a} < {b}", "{a} <= {b}", "{a} > {b}", "{a} >= {b}"]


@dataclass
class Capture:
    """A whole tensor read at computed indices: its kernel pointer name, shape and strides."""

    ptr: str
    shape: tuple[int, ...]
    strides: tuple[int, ...]
    elt: Attribute


@dataclass
class PayloadContext:
    """What a payload sees of the block it runs on.

    `arg(i)` returns the expression of block argument i (an operand element, loaded on
    first use); `dims` the loop indices; `mask` the lanes that are real points (None
    when all are); `captures` the gathered tables.
    """

    label: str
    writer: Writer
    dims: list[Coord]
    arg: Callable[[int], str]
    mask: str | None
    captures: list[Capture] = field(default_factory=list)
    const_arg: Callable[[int], Any] | None = None  # compile-time value of block arg i, or None
    #: `check(cond, message, op)`: a runtime check (`Builder.check`): lanes where `cond` is
    #: false (within `mask`) fail the run with `message`, naming payload op `op`
    check: Callable[[str, str, str], None] | None = None


class PayloadEmitter:
    """Emit the payload of `block` (minus `skip`) as Triton lines; values by SSA value."""

    def __init__(self, ctx: PayloadContext, block: Block, skip: set[Operation] | None = None):
        self.ctx = ctx
        self.block = block
        self.skip = skip or set()
        self.names: dict[SSAValue, str] = {}
        self.consts: dict[SSAValue, Any] = {}

    def value(self, v: SSAValue) -> str:
        if v in self.names:
            return self.names[v]
        if v in self.block.args:
            i = self.block.args.index(v)
            const = self.ctx.const_arg(i) if self.ctx.const_arg else None
            if const is not None:
                self.consts[v] = const
                self.names[v] = literal(const, v.type)
                return self.names[v]
            name = self.ctx.arg(i)
            self.names[v] = name
            return name
        raise fail(f"kernel '{self.ctx.label}': payload value {v} used before it is defined")

    def run(self) -> list[str]:
        """Emit every op; return the yielded expressions."""
        yielded: list[str] = []
        for op in self.block.ops:
            name = op_name(op)
            if isinstance(op, rdu.YieldOp):
                yielded = [self.value(v) if not self._skipped(v) else "" for v in op.operands]
                continue
            if op in self.skip:
                continue
            self._emit(op, name)
        return yielded

    def _skipped(self, v: SSAValue) -> bool:
        return isinstance(v.owner, Operation) and v.owner in self.skip

    def _bind(self, op: Operation, expr: str) -> None:
        self.names[op.results[0]] = self.ctx.writer.let(expr)

    def _operands(self, op: Operation) -> list[str]:
        vals = [self.value(v) for v in op.operands]
        if op.operands and all(v in self.consts for v in op.operands):
            # both sides compile-time: keep the arithmetic in the element type, not Python's
            vals[0] = self._typed(op.operands[0])
        return vals

    def _typed(self, v: SSAValue) -> str:
        """A compile-time operand as a typed Triton scalar (not a Python number)."""
        c = self.consts[v]
        t = v.type
        if isinstance(t, IntegerType) and t.width.data == 1:
            return f"tl.full([], {bool(c)!r}, tl.int1)"
        return f"tl.full([], {py_literal(float(c) if is_float(t) else int(c))}, {tl_dtype(t)})"

    def _fold(self, op: Operation, name: str) -> bool:
        """Evaluate an op whose operands are all compile-time constants (the emulator's rules:
        `interpreters.payload.evaluate_op`)."""
        import numpy as np

        if not op.operands or len(op.results) != 1:
            return False
        for v in op.operands:
            if v in self.block.args and v not in self.names:
                self.value(v)  # registers a compile-time block argument
        if not all(v in self.consts for v in op.operands):
            return False
        try:
            args = [np.asarray(self.consts[v], dtype=numpy_dtype(v.type)) for v in op.operands]
            dtype = numpy_dtype(op.results[0].type)
            with np.errstate(all="ignore"):
                out = evaluate_op(op, args)
        except Exception:  # noqa: BLE001 - not foldable (no rule, or refused on these values): emit it instead
            return False
        value = np.asarray(out).astype(dtype)[()].item()
        self.consts[op.results[0]] = value
        self.names[op.results[0]] = literal(value, op.results[0].type)
        return True

    def _emit(self, op: Operation, name: str) -> None:
        label = self.ctx.label
        if self._fold(op, name):
            return
        if isinstance(op, arith.ConstantOp):
            attr = op.properties.get("value")
            if isinstance(attr, FloatAttr | IntegerAttr):
                value: Any = attr.value.data
                t = op.results[0].type
                if isinstance(t, IntegerType) and t.width.data == 1:
                    value = bool(value)
                self.consts[op.results[0]] = value
                self.names[op.results[0]] = literal(value, t)
                return
            raise fail(f"kernel '{label}': payload constant {attr} is not a scalar")
        key = op_key(op)
        if key in _DIVISIONS:
            self._check_division(op, name)
        if key in _BIN:
            a, b = self._operands(op)
            t = op.results[0].type
            if is_low_float(t):
                # fp16/bf16 arithmetic as fp32 rounded once to the type (exact products; what
                # GPUs do; Triton's interpreter has no bf16 arithmetic of its own)
                expr = _BIN[key].format(a=f"{a}.to(tl.float32)", b=f"{b}.to(tl.float32)")
                self._bind(op, f"({expr}).to({tl_dtype(t)})")
                return
            self._bind(op, _BIN[key].format(a=a, b=b))
            return
        if key in _UNSIGNED_BIN:
            a, b = self._operands(op)
            t = op.results[0].type
            u, s = tl_unsigned(t), tl_dtype(t)
            expr = _UNSIGNED_BIN[key].format(a=f"{a}.to({u}, bitcast=True)", b=f"{b}.to({u}, bitcast=True)")
            self._bind(op, f"({expr}).to({s}, bitcast=True)")
            return
        if key in _MATH:
            (x,) = self._operands(op)
            t = op.results[0].type
            if not is_float(t):
                raise fail(f"kernel '{label}': payload op '{name}' on {t} has no Triton rule")
            if is_low_float(t):
                self._bind(op, "(" + _MATH[key].format(x=f"{x}.to(tl.float32)") + f").to({tl_dtype(t)})")
            else:
                self._bind(op, _MATH[key].format(x=x))
            return
        if isinstance(op, arith.NegfOp):
            (x,) = self._operands(op)
            t = op.results[0].type
            self._bind(op, f"(-{x}.to(tl.float32)).to({tl_dtype(t)})" if is_low_float(t) else f"-{x}")
            return
        if isinstance(op, math.AbsIOp):
            (x,) = self._operands(op)
            self._bind(op, f"tl.abs({x})")
            return
        if key in _CASTS:
            self._cast(op, name)
            return
        if isinstance(op, arith.CmpfOp | arith.CmpiOp):
            pred = op.properties["predicate"]
            assert isinstance(pred, IntegerAttr)
            p = pred.value.data
            a, b = self._operands(op)
            if isinstance(op, arith.CmpfOp) and is_low_float(op.operands[0].type):
                a, b = f"{a}.to(tl.float32)", f"{b}.to(tl.float32)"
            if isinstance(op, arith.CmpiOp) and p >= 6:  # unsigned predicates
                u = tl_unsigned(op.operands[0].type)
                a, b = f"{a}.to({u}, bitcast=True)", f"{b}.to({u}, bitcast=True)"
            table = _CMPF if isinstance(op, arith.CmpfOp) else _CMPI
            self._bind(op, table[p].format(a=a, b=b))
            return
        if isinstance(op, arith.SelectOp):
            c, a, b = (self.value(v) for v in op.operands)
            if all(v in self.consts for v in op.operands[1:]):
                a = self._typed(op.operands[1])
            self._bind(op, f"tl.where({c}, {a}, {b})")
            return
        if isinstance(op, math.FPowIOp):
            self._fpowi(op)
            return
        if isinstance(op, rdu.IndexOp):
            dim = op.properties["dim"]
            assert isinstance(dim, IntegerAttr)
            d = self.ctx.dims[dim.value.data]
            if d.extent <= 1 and d.expr == "0":
                self.consts[op.results[0]] = 0  # a loop of size 1
                self.names[op.results[0]] = literal(0, op.results[0].type)
            elif d.expr.isidentifier():
                self.names[op.results[0]] = d.expr
            else:
                self.names[op.results[0]] = self.ctx.writer.let(d.expr, "i", share=True)
            return
        if isinstance(op, tensor.ExtractOp):
            self._extract(op)
            return
        if isinstance(op, cf.AssertOp):
            msg = op.properties.get("msg") or op.attributes.get("msg")
            text = str(getattr(msg, "data", "assertion failed")).replace('"', "'")
            self._check(self.value(op.operands[0]), f"kernel '{label}': runtime check failed for these inputs: {text}", "cf.assert")
            return
        reason = REFUSED.get(key, "")
        raise fail(
            f"kernel '{label}': payload op '{name}' has no Triton rule{' (' + reason + ')' if reason else ''}; "
            "the Triton generator refuses it rather than change the numerics"
        )

    def _check(self, cond: str, message: str, op: str) -> None:
        if self.ctx.check is None:
            raise fail(f"{message.split(':')[0]}: a runtime check outside a kernel builder")
        self.ctx.check(cond, message, op)

    def _check_division(self, op: Operation, name: str) -> None:
        """An integer division or remainder by zero (and, signed, MIN / -1) is undefined in
        MLIR and on a GPU, and eager PyTorch raises: a runtime check, as the emulator's
        `_checked_division` refuses the run."""
        a, b = (self.value(v) for v in op.operands)
        t = op.operands[1].type
        if not isinstance(t, IntegerType):
            return
        label = self.ctx.label
        self._check(f"{b} != 0", f"kernel '{label}': integer division by zero ('{name}'); eager PyTorch raises "
                    "ZeroDivisionError and the result is undefined on a GPU, so the run is refused. "
                    "Pass nonzero divisors (or divide in floating point).", name)
        if op_key(op) in _SIGNED_DIVISIONS:
            low = -(2 ** (t.width.data - 1))
            self._check(f"~(({a} == {low}) & ({b} == -1))",
                        f"kernel '{label}': integer division overflow ('{name}' of {low} by -1); the result is "
                        "undefined, so the run is refused. Keep dividends above the type's minimum.", name)

    def _cast(self, op: Operation, name: str) -> None:
        src_v = op.operands[0]
        src_t, dst_t = src_v.type, op.results[0].type
        if src_v in self.consts:  # fold casts of constants
            c = self.consts[src_v]
            if is_float(dst_t):
                value: Any = float(c)
                if str(dst_t) in ("f32", "f16", "bf16"):
                    import numpy as np

                    value = float(np.asarray(value).astype(numpy_dtype(dst_t)))
            elif isinstance(dst_t, IntegerType) and dst_t.width.data == 1:
                value = bool(c)
            elif isinstance(c, float):
                value = int(c)  # fptosi truncates toward zero
            else:
                value = int(c)
                if isinstance(dst_t, IntegerType) and isinstance(op, arith.TruncIOp):
                    w = dst_t.width.data
                    value = (value + (1 << (w - 1))) % (1 << w) - (1 << (w - 1))
            self.consts[op.results[0]] = value
            self.names[op.results[0]] = literal(value, dst_t)
            return
        x = self.value(src_v)
        dst = tl_dtype(dst_t)
        if isinstance(op, arith.BitcastOp):
            self._bind(op, f"{x}.to({dst}, bitcast=True)")
            return
        if name in ("arith.extui", "arith.uitofp", "arith.index_castui") and not (
            isinstance(src_t, IntegerType) and src_t.width.data == 1
        ):
            x = f"{x}.to({tl_unsigned(src_t)}, bitcast=True)"
        if isinstance(op, arith.FPToUIOp):
            self._bind(op, f"{x}.to({tl_unsigned(dst_t)}).to({dst}, bitcast=True)")
            return
        self._bind(op, f"{x}.to({dst})")

    def _fpowi(self, op: Operation) -> None:
        base, exp = op.operands
        x = self.value(base)
        t = op.results[0].type
        if exp in self.consts and 0 <= int(self.consts[exp]) <= 4:
            n = int(self.consts[exp])
            if n == 0:
                self._bind(op, f"tl.full([], 1.0, {tl_dtype(t)})")
                return
            expr = x
            for _ in range(n - 1):
                expr = f"({expr}) * {x}"  # exact repeated products, as the emulator and torch
            self._bind(op, expr)
            return
        e = self.value(exp)
        xf = f"{x}.to(tl.float32)" if is_low_float(t) else x
        expr = f"_powf({xf}, {e}.to({'tl.float32' if is_low_float(t) else tl_dtype(t)}))"
        self._bind(op, f"({expr}).to({tl_dtype(t)})" if is_low_float(t) else expr)

    def _extract(self, op: Operation) -> None:
        table, *idx = op.operands
        cap = None
        if table in self.block.args:
            i = self.block.args.index(table)
            cap = self.ctx.arg(i)
        if not isinstance(cap, Capture):
            raise fail(f"kernel '{self.ctx.label}': tensor.extract from a value that is not a captured tensor")
        if len(idx) != len(cap.shape):
            raise fail(f"kernel '{self.ctx.label}': tensor.extract with {len(idx)} indices into a rank-{len(cap.shape)} tensor")
        parts, bounds = [], []
        for v, st, n in zip(idx, cap.strides, cap.shape, strict=True):
            x = self.value(v)
            if v in self.consts:
                c = int(self.consts[v])
                if not 0 <= c < n:
                    raise fail(f"kernel '{self.ctx.label}': gather index {c} out of bounds for size {n}")
                if c:
                    parts.append(str(c * st))
                continue
            parts.append(x if st == 1 else f"{x} * {st}")
            bounds.append(f"({x} >= 0) & ({x} < {n})")
        offset = " + ".join(parts) if parts else "0"
        mask_terms = ([self.ctx.mask] if self.ctx.mask else []) + bounds
        mask = " & ".join(f"({m})" for m in mask_terms)
        if bounds:
            # an out-of-range index is a program error (the emulator raises): the run is
            # refused, and the masked load never reads outside the table
            self._check(" & ".join(bounds), f"kernel '{self.ctx.label}': gather index out of bounds (the emulator and "
                        "eager refuse it too). Pass indices within the table size.", "tensor.extract")
        other = literal(0, cap.elt) if not str(cap.elt) == "f32" else "0.0"
        load = f"tl.load({cap.ptr} + ({offset})" + (f", mask={mask}, other={other})" if mask else ")")
        self._bind(op, load)


def triton_ops() -> frozenset[OpKey]:
    """The payload ops this generator has a rule for (`PayloadEmitter`)."""
    return frozenset(_BIN) | frozenset(_UNSIGNED_BIN) | frozenset(_MATH) | frozenset(_CASTS) | frozenset(_SPECIAL)


def is_capture(x: Any) -> bool:
    return isinstance(x, Capture)
