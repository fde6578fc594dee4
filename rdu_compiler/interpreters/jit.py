"""Map payloads of f32 / bf16 arithmetic as one native loop over the tile (numba).

`CompiledPayload` evaluates a payload one op at a time, each op one numpy (or torch) pass
over the whole tile: softmax's scale-and-mask map is a cast, a multiply and an add, three
passes over 196,608 elements with bf16 rounding after each. `MapJit` writes the same
payload as a Python loop nest over the tile's elements, one statement per op, compiles it
with numba (LLVM) and runs the whole payload in one pass, in registers.

The bits are those of the numpy steps, because every op it accepts is one IEEE f32
operation or an exact one:
- f32 `addf` / `subf` / `mulf` / `divf`: one f32 operation (numba keeps f32 operands in
  f32 and, without fastmath, neither reassociates nor contracts a*b+c into an FMA);
- the same on bf16: ml_dtypes widens both operands to f32 (exact), applies the f32 op and
  rounds to bf16 to nearest-even; here bf16 values are held as those f32 values and the
  rounding is the integer form of the same round-to-nearest-even (`_round_bf16`);
- `extf` bf16 -> f32 (exact), `truncf` f32 -> bf16 (that rounding), `negf` (sign flip);
- scalar constants of those types (exact literals: the repr of the value as a Python float);
- bf16 unary ops and bf16 chains (`interpreters/chains.py`): a lookup of the operand's
  bits in the table the numpy path itself computes and uses (`bf16.table`, `chain.tables`);
- `cmpf` (every predicate, NaN-aware as `payload._CMPF`) and `select` (an exact copy).
NaN is where the bits could differ (which NaN an operation returns, its payload through
the rounding): a kernel whose arithmetic gives a NaN anywhere returns None from `run`, and
the caller evaluates it the numpy way (the same bits as before). Any other op, dtype or
operand kind (captures, index grids, gathers, integers, f32 transcendentals, whose numpy
SIMD loops numba would not match) leaves the kernel to numpy: `MapJit.build` returns None.
A bf16 add or multiply reduce along one axis (softmax's sum) is the same index-order fold
compiled (`fold`, `jit_kernels.fold`). `testsuite/unit/test_jit.py` compares both paths bit
for bit: every non-NaN bf16 value against non-zero finite operands (+ - * /, casts, tables),
f32 multiply-add with subnormals, a NaN handed back, folds over strided layouts, GPT-2
2-layer bf16; `testsuite/fuzz/test_fuzz_jit.py` does the same on random graphs.

When: only tiles of at least `JIT_MIN` elements, and only from a kernel's second run (the
first run of a program stays as it was; compiling costs 0.2-1 s a distinct payload, so a
program run once never pays it). Compiled loops are kept per process by their source, and
between processes in `cache_dir()`: each loop is a module file there, numba's cache beside
it (`RDU_JIT_CACHE` names the directory; empty: no disk cache). `RDU_JIT=0` switches the
module off; so does numba being absent. The helpers the loops inline and the fold are in
`interpreters/jit_kernels.py`, imported only when something is compiled.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import warnings
from collections import Counter
from typing import Any

import numpy as np
from xdsl.dialects import arith

from rdu_compiler.dtypes import numpy_dtype
from rdu_compiler.interpreters import bf16
from rdu_compiler.interpreters.bf16 import BF16
from rdu_compiler.interpreters.payload import _UNARY, CompiledPayload, TileContext, op_key

F32 = np.dtype(np.float32)

#: Tiles of fewer elements stay on numpy [NF: below it a numpy pass costs a few us, about
#: what the call into the compiled loop and its argument checks do].
JIT_MIN = 32768

_BIN = {arith.AddfOp: "+", arith.SubfOp: "-", arith.MulfOp: "*", arith.DivfOp: "/"}
#: `arith.cmpf` by predicate (MLIR's enum order), as `payload._CMPF` computes it: ordered
#: predicates are false on a NaN, unordered ones true (exact: a compare rounds nothing).
_CMPF = [
    "False", "({a} == {b})", "({a} > {b})", "({a} >= {b})", "({a} < {b})", "({a} <= {b})",
    "(({a} < {b}) | ({a} > {b}))", "(({a} == {a}) & ({b} == {b}))", "(not (({a} < {b}) | ({a} > {b})))",
    "(not ({a} <= {b}))", "(not ({a} < {b}))", "(not ({a} >= {b}))", "(not ({a} > {b}))", "({a} != {b})",
    "(({a} != {a}) | ({b} != {b}))", "True",
]
_KINDS = {F32: "f32", BF16: "bf16"}
_COMPILED: dict[str, Any] = {}
_SEEN: set[tuple[Any, ...]] = set()  # bf16 folds (ufunc, shape, axis) seen once (`fold`)
#: What ran compiled in this process: "map" and "fold" runs, and "map_nan" / "fold_nan"
#: runs handed back to numpy for a NaN (tests and `benchmarks/emulator_speed.py` read it).
RUNS: Counter[str] = Counter()
_STATE: dict[str, Any] = {}


def enabled() -> bool:
    """Whether map payloads may be compiled (numba importable, `RDU_JIT` not 0)."""
    if os.environ.get("RDU_JIT", "1") == "0":
        return False
    if "numba" not in _STATE:
        try:
            import numba
        except ImportError:
            numba = None
        _STATE["numba"] = numba
    return _STATE["numba"] is not None


def _kernels() -> Any:
    """`interpreters/jit_kernels.py` (imports numba)."""
    from rdu_compiler.interpreters import jit_kernels

    return jit_kernels


def fold(ufunc: np.ufunc, x: np.ndarray, axis: int) -> np.ndarray | None:
    """`folds._fold(ufunc, x, axis)` for bf16 `x` and np.add / np.multiply, as one compiled
    loop: the same index-order fold, each step one f32 operation on the widened values,
    rounded to bf16. None (fold the numpy way) for other ufuncs, small or first-seen shapes
    (`JIT_MIN`; compiled from the second fold of a shape), and results with a NaN anywhere."""
    if ufunc not in (np.add, np.multiply) or x.size < JIT_MIN or not enabled():
        return None
    key = (ufunc.__name__, x.shape, axis)
    if key not in _SEEN:
        _SEEN.add(key)
        return None
    rows = np.moveaxis(x, axis, -1)
    flat = np.ascontiguousarray(rows.reshape(-1, x.shape[axis]))  # (outputs, reduced), a copy where it must be
    out = np.empty(flat.shape[0], dtype=BF16)
    bad = _kernels().fold(flat.view(np.uint16), out.view(np.uint16), ufunc is np.multiply)
    RUNS["fold_nan" if bad else "fold"] += 1
    if bad:
        return None
    return np.expand_dims(out.reshape(rows.shape[:-1]), axis)


class MapJit:
    """One map payload as a numba loop nest (see the module doc). Built by `build`."""

    def __init__(self, body: list[str], args: list[tuple[int, str]], tables: list[tuple[np.ndarray, str]],
                 outs: list[tuple[int, str]]):
        self.body = body  # statements per element; read `a{slot}` through `_A{slot}`, write `v{slot}`
        self.args = args  # (slot, kind) of each block argument read
        self.tables = tables  # (table, kind) of each lookup, passed as `_T{k}`
        self.outs = outs  # (slot, kind) of each yielded value, in yield order
        self.broken = False  # numba refused the loop (`run` then returns None)

    @staticmethod
    def build(payload: CompiledPayload, result_dtypes: list[np.dtype[Any]]) -> MapJit | None:
        """The loop of `payload` (a map kernel's), or None when an op, type or yield is one
        this module does not compile."""
        kind: dict[int, str] = {}
        block_args = [v for v, s in payload.slots.items() if s < payload.n_args]
        for v in block_args:
            k = _KINDS.get(numpy_dtype(v.type)) if _float(v.type) else None
            if k is not None:
                kind[payload.slots[v]] = k
        consts: list[Any] = [None] * len(payload.slots)
        for st in payload.steps[:payload.n_const]:
            st(consts, TileContext((), ()))
        chain_of = {op: c for c in payload.chains for op in c.ops}
        body: list[str] = []
        tables: list[tuple[np.ndarray, str]] = []
        used: dict[int, str] = {}

        def ref(v: Any) -> str | None:
            s = payload.slots[v]
            if s not in kind:
                return None
            if s < payload.n_args:
                used[s] = kind[s]
            return f"v{s}"

        def lookup(table: np.ndarray, root: str, out: int) -> bool:
            k = _KINDS.get(table.dtype)
            if k is None:
                return False
            tables.append((table.astype(F32), k))  # bf16 entries widened (exact): f32 loads, no widening per element
            body.append(f"v{out} = _T{len(tables) - 1}[_bits({root})]")
            kind[out] = k
            return True

        for op in payload.kept:
            outs = [payload.slots[r] for r in op.results]
            if op in payload.constant_ops:
                for s in outs:
                    c = consts[s]
                    k = _KINDS.get(getattr(c, "dtype", None))  # type: ignore[arg-type]
                    if k is None or np.ndim(c) != 0:
                        continue  # (an integer exponent, say: only a use outside a table would need it)
                    f = float(c)  # exact (an f32 or bf16 value); its repr reads back as that f64
                    if f != f:
                        return None
                    body.append(f"v{s} = np.float32({repr(f) if abs(f) != np.inf else ('-' if f < 0 else '') + 'np.inf'})")
                    kind[s] = k
                continue
            chain = chain_of.get(op)
            if chain is not None:
                if op is not chain.ops[0]:
                    continue
                root = f"v{chain.root}" if chain.root in kind and kind[chain.root] == "bf16" else None
                if root is None:
                    return None
                if chain.root < payload.n_args:
                    used[chain.root] = "bf16"
                if not all(lookup(t, root, e) for e, t in zip(chain.exits, chain.tables(), strict=True)):
                    return None
                continue
            ins = [ref(v) for v in op.operands]
            if any(x is None for x in ins) or len(outs) != 1:
                return None
            (out,) = outs
            rk = _KINDS.get(numpy_dtype(op.results[0].type)) if _float(op.results[0].type) else None
            key = op_key(op)
            if key in _BIN and rk is not None and all(kind[payload.slots[v]] == rk for v in op.operands):
                body.append(f"_s = {ins[0]} {_BIN[key]} {ins[1]}")
                body.append("_bad |= _s != _s")
                body.append(f"v{out} = _round_bf16(_s)" if rk == "bf16" else f"v{out} = _s")
            elif isinstance(op, arith.NegfOp) and rk is not None and kind[payload.slots[op.operands[0]]] == rk:
                body.append(f"v{out} = -{ins[0]}")
                body.append(f"_bad |= v{out} != v{out}")
            elif isinstance(op, arith.ExtFOp) and rk == "f32" and kind[payload.slots[op.operands[0]]] == "bf16":
                body.append(f"v{out} = {ins[0]}")
            elif isinstance(op, arith.TruncFOp) and rk == "bf16" and kind[payload.slots[op.operands[0]]] == "f32":
                body.append(f"_bad |= {ins[0]} != {ins[0]}")
                body.append(f"v{out} = _round_bf16({ins[0]})")
            elif key in _UNARY and rk is not None and kind[payload.slots[op.operands[0]]] == "bf16":
                if not lookup(bf16.table(key, _UNARY[key]), str(ins[0]), out):
                    return None
            elif isinstance(op, arith.CmpfOp) and len({kind[payload.slots[v]] for v in op.operands} - {"f32", "bf16"}) == 0:
                pred = op.properties["predicate"]
                body.append(f"v{out} = {_CMPF[pred.value.data].format(a=ins[0], b=ins[1])}")  # type: ignore[attr-defined]
                kind[out] = "i1"
            elif (isinstance(op, arith.SelectOp) and kind[payload.slots[op.operands[0]]] == "i1" and rk is not None
                  and all(kind[payload.slots[v]] == rk for v in op.operands[1:])):
                body.append(f"v{out} = {ins[1]} if {ins[0]} else {ins[2]}")  # (an exact copy of either)
            else:
                return None
            kind.setdefault(out, rk)  # type: ignore[arg-type]
        if "bf16" not in kind.values() and sum(op not in payload.constant_ops for op in payload.kept) < 2:
            return None  # one f32 op: numpy's own loop is one pass already
        ys = payload.yield_slots
        if len(set(ys)) != len(ys) or len(ys) != len(result_dtypes):
            return None
        outs_k: list[tuple[int, str]] = []
        for s, dt in zip(ys, result_dtypes, strict=True):
            if s < payload.n_args or s not in kind or _KINDS.get(np.dtype(dt)) != kind[s]:
                return None
            outs_k.append((s, kind[s]))
        return MapJit(body, sorted(used.items()), tables, outs_k)

    def run(self, args: list[Any], sizes: tuple[int, ...], into: list[np.ndarray | None] | None = None) -> list[np.ndarray] | None:
        """The yielded values on a tile of shape `sizes`, C-contiguous arrays (`into[j]` where
        it is one of that shape and dtype, else a new one), or None: an argument this loop
        was not built for, or a NaN in the arithmetic (evaluate the payload the numpy way
        instead; `into` may then hold anything)."""
        if self.broken:
            return None
        rank = len(sizes)
        arrays: list[np.ndarray] = []
        pattern: list[tuple[bool, ...]] = []
        for s, k in self.args:
            x = args[s]
            if type(x) is not np.ndarray or _KINDS.get(x.dtype) != k or x.ndim > rank:
                return None
            if x.ndim < rank:
                x = x.reshape((1,) * (rank - x.ndim) + x.shape)
            if any(n != m and n != 1 for n, m in zip(x.shape, sizes, strict=True)):
                return None
            if not x.flags.c_contiguous:
                x = np.ascontiguousarray(x)
            arrays.append(x.view(np.uint16) if k == "bf16" else x)
            pattern.append(tuple(n == 1 for n in x.shape))
        fn = self._compiled(rank, pattern)
        outs = []
        for j, (_, k) in enumerate(self.outs):
            dt, o = BF16 if k == "bf16" else F32, into[j] if into else None
            ok = o is not None and o.shape == sizes and o.dtype == dt and o.flags.c_contiguous and o.flags.writeable
            outs.append(o if ok else np.empty(sizes, dtype=dt))
        views = [o.view(np.uint16) if k == "bf16" else o for o, (_, k) in zip(outs, self.outs, strict=True)]
        try:
            bad = fn(*arrays, *[t for t, _ in self.tables], *views)  # (numba compiles on the first call)
        except Exception as e:  # noqa: BLE001 - numba refused the loop: a generator bug; numpy stays right
            import numba.core.errors

            if not isinstance(e, numba.core.errors.NumbaError):
                raise
            warnings.warn(f"rdu_compiler: a map payload's loop did not compile ({type(e).__name__}); "
                          f"it runs as numpy steps. Please report it with this loop:\n{self.source(rank, pattern)}", stacklevel=2)
            self.broken = True
            return None
        RUNS["map_nan" if bad else "map"] += 1
        return None if bad else outs

    def source(self, rank: int, pattern: list[tuple[bool, ...]]) -> str:
        """The loop nest's Python source for a tile of `rank` dims whose arguments have
        size-1 (broadcast) dims where `pattern` says."""
        idx = [f"_i{d}" for d in range(rank)]
        names = [f"_A{s}" for s, _ in self.args] + [f"_T{t}" for t in range(len(self.tables))] + [f"_O{j}" for j in range(len(self.outs))]
        lines = [f"def _loop({', '.join(names)}):", "    _bad = False"]
        lines += [f"    _n{d} = _O0.shape[{d}]" for d in range(rank)]
        pad = "    "
        for d in range(rank):
            lines.append(f"{pad}for _i{d} in range(_n{d}):")
            pad += "    "
        for (s, k), bcast in zip(self.args, pattern, strict=True):
            at = ", ".join("0" if b else i for b, i in zip(bcast, idx, strict=True))
            lines.append(f"{pad}v{s} = _widen(_A{s}[{at}])" if k == "bf16" else f"{pad}v{s} = _A{s}[{at}]")
        lines.extend(pad + b for b in self.body)
        at = ", ".join(idx)
        for j, (s, k) in enumerate(self.outs):
            lines.append(f"{pad}_O{j}[{at}] = _bits(v{s})" if k == "bf16" else f"{pad}_O{j}[{at}] = v{s}")
        lines.append("    return _bad")
        return "\n".join(lines) + "\n"

    def _compiled(self, rank: int, pattern: list[tuple[bool, ...]]) -> Any:
        src = self.source(rank, pattern)
        fn = _COMPILED.get(src)
        if fn is None:
            fn = _COMPILED[src] = _load(src)
        return fn


_HEADER = """# generated by rdu_compiler.interpreters.jit: one map payload's loop nest (numba caches it)
import numba
import numpy as np

from rdu_compiler.interpreters.jit_kernels import _bits, _round_bf16, _widen

"""


def cache_dir() -> str | None:
    """Where compiled loops are kept between processes: `RDU_JIT_CACHE`, else
    `$XDG_CACHE_HOME/rdu_compiler/jit` (`~/.cache/...`); None when `RDU_JIT_CACHE` is empty."""
    d = os.environ.get("RDU_JIT_CACHE")
    if d is None:
        d = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "rdu_compiler", "jit")
    return d or None


def _load(src: str) -> Any:
    """The numba function of loop source `src`: from a module file in `cache_dir()`
    (numba's cache beside it holds the machine code: ~20 ms to load where compiling takes
    0.2-1 s), else compiled in memory (no cache directory, or it cannot be written)."""
    import numba

    kernels = _kernels()
    d = cache_dir()
    if d:
        with open(kernels.__file__, "rb") as f:  # the helpers are inlined: a change to them is a new file
            salt = f.read()
        digest = hashlib.sha256(salt + numba.__version__.encode() + src.encode()).hexdigest()[:24]
        path = os.path.join(d, f"rdu_loop_{digest}.py")
        try:
            if not os.path.exists(path):
                os.makedirs(d, exist_ok=True)
                tmp = f"{path}.{os.getpid()}.tmp"
                with open(tmp, "w") as f:
                    f.write(_HEADER + src + '\n_loop = numba.njit(error_model="numpy", cache=True)(_loop)\n')
                os.replace(tmp, path)  # whole or not at all, beside another process writing it
            spec = importlib.util.spec_from_file_location(f"rdu_loop_{digest}", path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module  # (numba's cache finds the module by name)
            spec.loader.exec_module(module)
            return module._loop
        except OSError:
            pass
    scope = {"np": np, "_bits": kernels._bits, "_round_bf16": kernels._round_bf16, "_widen": kernels._widen}
    exec(compile(src, "<rdu map payload>", "exec"), scope)  # noqa: S102 - our own generated loop
    return numba.njit(error_model="numpy")(scope["_loop"])  # IEEE division: no ZeroDivisionError


def _float(t: Any) -> bool:
    """Whether xDSL type `t` is a float type with a numpy dtype here."""
    try:
        return numpy_dtype(t).kind == "f" or numpy_dtype(t) == BF16
    except Exception:  # noqa: BLE001 - an index or other type: not a float
        return False


class Tier:
    """A map kernel's compiled loop, from its second large run: None before (the numpy
    steps run), while `RDU_JIT=0`, and where `MapJit.build` compiles nothing."""

    def __init__(self, payload: CompiledPayload, result_dtypes: list[np.dtype[Any]]):
        self.payload, self.result_dtypes = payload, result_dtypes
        self.calls = 0
        self.built = False
        self.jit: MapJit | None = None

    def get(self) -> MapJit | None:
        self.calls += 1
        if self.calls < 2 or not enabled():
            return None
        if not self.built:
            self.built = True
            self.jit = MapJit.build(self.payload, self.result_dtypes)
        return self.jit
