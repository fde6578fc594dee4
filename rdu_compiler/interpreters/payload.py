"""The semantics of payload ops, written once, on whole numpy tiles.

A payload is a block of scalar ops (arith, math, rdu.index, tensor.extract, cf.assert).
The tables below give each op's meaning, keyed by its xDSL op class (`op_key`; by name
for the few ops xDSL has no class for and parses as unregistered). `PAYLOAD_OPS` is the
set of ops with a rule: the emulator, constant folding (`evaluate_op`), the Triton
generator and its torch reference all accept exactly these (the Triton generator refuses,
by name and with the reason, the ones listed in `runtime.triton.payload.REFUSED`);
`testsuite/unit/test_op_table.py` checks every user against this set.

`CompiledPayload` is the fast path fed by the tables: it turns a block once into a list
of numpy steps; `run` then evaluates those steps on arrays that broadcast over the tile's
iteration domain, so one call computes a whole tile. Identical ops are evaluated once, and
a run of ops on one bf16 value is one table lookup (`interpreters/chains.py`). An op
without a rule is refused by name (never guessed).
"""

from __future__ import annotations

from collections.abc import Callable
from math import prod as math_prod
from typing import Any, cast

import numpy as np
import scipy.special
from xdsl.dialects import arith, cf, math, tensor
from xdsl.dialects.builtin import FloatAttr, IndexType, IntegerAttr, IntegerType, UnregisteredOp
from xdsl.ir import Attribute, Block, Operation, SSAValue

from rdu_compiler.dialects import rdu
from rdu_compiler.dtypes import numpy_dtype
from rdu_compiler.errors import EmulatorError
from rdu_compiler.interpreters import bf16, bf16_vec
from rdu_compiler.interpreters import chains as bf16_chains
from rdu_compiler.ir import op_name
from rdu_compiler.kernel.traffic import burst_round, gather_run_dim

OpKey = type[Operation] | str


def op_key(op: Operation) -> OpKey:
    """The key of `op` in the semantics tables: its class, or its name where xDSL has no
    class for it (parsed as unregistered: math.sigmoid, math.erfc, arith.remf,
    arith.index_castui)."""
    return op_name(op) if isinstance(op, UnregisteredOp) else type(op)


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


_BINARY: dict[OpKey, Callable[[Any, Any], Any]] = {
    arith.AddfOp: np.add, arith.SubfOp: np.subtract, arith.MulfOp: np.multiply,
    arith.DivfOp: np.divide, arith.MaximumfOp: np.maximum, arith.MinimumfOp: np.minimum,
    arith.MaxnumfOp: np.fmax, arith.MinnumfOp: np.fmin, "arith.remf": np.fmod,
    math.PowFOp: np.power, math.Atan2Op: np.arctan2, math.CopySignOp: np.copysign,
    arith.AddiOp: np.add, arith.SubiOp: np.subtract, arith.MuliOp: np.multiply,
    arith.DivSIOp: _divsi, arith.DivUIOp: _unsigned(np.floor_divide), arith.RemSIOp: np.fmod,
    arith.RemUIOp: _unsigned(np.remainder), arith.FloorDivSIOp: np.floor_divide, arith.CeilDivSIOp: _ceildivsi,
    arith.AndIOp: np.bitwise_and, arith.OrIOp: np.bitwise_or, arith.XOrIOp: np.bitwise_xor,
    arith.ShLIOp: np.left_shift, arith.ShRSIOp: np.right_shift, arith.ShRUIOp: _unsigned(np.right_shift),
    arith.MaxSIOp: np.maximum, arith.MinSIOp: np.minimum, arith.MaxUIOp: _unsigned(np.maximum),
    arith.MinUIOp: _unsigned(np.minimum),
}

_UNARY: dict[OpKey, Callable[[Any], Any]] = {
    arith.NegfOp: np.negative, math.ExpOp: np.exp, math.Exp2Op: np.exp2, math.ExpM1Op: np.expm1,
    math.LogOp: np.log, math.Log2Op: np.log2, math.Log10Op: np.log10, math.Log1pOp: np.log1p,
    math.TanhOp: np.tanh, math.SqrtOp: np.sqrt, math.RsqrtOp: lambda x: np.reciprocal(np.sqrt(x)),
    math.AbsFOp: np.abs, math.AbsIOp: np.abs, math.ErfOp: scipy.special.erf, math.SinOp: np.sin,
    math.CosOp: np.cos, math.TanOp: np.tan, math.AtanOp: np.arctan, math.CeilOp: np.ceil,
    math.FloorOp: np.floor, math.RoundEvenOp: np.rint, math.RoundOp: lambda x: _round_half_away(x),
    math.TruncOp: np.trunc, math.SinhOp: np.sinh, math.CoshOp: np.cosh, math.AsinOp: np.arcsin,
    math.AcosOp: np.arccos, "math.sigmoid": scipy.special.expit, math.AtanhOp: np.arctanh,
    math.AsinhOp: np.arcsinh, math.AcoshOp: np.arccosh, math.CbrtOp: np.cbrt,
    "math.erfc": scipy.special.erfc,
}

#: Integer divisions and remainders: MLIR leaves a zero divisor (and, signed, MIN / -1)
#: undefined; eager PyTorch raises. The emulator refuses both (`_checked_division`).
_INT_DIVISIONS: dict[OpKey, bool] = {
    arith.DivSIOp: True, arith.RemSIOp: True, arith.FloorDivSIOp: True, arith.CeilDivSIOp: True,
    arith.DivUIOp: False, arith.RemUIOp: False,
}

_CASTS: set[OpKey] = {
    arith.ExtFOp, arith.TruncFOp, arith.SIToFPOp, arith.UIToFPOp, arith.FPToSIOp, arith.FPToUIOp,
    arith.IndexCastOp, "arith.index_castui", arith.ExtSIOp, arith.ExtUIOp, arith.TruncIOp, arith.BitcastOp,
}

#: Ops with a rule of their own (`CompiledPayload._special`).
_SPECIAL: set[OpKey] = {
    arith.ConstantOp, arith.CmpfOp, arith.CmpiOp, arith.SelectOp, math.FPowIOp, rdu.IndexOp, tensor.ExtractOp,
    cf.AssertOp,
}

#: Every payload op with a rule (the one set all table users accept; see the module doc).
PAYLOAD_OPS: frozenset[OpKey] = frozenset(_BINARY) | frozenset(_UNARY) | frozenset(_CASTS) | frozenset(_SPECIAL)

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

    def __init__(self, starts: tuple[int, ...], sizes: tuple[int, ...], burst: int = 1,
                 split: tuple[int, int] | None = None):
        self.starts = starts
        self.sizes = sizes
        self.points = math_prod(sizes)
        self.burst = burst  # the gather tier's access granularity, bytes (1: elements)
        self.gathered_bytes = 0
        # a row gather split by rdu-tier-rows: (hot rows H, DDR burst); rows >= H are read
        # from DDR, counted in cold_gathered_bytes (gathered_bytes: the HBM rows)
        self.split = split
        self.cold_gathered_bytes = 0
        self.rows_read: tuple[int, int] = (0, 0)  # (HBM rows, DDR rows) of a split row gather

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
    `inplace`: an elementwise ufunc may write its result into an operand array the
    payload made and nothing reads afterwards (`_reusable`): the same values, fewer
    allocations.

    Raises:
        EmulatorError: at construction, for a payload op with no numpy rule.
    """

    def __init__(self, block: Block, kernel: str, skip: set[Operation] | None = None, inplace: bool = False,
                 aliases: list[int] | None = None, chains: bool = True):
        self.kernel = kernel
        self.inplace = inplace
        # block argument i reads slot aliases[i] (the kernel binds it to the same tensor and
        # access as that argument: the same values, `KernelExecutor`'s operand aliases)
        self.slots: dict[SSAValue, int] = {a: (aliases[i] if aliases else i) for i, a in enumerate(block.args)}
        self.n_args = len(block.args)
        self.steps: list[Step] = []
        self.yield_slots: list[int] = []
        self.fresh: set[int] = set()  # slots whose value is an array the payload made itself
        self.skip = skip or set()
        ops = [op for op in block.ops if not isinstance(op, rdu.YieldOp) and op not in self.skip]
        kept = self._number(ops)
        self.readers: dict[int, list[Operation]] = {}  # slot -> the evaluated ops, combiners and yield reading it
        for op in [*kept, *self.skip, block.last_op]:
            if op is None:
                continue
            for v in op.operands:
                self.readers.setdefault(self.slots.get(v, -1), []).append(op)
        term = block.last_op
        if isinstance(term, rdu.YieldOp):
            self.yield_slots = [self.slots.get(v, -1) for v in term.operands]
        chain_of, constants = bf16_chains.find_chains(self, kept, chainable) if chains else ({}, set())
        self.kept, self.constant_ops = kept, constants  # (what `interpreters/jit.py` compiles)
        const_steps: list[Step] = []
        self.chains: list[bf16_chains.BF16Chain] = []
        for op in kept:
            chain = chain_of.get(op)
            if chain is not None:
                if op is chain.ops[0]:
                    chain.steps = [self._compile(m, op_name(m)) for m in chain.ops]  # (their `fresh`: a lookup's is too)
                    self.chains.append(chain)
                    self.steps.append(chain.step)
                continue
            step = self._compile(op, op_name(op))
            (const_steps if op in constants else self.steps).append(step)
        self.steps[:0] = const_steps  # constants (and ops on them only) first: they read nothing else
        self.n_const = len(const_steps)
        if self.chains:
            consts: list[Any] = [None] * len(self.slots)
            for st in const_steps:
                st(consts, TileContext((), ()))
            for chain in self.chains:
                chain.seal(const_steps, len(self.slots), bf16_chains.structural_key(chain, self.slots, consts), TileContext((), ()))

    def _number(self, ops: list[Operation]) -> list[Operation]:
        """Give every result a slot; an op identical to an earlier one (same op, operand
        slots, properties and types; no effects) reuses its slots and is not evaluated.
        The ops to evaluate, in block order."""
        kept: list[Operation] = []
        seen: dict[tuple[Any, ...], list[int]] = {}
        for op in ops:
            key = _cse_key(op, self.slots)
            if key is not None and key in seen:
                for r, s in zip(op.results, seen[key], strict=True):
                    self.slots[r] = s
                continue
            for r in op.results:
                self.slots[r] = len(self.slots)
            if key is not None:
                seen[key] = [self.slots[r] for r in op.results]
            kept.append(op)
        return kept

    def run(self, args: list[Any], ctx: TileContext) -> list[Any]:
        vals: list[Any] = list(args) + [None] * (len(self.slots) - self.n_args)
        for step in self.steps:
            step(vals, ctx)
        return vals

    def _compile(self, op: Operation, name: str) -> Step:
        ins = [self.slots[v] for v in op.operands]
        out = self.slots[op.results[0]] if op.results else -1
        key = op_key(op)
        if key in _INT_DIVISIONS and _is_integer(op.results[0].type):
            return self._checked_division(key, name, ins, out)
        if key in _BINARY:
            fn2 = _BINARY[key]
            a, b = ins
            reuse = self._reusable(op) if isinstance(fn2, np.ufunc) else []
            if isinstance(fn2, np.ufunc):
                self.fresh.add(out)
            vec = fn2 in bf16_vec.UFUNCS and numpy_dtype(op.results[0].type) == bf16.BF16  # torch's loop, ml_dtypes' bits
            if reuse:
                first = reuse[0] == 0
                uf2 = cast(np.ufunc, fn2)

                def binary_into(vals: list[Any], ctx: TileContext) -> None:
                    x, y = vals[a], vals[b]
                    t, o = (x, y) if first else (y, x)
                    r = bf16_vec.binary(uf2, x, y) if vec else None
                    vals[out] = r if r is not None else uf2(x, y, out=t) if _fits(t, o) and _same_loop(uf2, t.dtype) else uf2(x, y)

                return binary_into

            def binary(vals: list[Any], ctx: TileContext) -> None:
                r = bf16_vec.binary(fn2, vals[a], vals[b]) if vec else None  # type: ignore[arg-type]
                vals[out] = r if r is not None else fn2(vals[a], vals[b])

            return binary
        if key in _UNARY:
            fn1 = _UNARY[key]
            (a,) = ins
            reuse = self._reusable(op) if isinstance(fn1, np.ufunc) else []
            if isinstance(fn1, np.ufunc):
                self.fresh.add(out)
            if reuse:
                uf1 = cast(np.ufunc, fn1)

                def unary_into(vals: list[Any], ctx: TileContext) -> None:
                    x = vals[a]
                    if bf16.tabled(x):
                        vals[out] = bf16.lookup(key, uf1, x)
                        return
                    vals[out] = uf1(x, out=x) if _fits(x, None) and _same_loop(uf1, x.dtype) else uf1(x)

                return unary_into

            def unary(vals: list[Any], ctx: TileContext) -> None:
                x = vals[a]
                vals[out] = bf16.lookup(key, fn1, x) if bf16.tabled(x) else fn1(x)  # the same bits, by table

            return unary
        if key in _CASTS:
            return self._cast(op, ins[0], out)
        return self._special(op, name, ins, out)

    def _reusable(self, op: Operation) -> list[int]:
        """Operand positions of `op` whose value this payload made (`fresh`) and that
        nothing reads after `op`: every use is `op`'s (not the yield, not a combiner the
        executor applies). `op` may write its result into such an operand's array (`out=`),
        which gives the same values as a new array when the ufunc's loop is the operand's
        dtype throughout (`_same_loop`) and the other operand broadcasts to it (`_fits`)."""
        out: list[int] = []
        if not self.inplace:
            return out
        for i, v in enumerate(op.operands):
            s = self.slots.get(v, -1)
            if s in self.fresh and all(u is op for u in self.readers.get(s, ())):
                out.append(i)
        return out

    def _checked_division(self, key: OpKey, name: str, ins: list[int], out: int) -> Step:
        fn2 = _BINARY[key]
        signed = _INT_DIVISIONS[key]
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
        to_int = isinstance(op, arith.FPToSIOp | arith.FPToUIOp)
        if isinstance(op, arith.BitcastOp):  # the same bits read as the result type

            def bitcast(vals: list[Any], ctx: TileContext) -> None:
                vals[out] = np.asarray(vals[a]).view(dtype)

            return bitcast

        self.fresh.add(out)  # astype copies
        rounds = isinstance(op, arith.TruncFOp) and dtype == bf16.BF16  # f32 -> bf16: `bf16_vec.to_bf16`

        def cast(vals: list[Any], ctx: TileContext) -> None:
            x = np.asarray(vals[a])
            if rounds and (r := bf16_vec.to_bf16(x)) is not None:
                vals[out] = r
                return
            if to_int:
                _check_float_to_int(self.kernel, name, x, dtype)
                if dtype.kind == "i" and dtype.itemsize < 8:  # via int64: an i8 holding a uint8 wraps exactly
                    x = x.astype(np.int64)
            vals[out] = (_as_unsigned(x) if unsigned_source else x).astype(dtype)

        return cast

    def _special(self, op: Operation, name: str, ins: list[int], out: int) -> Step:
        if isinstance(op, arith.ConstantOp):
            value = _constant(op)

            def const(vals: list[Any], ctx: TileContext) -> None:
                vals[out] = value

            return const
        if isinstance(op, arith.CmpfOp | arith.CmpiOp):
            pred = op.properties["predicate"]
            assert isinstance(pred, IntegerAttr)
            fn = (_CMPF if isinstance(op, arith.CmpfOp) else _CMPI)[pred.value.data]
            a, b = ins
            unsigned = isinstance(op, arith.CmpiOp) and pred.value.data >= 6

            def cmp(vals: list[Any], ctx: TileContext) -> None:
                x, y = vals[a], vals[b]
                if unsigned:
                    x, y = np.asarray(x).astype(np.uint64), np.asarray(y).astype(np.uint64)
                vals[out] = fn(x, y)

            return cmp
        if isinstance(op, arith.SelectOp):
            c, a, b = ins
            self.fresh.add(out)  # np.where: a new array

            def select(vals: list[Any], ctx: TileContext) -> None:
                vals[out] = np.where(vals[c], vals[a], vals[b])

            return select
        if isinstance(op, math.FPowIOp):
            a, b = ins
            inplace = self.inplace

            def powers(x: Any, k: int) -> Any:  # exact repeated products, as torch's pow for small ints
                y = x
                for j in range(k - 1):
                    y = np.multiply(y, x, out=y) if j and inplace and _fits(y, x) and _same_loop(np.multiply, y.dtype) else y * x
                return y

            def fpowi(vals: list[Any], ctx: TileContext) -> None:
                x, n = vals[a], np.asarray(vals[b])
                if n.ndim == 0 and 1 <= int(n) <= 4:
                    k = int(n)
                    vals[out] = bf16.lookup(("fpowi", k), lambda v: powers(v, k), x) if bf16.tabled(x) else powers(x, k)
                    return
                vals[out] = np.power(x, n.astype(np.asarray(x).dtype))

            return fpowi
        if isinstance(op, rdu.IndexOp):
            dim = op.properties["dim"]
            assert isinstance(dim, IntegerAttr)
            d = dim.value.data

            def index(vals: list[Any], ctx: TileContext) -> None:
                vals[out] = ctx.index_grid(d)

            return index
        if isinstance(op, tensor.ExtractOp):
            return self._extract(op, ins, out)
        if isinstance(op, cf.AssertOp):
            return self._assert(op, ins[0])
        raise EmulatorError(
            f"kernel '{self.kernel}': payload op '{name}' has no emulator rule; "
            "refusing rather than guessing its semantics"
        )

    def _extract(self, op: Operation, ins: list[int], out: int) -> Step:
        t, *idx = ins
        itemsize = numpy_dtype(op.results[0].type).itemsize
        run_dim = gather_run_dim(op) if isinstance(op, tensor.ExtractOp) else None

        def extract(vals: list[Any], ctx: TileContext) -> None:
            table = vals[t]
            indices = [np.asarray(vals[i]) for i in idx]  # indexing broadcasts them (as np.broadcast_arrays would)
            empty = not math_prod(np.broadcast(*indices).shape) if indices else False
            for axis, ix in enumerate(indices):
                if not empty and ix.size and (ix.min() < 0 or ix.max() >= table.shape[axis]):
                    raise EmulatorError(
                        f"kernel '{self.kernel}': gather index out of bounds on axis {axis} "
                        f"(indices {int(ix.min())}..{int(ix.max())}, size {table.shape[axis]}); the emulator "
                        "refuses the run. Pass indices within the table size."
                    )
            vals[out] = table[tuple(indices)]
            run = ctx.sizes[run_dim] if run_dim is not None else 1  # contiguous elements per access
            if ctx.split is None:
                ctx.gathered_bytes += ctx.points // run * burst_round(run * itemsize, ctx.burst)
                return
            hot_rows, cold_burst = ctx.split  # one access per row read (the row index is constant along run_dim)
            rows = np.broadcast_to(indices[0], ctx.sizes)
            if run_dim is not None:
                rows = np.take(rows, 0, axis=run_dim)
            cold = int(np.count_nonzero(rows >= hot_rows))
            ctx.gathered_bytes += (rows.size - cold) * burst_round(run * itemsize, ctx.burst)
            ctx.cold_gathered_bytes += cold * burst_round(run * itemsize, cold_burst)
            ctx.rows_read = (ctx.rows_read[0] + rows.size - cold, ctx.rows_read[1] + cold)

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


#: In-place evaluation (`CompiledPayload._reusable`) only for arrays of at least this many
#: elements [NF: below it the checks cost about what the allocation saves].
INPLACE_MIN = 1024

_LOOPS: dict[tuple[Any, np.dtype[Any]], bool] = {}


def _same_loop(fn: np.ufunc, dtype: np.dtype[Any]) -> bool:
    """Whether `fn` on operands of `dtype` runs its `dtype` loop and returns `dtype` (so
    `out=` an array of `dtype` changes no value: no cast in or out)."""
    key = (fn, dtype)
    same = _LOOPS.get(key)
    if same is None:
        try:
            same = all(d == dtype for d in fn.resolve_dtypes((dtype,) * fn.nin + (None,)))
        except (TypeError, ValueError, np.exceptions.DTypePromotionError):
            same = False
        _LOOPS[key] = same
    return same


def _fits(t: Any, other: Any) -> bool:
    """`t` can receive `fn(t, other)`: a writeable C-contiguous array of at least
    `INPLACE_MIN` elements, `other` (None for a unary op) of its dtype and broadcasting to
    its shape."""
    if not isinstance(t, np.ndarray) or t.size < INPLACE_MIN or not t.flags.writeable or not t.flags.c_contiguous:
        return False
    if other is None:
        return True
    if getattr(other, "dtype", None) != t.dtype:
        return False
    shape = getattr(other, "shape", ())
    return len(shape) <= t.ndim and all(s in (1, d) for s, d in zip(reversed(shape), reversed(t.shape), strict=False))


#: Ops whose numpy value at an element is exact (IEEE-rounded, or integer) in any dtype, so
#: independent of the element's position and the array's layout (`interpreters/chains.py`).
#: Not float max/min: which zero numpy's max(+0, -0) returns may differ between its SIMD
#: and scalar loops (on bf16 operands they are chainable: ml_dtypes has one loop).
_EXACT: set[OpKey] = {
    arith.AddfOp, arith.SubfOp, arith.MulfOp, arith.DivfOp,
    "arith.remf", math.CopySignOp, arith.NegfOp, math.AbsFOp, math.AbsIOp, math.SqrtOp,
    math.CeilOp, math.FloorOp, math.RoundEvenOp, math.RoundOp, math.TruncOp,
    arith.AddiOp, arith.SubiOp, arith.MuliOp, arith.AndIOp, arith.OrIOp, arith.XOrIOp, arith.MaxSIOp, arith.MinSIOp,
    arith.MaxUIOp, arith.MinUIOp,
}


def chainable(op: Operation) -> bool:
    """Whether `op` may be in a bf16 chain (`interpreters/chains.py`): an elementwise op
    that reads nothing but its operands, raises on no value, and whose value at an element
    does not depend on the array's layout (exact ops in any dtype; any rule on bf16 operands,
    which ml_dtypes evaluates one element at a time)."""
    key = op_key(op)
    if key in _INT_DIVISIONS or isinstance(op, arith.FPToSIOp | arith.FPToUIOp):
        return False
    if key in _CASTS or isinstance(op, arith.ConstantOp | arith.CmpfOp | arith.CmpiOp | arith.SelectOp):
        return True
    if key in _EXACT:
        return True
    if key in _BINARY or key in _UNARY or isinstance(op, math.FPowIOp):
        return all(bf16_chains.is_bf16(v.type) for v in op.operands[:1 if isinstance(op, math.FPowIOp) else None])
    return False


def _cse_key(op: Operation, slots: dict[SSAValue, int]) -> tuple[Any, ...] | None:
    """What makes `op` the same as another op (name, operand slots, properties, result
    types), for ops whose value is that alone; None for the others (`tensor.extract`
    counts the bytes it gathers, `cf.assert` has no value)."""
    if op_key(op) not in PAYLOAD_OPS or isinstance(op, tensor.ExtractOp | cf.AssertOp):
        return None
    return (op_name(op), tuple(slots[v] for v in op.operands), bf16_chains.op_props(op), tuple(str(r.type) for r in op.results))


def compare_fn(op: Operation) -> Callable[[Any, Any], Any]:
    """The numpy function of an `arith.cmpf` / `arith.cmpi` op (its predicate)."""
    pred = op.properties["predicate"]
    assert isinstance(pred, IntegerAttr)
    p = pred.value.data
    if isinstance(op, arith.CmpfOp):
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
    payload.steps, payload.yield_slots, payload.fresh, payload.skip = [], [], set(), set()
    payload.inplace = False
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
