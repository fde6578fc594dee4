"""Evaluate a kernel payload on whole tiles at once with numpy.

A payload is a block of scalar ops (arith, math, rdu.index, tensor.extract, cf.assert).
`CompiledPayload` turns it once into a list of numpy steps; `run` then evaluates those
steps on arrays that broadcast over the tile's iteration domain, so one call computes a
whole tile. An op without a numpy rule is refused by name (never guessed).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ml_dtypes
import numpy as np
import scipy.special
from xdsl.dialects.builtin import (
    BFloat16Type,
    Float16Type,
    Float32Type,
    Float64Type,
    FloatAttr,
    IndexType,
    IntegerAttr,
    IntegerType,
)
from xdsl.ir import Attribute, Block, Operation, SSAValue

from rdu_compiler.errors import EmulatorError
from rdu_compiler.ir import op_name


def numpy_dtype(t: Attribute) -> np.dtype[Any]:
    """The numpy dtype of an MLIR element type (bf16 through ml_dtypes).

    Raises:
        EmulatorError: an element type the emulator has no numpy equivalent for.
    """
    if isinstance(t, Float32Type):
        return np.dtype(np.float32)
    if isinstance(t, Float64Type):
        return np.dtype(np.float64)
    if isinstance(t, Float16Type):
        return np.dtype(np.float16)
    if isinstance(t, BFloat16Type):
        return np.dtype(ml_dtypes.bfloat16)
    if isinstance(t, IndexType):
        return np.dtype(np.int64)
    if isinstance(t, IntegerType):
        width = t.width.data
        if width == 1:
            return np.dtype(np.bool_)
        return np.dtype({8: np.int8, 16: np.int16, 32: np.int32, 64: np.int64}[width])
    raise EmulatorError(f"element type {t} is not supported by the emulator")


def _round_half_away(x: Any) -> Any:
    """math.round: to nearest, ties away from zero. Not trunc(x + 0.5): that sum rounds in
    the float type (0.49999997 -> 1, 2^23 + 1 -> 2^23 + 2 in f32); x - trunc(x) is exact."""
    t = np.trunc(x)
    with np.errstate(invalid="ignore"):  # inf - inf: the comparison is false, t (inf) is kept
        return np.where(np.abs(x - t) >= 0.5, t + np.sign(x), t).astype(np.asarray(x).dtype)


def _divsi(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    q = np.floor_divide(a, b)
    fix = (np.remainder(a, b) != 0) & ((a < 0) != (b < 0))
    return q + fix


def _ceildivsi(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return -np.floor_divide(-a, b)


def _as_unsigned(x: Any) -> np.ndarray:
    """The same bits read as an unsigned integer (MLIR integers are signless)."""
    a = np.asarray(x)
    if a.dtype == np.bool_ or a.dtype.kind == "u":
        return a
    return a.view(np.dtype(f"u{a.dtype.itemsize}"))


def _unsigned(fn: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """`fn` on the operands' unsigned reading, result back in the signless (signed) dtype."""

    def apply(a: Any, b: Any) -> Any:
        a, b = np.broadcast_arrays(np.asarray(a), np.asarray(b))
        out = np.asarray(fn(_as_unsigned(a.copy()), _as_unsigned(b.copy())))
        return out.view(a.dtype) if out.dtype.itemsize == a.dtype.itemsize and a.dtype != np.bool_ else out

    return apply


_BINARY: dict[str, Callable[[Any, Any], Any]] = {
    "arith.addf": np.add, "arith.subf": np.subtract, "arith.mulf": np.multiply,
    "arith.divf": np.divide, "arith.maximumf": np.maximum, "arith.minimumf": np.minimum,
    "arith.maxnumf": np.fmax, "arith.minnumf": np.fmin, "arith.remf": np.fmod,
    "math.powf": np.power, "math.atan2": np.arctan2, "math.copysign": np.copysign,
    "arith.addi": np.add, "arith.subi": np.subtract, "arith.muli": np.multiply,
    "arith.divsi": _divsi, "arith.divui": _unsigned(np.floor_divide), "arith.remsi": np.fmod,
    "arith.remui": _unsigned(np.remainder), "arith.floordivsi": np.floor_divide, "arith.ceildivsi": _ceildivsi,
    "arith.andi": np.bitwise_and, "arith.ori": np.bitwise_or, "arith.xori": np.bitwise_xor,
    "arith.shli": np.left_shift, "arith.shrsi": np.right_shift, "arith.shrui": _unsigned(np.right_shift),
    "arith.maxsi": np.maximum, "arith.minsi": np.minimum, "arith.maxui": _unsigned(np.maximum),
    "arith.minui": _unsigned(np.minimum),
}

_UNARY: dict[str, Callable[[Any], Any]] = {
    "arith.negf": np.negative, "math.exp": np.exp, "math.exp2": np.exp2, "math.expm1": np.expm1,
    "math.log": np.log, "math.log2": np.log2, "math.log10": np.log10, "math.log1p": np.log1p,
    "math.tanh": np.tanh, "math.sqrt": np.sqrt, "math.rsqrt": lambda x: np.reciprocal(np.sqrt(x)),
    "math.absf": np.abs, "math.absi": np.abs, "math.erf": scipy.special.erf, "math.sin": np.sin,
    "math.cos": np.cos, "math.tan": np.tan, "math.atan": np.arctan, "math.ceil": np.ceil,
    "math.floor": np.floor, "math.roundeven": np.rint, "math.round": lambda x: _round_half_away(x),
    "math.trunc": np.trunc, "math.sinh": np.sinh, "math.cosh": np.cosh, "math.asin": np.arcsin,
    "math.acos": np.arccos, "math.sigmoid": scipy.special.expit, "math.atanh": np.arctanh,
    "math.asinh": np.arcsinh, "math.acosh": np.arccosh, "math.cbrt": np.cbrt,
    "math.erfc": scipy.special.erfc,
}

#: Integer divisions and remainders: MLIR leaves a zero divisor (and, signed, MIN / -1)
#: undefined; eager PyTorch raises. The emulator refuses both (`_checked_division`).
_INT_DIVISIONS = {
    "arith.divsi": True, "arith.remsi": True, "arith.floordivsi": True, "arith.ceildivsi": True,
    "arith.divui": False, "arith.remui": False,
}

_CASTS = {
    "arith.extf", "arith.truncf", "arith.sitofp", "arith.uitofp", "arith.fptosi", "arith.fptoui",
    "arith.index_cast", "arith.index_castui", "arith.extsi", "arith.extui", "arith.trunci",
}

# arith.cmpf / cmpi predicates, in MLIR's enum order.
_CMPF = [
    lambda a, b: np.zeros(np.broadcast(a, b).shape, bool), np.equal, np.greater, np.greater_equal,
    np.less, np.less_equal, lambda a, b: (a != b) & ~np.isnan(a) & ~np.isnan(b),
    lambda a, b: ~np.isnan(a) & ~np.isnan(b), lambda a, b: (a == b) | np.isnan(a) | np.isnan(b),
    lambda a, b: ~(a <= b), lambda a, b: ~(a < b), lambda a, b: ~(a >= b), lambda a, b: ~(a > b),
    np.not_equal, lambda a, b: np.isnan(a) | np.isnan(b), lambda a, b: np.ones(np.broadcast(a, b).shape, bool),
]
_CMPI = [
    np.equal, np.not_equal, np.less, np.less_equal, np.greater, np.greater_equal,
    np.less, np.less_equal, np.greater, np.greater_equal,
]


class TileContext:
    """What a payload sees of the tile it runs on: index grids and gather accounting."""

    def __init__(self, starts: tuple[int, ...], sizes: tuple[int, ...]):
        self.starts = starts
        self.sizes = sizes
        self.points = int(np.prod(sizes)) if sizes else 1
        self.gathered_bytes = 0

    def index_grid(self, dim: int) -> np.ndarray:
        shape = [1] * len(self.sizes)
        shape[dim] = self.sizes[dim]
        start = self.starts[dim]
        return np.arange(start, start + self.sizes[dim], dtype=np.int64).reshape(shape)


Step = Callable[[list[Any], TileContext], None]


class CompiledPayload:
    """A payload block compiled to numpy steps.

    `run(args, ctx)` takes one array per block argument (broadcastable to the tile's
    domain shape; captures are whole tensors) and returns the value of every slot; the
    yielded values are at `yield_slots`. Ops listed in `skip` are not evaluated (the
    accumulator combiners of reductions, applied by the kernel executor instead).

    Raises:
        EmulatorError: at construction, for a payload op with no numpy rule.
    """

    def __init__(self, block: Block, kernel: str, skip: set[Operation] | None = None):
        self.kernel = kernel
        self.slots: dict[SSAValue, int] = {a: i for i, a in enumerate(block.args)}
        self.n_args = len(block.args)
        self.steps: list[Step] = []
        self.yield_slots: list[int] = []
        for op in block.ops:
            name = op_name(op)
            if name == "rdu.yield":
                self.yield_slots = [self.slots.get(v, -1) for v in op.operands]
                continue
            if skip and op in skip:
                continue
            for r in op.results:
                self.slots[r] = len(self.slots)
            self.steps.append(self._compile(op, name))

    def run(self, args: list[Any], ctx: TileContext) -> list[Any]:
        vals: list[Any] = list(args) + [None] * (len(self.slots) - self.n_args)
        for step in self.steps:
            step(vals, ctx)
        return vals

    def _compile(self, op: Operation, name: str) -> Step:
        ins = [self.slots[v] for v in op.operands]
        out = self.slots[op.results[0]] if op.results else -1
        if name in _INT_DIVISIONS and _is_integer(op.results[0].type):
            return self._checked_division(name, ins, out)
        if name in _BINARY:
            fn2 = _BINARY[name]
            a, b = ins

            def binary(vals: list[Any], ctx: TileContext) -> None:
                vals[out] = fn2(vals[a], vals[b])

            return binary
        if name in _UNARY:
            fn1 = _UNARY[name]
            (a,) = ins

            def unary(vals: list[Any], ctx: TileContext) -> None:
                vals[out] = fn1(vals[a])

            return unary
        if name in _CASTS:
            return self._cast(op, ins[0], out)
        return self._special(op, name, ins, out)

    def _checked_division(self, name: str, ins: list[int], out: int) -> Step:
        fn2 = _BINARY[name]
        signed = _INT_DIVISIONS[name]
        a, b = ins

        def division(vals: list[Any], ctx: TileContext) -> None:
            x, y = np.asarray(vals[a]), np.asarray(vals[b])
            if np.any(y == 0):
                raise _payload_error(name, 
                    f"kernel '{self.kernel}': integer division by zero ('{name}'); eager PyTorch raises "
                    "ZeroDivisionError and the result is undefined on the RDU, so the emulator refuses the run. "
                    "Pass nonzero divisors (or divide in floating point)."
                )
            if signed and y.dtype.kind == "i":
                low = np.iinfo(y.dtype).min
                if np.any((x == low) & (y == -1)):
                    raise _payload_error(name, 
                        f"kernel '{self.kernel}': integer division overflow ('{name}' of {low} by -1, which "
                        f"does not fit in {y.dtype.name}); the result is undefined (eager PyTorch crashes with "
                        "SIGFPE), so the emulator refuses the run. Keep dividends above the type's minimum."
                    )
            vals[out] = fn2(x, y)

        return division

    def _cast(self, op: Operation, a: int, out: int) -> Step:
        dtype = numpy_dtype(op.results[0].type)
        name = op_name(op)
        unsigned_source = name in ("arith.extui", "arith.uitofp", "arith.index_castui")
        to_int = name in ("arith.fptosi", "arith.fptoui")

        def cast(vals: list[Any], ctx: TileContext) -> None:
            x = np.asarray(vals[a])
            if to_int:
                _check_float_to_int(self.kernel, name, x, dtype)
                if dtype.kind == "i" and dtype.itemsize < 8:  # via int64: an i8 holding a uint8 wraps exactly
                    x = x.astype(np.int64)
            vals[out] = (_as_unsigned(x) if unsigned_source else x).astype(dtype)

        return cast

    def _special(self, op: Operation, name: str, ins: list[int], out: int) -> Step:
        if name == "arith.constant":
            value = _constant(op)

            def const(vals: list[Any], ctx: TileContext) -> None:
                vals[out] = value

            return const
        if name in ("arith.cmpf", "arith.cmpi"):
            pred = op.properties["predicate"]
            assert isinstance(pred, IntegerAttr)
            fn = (_CMPF if name == "arith.cmpf" else _CMPI)[pred.value.data]
            a, b = ins
            unsigned = name == "arith.cmpi" and pred.value.data >= 6

            def cmp(vals: list[Any], ctx: TileContext) -> None:
                x, y = vals[a], vals[b]
                if unsigned:
                    x, y = np.asarray(x).astype(np.uint64), np.asarray(y).astype(np.uint64)
                vals[out] = fn(x, y)

            return cmp
        if name == "arith.select":
            c, a, b = ins

            def select(vals: list[Any], ctx: TileContext) -> None:
                vals[out] = np.where(vals[c], vals[a], vals[b])

            return select
        if name == "math.fpowi":
            a, b = ins

            def fpowi(vals: list[Any], ctx: TileContext) -> None:
                x, n = vals[a], np.asarray(vals[b])
                if n.ndim == 0 and 1 <= int(n) <= 4:
                    y = x
                    for _ in range(int(n) - 1):
                        y = y * x  # exact repeated products, as torch's pow for small ints
                    vals[out] = y
                    return
                vals[out] = np.power(x, n.astype(np.asarray(x).dtype))

            return fpowi
        if name == "rdu.index":
            dim = op.properties["dim"]
            assert isinstance(dim, IntegerAttr)
            d = dim.value.data

            def index(vals: list[Any], ctx: TileContext) -> None:
                vals[out] = ctx.index_grid(d)

            return index
        if name == "tensor.extract":
            return self._extract(op, ins, out)
        if name == "cf.assert":
            return self._assert(op, ins[0])
        raise EmulatorError(
            f"kernel '{self.kernel}': payload op '{name}' has no emulator rule; "
            "refusing rather than guessing its semantics"
        )

    def _extract(self, op: Operation, ins: list[int], out: int) -> Step:
        t, *idx = ins
        itemsize = numpy_dtype(op.results[0].type).itemsize

        def extract(vals: list[Any], ctx: TileContext) -> None:
            table = vals[t]
            indices = np.broadcast_arrays(*[np.asarray(vals[i]) for i in idx])
            for axis, ix in enumerate(indices):
                if ix.size and (ix.min() < 0 or ix.max() >= table.shape[axis]):
                    raise EmulatorError(
                        f"kernel '{self.kernel}': gather index out of bounds on axis {axis} "
                        f"(indices {int(ix.min())}..{int(ix.max())}, size {table.shape[axis]}); the emulator "
                        "refuses the run. Pass indices within the table size."
                    )
            vals[out] = table[tuple(indices)]
            ctx.gathered_bytes += ctx.points * itemsize

        return extract

    def _assert(self, op: Operation, cond: int) -> Step:
        msg = op.properties.get("msg") or op.attributes.get("msg")
        text = getattr(msg, "data", "assertion failed")

        def check(vals: list[Any], ctx: TileContext) -> None:
            if not np.all(vals[cond]):
                raise EmulatorError(
                    f"kernel '{self.kernel}': runtime check failed for these inputs: {text}; the "
                    "emulator refuses the run. Pass inputs that satisfy the check (e.g. indices "
                    "within the table size)."
                )

        return check


def compare_fn(op: Operation) -> Callable[[Any, Any], Any]:
    """The numpy function of an `arith.cmpf` / `arith.cmpi` op (its predicate)."""
    pred = op.properties["predicate"]
    assert isinstance(pred, IntegerAttr)
    p = pred.value.data
    if op_name(op) == "arith.cmpf":
        return _CMPF[p]
    fn = _CMPI[p]
    if p >= 6:
        return lambda a, b: fn(_as_unsigned(np.asarray(a)), _as_unsigned(np.asarray(b)))
    return fn


def evaluate_op(op: Operation, args: list[Any]) -> Any:
    """Evaluate one scalar payload op (arith/math) on numpy values; its result.

    Used to fold function-level scalar arithmetic on constants with exactly the emulator's
    semantics.

    Raises:
        EmulatorError: an op with no numpy rule.
    """
    payload = CompiledPayload.__new__(CompiledPayload)
    payload.kernel = "constant folding"
    payload.slots = {}
    for v in op.operands:
        payload.slots.setdefault(v, len(payload.slots))
    payload.n_args = len(payload.slots)
    for r in op.results:
        payload.slots[r] = len(payload.slots)
    payload.steps, payload.yield_slots = [], []
    step = payload._compile(op, op_name(op))
    vals: list[Any] = [None] * len(payload.slots)
    for v, a in zip(op.operands, args, strict=True):
        vals[payload.slots[v]] = a
    step(vals, TileContext((), ()))
    return vals[payload.slots[op.results[0]]]


def _payload_error(op: str, message: str) -> EmulatorError:
    """An EmulatorError raised by payload op `op` (kept as `.payload_op`, to locate its model line)."""
    err = EmulatorError(message)
    err.payload_op = op  # type: ignore[attr-defined]
    return err


def _is_integer(t: Attribute) -> bool:
    return isinstance(t, IntegerType | IndexType)


def _check_float_to_int(kernel: str, name: str, x: np.ndarray, dtype: np.dtype[Any]) -> None:
    """Refuse a float-to-integer cast whose result MLIR leaves undefined (poison): NaN, inf, or
    a value whose truncation is out of the integer type's range (numpy would return an
    arbitrary number, eager PyTorch an implementation-defined one)."""
    if dtype == np.bool_:
        return
    info = np.iinfo(dtype if name == "arith.fptosi" else np.dtype(f"u{dtype.itemsize}"))
    low, high = float(info.min), float(info.max) + 1.0  # powers of two: exact in f64
    if name == "arith.fptosi" and dtype == np.int8:
        high = 256.0  # torch-mlir casts to uint8 (stored as signless i8) with fptosi too
    t = np.trunc(x.astype(np.float64))
    bad = ~np.isfinite(t) | (t < low) | (t >= high)
    if np.any(bad):
        first = float(x[bad].flat[0]) if x.ndim else float(x)
        raise _payload_error(name, 
            f"kernel '{kernel}': '{name}' of {first} to {dtype.name}: NaN, inf or a value out of the integer "
            "range has no defined result (eager PyTorch returns an arbitrary number), so the emulator refuses "
            f"the run. Keep the values finite and within {dtype.name} before the cast (e.g. torch.nan_to_num, clamp)."
        )


def _constant(op: Operation) -> Any:
    value = op.properties.get("value")
    dtype = numpy_dtype(op.results[0].type)
    if isinstance(value, FloatAttr | IntegerAttr):
        return np.asarray(value.value.data, dtype=dtype)[()]
    raise EmulatorError(f"payload constant {value} is not a scalar")
