"""Random graphs for the compiler fuzz: generated as data, rendered as a standalone model.py.

A `Program` is a list of op records (plain dicts, e.g. ``{"op": "softmax", "out": "v3",
"x": "v2", "dim": 1}``) over named values: inputs ``x0, x1, ...`` (fp32 or int64 ids),
parameters ``self.pN`` / modules ``self.mN`` and intermediate values ``vN``. `generate`
builds a chain of 3-12 ops from a `Chooser` (random.Random for benchmarks/fuzz.py,
hypothesis draws for testsuite/fuzz/test_fuzz.py, which then shrinks a failing program),
`render` writes it as a model.py that defines ``model`` and ``example_inputs`` (re-run it
with ``rdu-compile file.py --check``), and `check_program` compiles it with
`rdu_compiler.compile` at -O0/-O1 on the `sn40l` and `tiny` presets and compares the
emulator with eager:

- shapes and dtypes equal; integers and booleans exact;
- NaN and +-inf at the same positions;
- fp32: relative L2 error of the finite values <= 1e-5 (`RTOL`).

Outcomes (`Outcome.kind`): ``pass``, ``refused`` (the compiler raised an RduError at
compile time; `Outcome.cls` classifies the message), ``illcond`` (off by more than RTOL,
but eager fp32 is itself about as far from a float64 run: see `ill_conditioned`; or an
integer result that eager itself changes when its float ops round the other way: see
`decided_by_rounding`; or a float result that eager itself moves as far when its ops
round the other way: see `moved_by_rounding`), ``known`` (a deviation listed in
`KNOWN`, owned by another part of the project, see docs/fuzz_findings.md), ``wrong``
(a wrong number, shape or dtype), ``crash`` (any other exception, or an RduError at run
time: whatever compiles must run).
"""

from __future__ import annotations

import math
import random
import re
import traceback
from dataclasses import dataclass, field
from typing import Any

RTOL = 1e-5
CONFIGS = (("sn40l", 0), ("sn40l", 1), ("tiny", 0), ("tiny", 1))
MAX_NUMEL = 768  # elements of any value: keeps the emulator quick
BIG_NUMEL = 16384  # in "big" programs (64 KiB of fp32: several 16 KiB PMUs of `tiny`)

# --------------------------------------------------------------------------- choosers


class Chooser:
    """Where the random choices come from. Subclasses implement `integers`."""

    def integers(self, lo: int, hi: int) -> int:  # inclusive
        raise NotImplementedError

    def choice(self, seq: list[Any] | tuple[Any, ...]) -> Any:
        return seq[self.integers(0, len(seq) - 1)]

    def boolean(self) -> bool:
        return self.integers(0, 1) == 1

    def lengths(self, lo: int, hi: int) -> Any:
        """Indices 0, 1, ... of a list of lo..hi items (`generate`'s op chain)."""
        n = self.integers(lo, hi)
        return range(n)


class RandomChooser(Chooser):
    """Choices from `random.Random(seed)`: program `seed` is reproducible everywhere."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)

    def integers(self, lo: int, hi: int) -> int:
        return self.rng.randint(lo, hi)


class DataChooser(Chooser):
    """Choices from hypothesis' `data` object (so failures shrink: index 0 is simplest)."""

    def __init__(self, data: Any):
        from hypothesis import strategies as st

        self.data = data
        self.st = st

    def integers(self, lo: int, hi: int) -> int:
        return self.data.draw(self.st.integers(lo, hi))

    def lengths(self, lo: int, hi: int) -> Any:
        """One "one more?" draw before each item past `lo`, as hypothesis' own lists do,
        so that shrinking can delete an op from the middle of the chain."""
        i = 0
        while i < hi and (i < lo or self.integers(0, 7) > 0):
            yield i
            i += 1


# --------------------------------------------------------------------------- programs


@dataclass
class Program:
    """A random graph as data.

    inputs: {"name", "shape", "kind": "float" | "ids", "high" (ids: exclusive bound)}.
    params: {"name", "kind": "param" | "linear" | "layernorm" | "embedding", ...}.
    ops: {"op", "out", operands by name, attributes}; outputs: value names returned.
    """

    inputs: list[dict[str, Any]] = field(default_factory=list)
    params: list[dict[str, Any]] = field(default_factory=list)
    ops: list[dict[str, Any]] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)

    def op_names(self) -> set[str]:
        return {o["op"] for o in self.ops}


def _numel(shape: tuple[int, ...]) -> int:
    return math.prod(shape)


BIG_DIMS = [1, 3, 8, 16, 24, 33, 48, 64, 100, 128]


class _Builder:
    def __init__(self, c: Chooser, big: bool = False):
        self.c = c
        self.big = big  # dims up to 128, values up to BIG_NUMEL: tiles and sections on `tiny`
        self.max_numel = BIG_NUMEL if big else MAX_NUMEL
        self.prog = Program()
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.dtypes: dict[str, str] = {}
        self.n = 0
        self.side: list[str] = []  # int/bool values returned as extra outputs

    def _name(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}{self.n}"

    def shape(self, rank_lo: int = 1, rank_hi: int = 4, dim_hi: int = 6) -> tuple[int, ...]:
        rank = self.c.integers(rank_lo, rank_hi)
        if self.big:
            dims = [self.c.choice(BIG_DIMS) for _ in range(rank)]
        else:
            dims = [self.c.integers(1, dim_hi) for _ in range(rank)]
        while _numel(tuple(dims)) > self.max_numel // (2 if self.big else 4):
            dims[dims.index(max(dims))] //= 2
        return tuple(dims)

    def input(self, shape: tuple[int, ...], kind: str = "float", high: int = 0) -> str:
        name = f"x{len(self.prog.inputs)}"
        self.prog.inputs.append({"name": name, "shape": list(shape), "kind": kind, "high": high})
        self.shapes[name] = shape
        self.dtypes[name] = "int64" if kind == "ids" else "float32"
        return name

    def param(self, shape: tuple[int, ...]) -> str:
        name = "self." + self._name("p")
        self.prog.params.append({"name": name, "kind": "param", "shape": list(shape)})
        self.shapes[name] = shape
        self.dtypes[name] = "float32"
        return name

    def module(self, kind: str, **attrs: Any) -> str:
        name = "self." + self._name("m")
        self.prog.params.append({"name": name, "kind": kind, **attrs})
        return name

    def op(self, op: str, vshape: tuple[int, ...], /, **attrs: Any) -> str:
        out = self._name("v")
        self.prog.ops.append({"op": op, "out": out, **attrs})
        self.shapes[out] = tuple(vshape)
        self.dtypes[out] = "float32"
        return out

    def values(self, shape: tuple[int, ...]) -> list[str]:
        return [v for v, s in self.shapes.items() if s == shape and self.dtypes[v] == "float32"]

    def operand(self, shape: tuple[int, ...]) -> str | float:
        """A second operand that broadcasts to `shape`: an earlier value, an input, a parameter or a scalar."""
        how = self.c.integers(0, 4)
        if how == 0:
            return self.c.choice([0.5, -1.25, 2.0, 3.0])
        if how == 1 and len(self.values(shape)) > 0:
            return self.c.choice(self.values(shape))
        if how == 2 and shape:
            return self.param(shape[-1:])
        if how == 3:
            bshape = tuple(d if self.c.boolean() else 1 for d in shape)
            return self.input(bshape)
        return self.input(shape)


def _dim(b: _Builder, shape: tuple[int, ...]) -> int:
    d = b.c.integers(0, len(shape) - 1)
    return d - len(shape) if b.c.boolean() else d  # negative dims too


def _factor(b: _Builder, n: int) -> tuple[int, ...]:
    """A random shape with `n` elements, rank 1-4."""
    dims: list[int] = []
    rank = b.c.integers(1, 4)
    for _ in range(rank - 1):
        divisors = [d for d in range(1, n + 1) if n % d == 0]
        d = b.c.choice(divisors)
        dims.append(d)
        n //= d
    dims.append(n)
    return tuple(dims)


UNARY = ["relu", "exp", "tanh", "sigmoid", "neg", "abs", "gelu", "gelu_tanh", "silu", "square",
         "sqrt_abs", "log_abs1", "rsqrt1", "sin", "clamp", "scale", "shift"]
BINARY = ["add", "sub", "mul", "div", "maximum", "minimum"]
REDUCE = ["sum", "mean", "amax", "amin", "var", "logsumexp"]


def _gen_unary(b: _Builder, x: str) -> str:
    return b.op("unary", b.shapes[x], fn=b.c.choice(UNARY), x=x)


def _gen_binary(b: _Builder, x: str) -> str:
    shape = b.shapes[x]
    y = b.operand(shape)
    swap = b.c.boolean() and not isinstance(y, float)
    out_shape = shape if isinstance(y, float) else _broadcast(shape, b.shapes[y])
    return b.op("binary", out_shape, fn=b.c.choice(BINARY), x=x, y=y, swap=swap)


def _pad(shape: tuple[int, ...], rank: int) -> tuple[int, ...]:
    return (1,) * (rank - len(shape)) + tuple(shape)


def _broadcast(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    rank = max(len(a), len(b))
    return tuple(max(p, q) for p, q in zip(_pad(a, rank), _pad(b, rank), strict=True))


def _gen_matmul(b: _Builder, x: str) -> str:
    shape = b.shapes[x]
    k = shape[-1]
    n = b.c.choice(BIG_DIMS) if b.big else b.c.integers(1, 8)
    out = shape[:-1] + (n,)
    if _numel(out) > b.max_numel:
        n, out = 1, shape[:-1] + (1,)
    how = b.c.integers(0, 3)
    if how == 3 and len(shape) >= 3:  # batched: x @ y with y's batch dims broadcast
        batch = tuple(d if b.c.boolean() else 1 for d in shape[:-2])
        if _numel((*batch, k, n)) <= b.max_numel:
            return b.op("matmul", out, x=x, y=b.input((*batch, k, n)))
    if how == 0:
        m = b.module("linear", k=k, n=n, bias=b.c.boolean())
        return b.op("linear", out, x=x, m=m)
    w = b.param((k, n)) if how == 1 else b.input((k, n))
    return b.op("matmul", out, x=x, y=w)


def _gen_bmm(b: _Builder, x: str) -> str:
    shape = b.shapes[x]
    if len(shape) != 3:  # make it rank 3 first
        x = b.op("reshape", (1, *_squash(shape, 2)), x=x, shape=list((1, *_squash(shape, 2))))
        shape = b.shapes[x]
    n = b.c.choice(BIG_DIMS) if b.big else b.c.integers(1, 6)
    if _numel((shape[0], shape[1], n)) > b.max_numel or _numel((shape[0], shape[2], n)) > b.max_numel:
        n = 1
    yt = b.c.boolean()  # y given as (B, N, K), transposed in the model
    yshape = (shape[0], n, shape[2]) if yt else (shape[0], shape[2], n)
    y = b.param(yshape) if b.c.boolean() else b.input(yshape)
    return b.op("bmm", (shape[0], shape[1], n), x=x, y=y, yt=yt)


def _squash(shape: tuple[int, ...], rank: int) -> tuple[int, ...]:
    """`shape` flattened or padded to `rank` dims (leading dims merged)."""
    if len(shape) < rank:
        return (1,) * (rank - len(shape)) + tuple(shape)
    return (_numel(shape[: len(shape) - rank + 1]), *shape[len(shape) - rank + 1 :])


def _gen_softmax(b: _Builder, x: str) -> str:
    return b.op("softmax", b.shapes[x], x=x, dim=_dim(b, b.shapes[x]), log=b.c.boolean())


def _gen_layernorm(b: _Builder, x: str) -> str:
    shape = b.shapes[x]
    nd = b.c.integers(1, min(2, len(shape)))
    normalized = list(shape[len(shape) - nd :])
    if b.c.boolean():
        m = b.module("layernorm", shape=normalized, affine=b.c.boolean())
        return b.op("layernorm", shape, x=x, m=m)
    affine = [b.param(tuple(normalized)), b.param(tuple(normalized))] if b.c.boolean() else []
    return b.op("layernorm_f", shape, x=x, shape=normalized, affine=affine)


def _gen_reduce(b: _Builder, x: str) -> str:
    shape = b.shapes[x]
    fn = b.c.choice(REDUCE)
    keep = b.c.boolean()
    if b.c.integers(0, 5) == 0:  # full reduction to a 0-d tensor
        return b.op("reduce_all", (), fn=fn if fn in ("sum", "mean") else "sum", x=x)
    ndims = b.c.integers(1, len(shape))
    dims = sorted({_dim(b, shape) % len(shape) for _ in range(ndims)})
    out = tuple(1 if i in dims else d for i, d in enumerate(shape)) if keep else tuple(
        d for i, d in enumerate(shape) if i not in dims)
    if fn in ("amax", "amin") or len(dims) == 1:
        dim: Any = dims[0] if len(dims) == 1 else dims
    else:
        dim = dims
    unbiased = b.c.boolean() and math.prod(shape[i] for i in dims) > 1  # else var is 0/0
    return b.op("reduce", out, fn=fn, x=x, dim=dim, keepdim=keep, unbiased=unbiased)


def _gen_transpose(b: _Builder, x: str) -> str:
    shape = b.shapes[x]
    if len(shape) < 2:
        return _gen_reshape(b, x)
    if b.c.boolean():
        d0, d1 = _dim(b, shape), _dim(b, shape)
        out = list(shape)
        out[d0], out[d1] = out[d1], out[d0]
        return b.op("transpose", tuple(out), x=x, d0=d0, d1=d1)
    perm = list(range(len(shape)))
    for i in range(len(perm) - 1, 0, -1):  # Fisher-Yates from the chooser
        j = b.c.integers(0, i)
        perm[i], perm[j] = perm[j], perm[i]
    return b.op("permute", tuple(shape[p] for p in perm), x=x, perm=perm)


def _gen_reshape(b: _Builder, x: str) -> str:
    shape = b.shapes[x]
    new = _factor(b, _numel(shape))
    infer = b.c.boolean() and len(new) > 1
    return b.op("reshape", new, x=x, shape=[-1, *new[1:]] if infer else list(new))


def _gen_slice(b: _Builder, x: str) -> str:
    shape = b.shapes[x]
    d = _dim(b, shape)
    size = shape[d]
    start = b.c.integers(0, size - 1)
    stop = b.c.integers(start + 1, size)
    step = b.c.choice([1, 1, 2])
    out = list(shape)
    out[d] = len(range(start, stop, step))
    neg = b.c.boolean()  # written as negative indices
    return b.op("slice", tuple(out), x=x, dim=d % len(shape), start=start, stop=stop, step=step,
                neg=neg, size=size)


def _gen_cat(b: _Builder, x: str) -> str:
    shape = b.shapes[x]
    d = _dim(b, shape)
    other = list(shape)
    other[d] = b.c.integers(1, 4)
    if b.c.boolean() and b.values(tuple(other)):
        y = b.c.choice(b.values(tuple(other)))
    else:
        y = b.param(tuple(other)) if b.c.boolean() else b.input(tuple(other))
    out = list(shape)
    out[d] += other[d]
    if _numel(tuple(out)) > b.max_numel:
        return _gen_slice(b, x)
    return b.op("cat", tuple(out), x=x, y=y, dim=d, first=b.c.boolean())


def _gen_where(b: _Builder, x: str) -> str:
    shape = b.shapes[x]
    y = b.operand(shape)
    c = b.operand(shape)
    if isinstance(c, float):
        c = x
    out_shape = shape
    for v in (y, c):
        if not isinstance(v, float):
            out_shape = _broadcast(out_shape, b.shapes[v])
    return b.op("where", out_shape, x=x, y=y, c=c, threshold=b.c.choice([0.0, 0.5, -0.3]))


def _gen_masked_fill(b: _Builder, x: str) -> str:
    shape = b.shapes[x]
    c = b.operand(shape)
    if isinstance(c, float):
        c = x
    value = b.c.choice([0.0, -1.0, 1e4, "-inf"])
    return b.op("masked_fill", shape, x=x, c=c, value=value, threshold=b.c.choice([0.0, 0.5]))


def _gen_embedding(b: _Builder, x: str) -> str:
    shape = b.shapes[x]
    if not shape:
        shape = (1,)
    num = b.c.integers(2, 12)
    width = b.c.integers(1, 3)
    if b.c.boolean() and _numel(b.shapes[x]) * width <= b.max_numel:  # ids computed from x
        m = b.module("embedding", num=3, dim=width)
        return b.op("embedding_x", (*b.shapes[x], width), x=x, m=m, num=num)
    ids = b.input(shape[:-1] if len(shape) > 1 else (1,), kind="ids", high=num)
    m = b.module("embedding", num=num, dim=shape[-1])
    out = _broadcast(b.shapes[x], (*b.shapes[ids], shape[-1]))
    return b.op("embedding", out, x=x, ids=ids, m=m)


INT_FNS = ["affine", "cumsum", "where", "sum", "compare", "argmax"]


def _gen_ints(b: _Builder, x: str) -> str:
    """An int64 (or bool) side computation on fresh ids, returned as an extra output and
    added into the float chain (int64 -> float32 promotion)."""
    shape = b.shapes[x]
    ids = b.input(shape, kind="ids", high=b.c.integers(2, 9))
    fn = b.c.choice(INT_FNS)
    d = _dim(b, shape) if shape else 0
    out_shape = shape
    if fn in ("sum", "argmax") and shape:
        out_shape = tuple(1 if i == d % len(shape) else n for i, n in enumerate(shape))
    if fn in ("cumsum", "sum", "argmax") and not shape:
        fn = "affine"
    v = b.op("ints", out_shape, fn=fn, x=x, ids=ids, dim=d)
    b.dtypes[v] = "bool" if fn == "compare" else "int64"
    b.side.append(v)
    if fn == "compare":
        return b.op("masked_fill", shape, x=x, c=v, value=0.0, threshold=None)
    return b.op("binary", _broadcast(shape, out_shape), fn=b.c.choice(["add", "mul", "sub"]), x=x, y=v, swap=False)


def _gen_expand(b: _Builder, x: str) -> str:
    shape = b.shapes[x]
    d = b.c.integers(0, len(shape))
    k = b.c.integers(2, 4)
    ones = [i for i, n in enumerate(shape) if n == 1]
    if ones and b.c.boolean():  # expand a size-1 dim in place
        d = b.c.choice(ones)
        out = (*shape[:d], k, *shape[d + 1 :])
        unsqueeze = False
    else:
        out = (*shape[:d], k, *shape[d:])
        unsqueeze = True
    if _numel(out) > b.max_numel:
        return _gen_unary(b, x)
    return b.op("expand", out, x=x, dim=d, unsqueeze=unsqueeze, shape=list(out))


def _gen_cumsum(b: _Builder, x: str) -> str:
    return b.op("cumsum", b.shapes[x], x=x, dim=_dim(b, b.shapes[x]))


GENERATORS = {
    "unary": _gen_unary, "binary": _gen_binary, "matmul": _gen_matmul, "bmm": _gen_bmm,
    "softmax": _gen_softmax, "layernorm": _gen_layernorm, "reduce": _gen_reduce,
    "transpose": _gen_transpose, "reshape": _gen_reshape, "slice": _gen_slice, "cat": _gen_cat,
    "where": _gen_where, "masked_fill": _gen_masked_fill, "embedding": _gen_embedding,
    "cumsum": _gen_cumsum, "ints": _gen_ints, "expand": _gen_expand,
}
KINDS = list(GENERATORS)


def generate(c: Chooser, min_ops: int = 3, max_ops: int = 12, big: bool | None = None) -> Program:
    """A random chain of `min_ops`..`max_ops` op records (plus the reshapes some ops need);
    `big` (default: one program in four) draws dims up to 128."""
    draw_big = c.integers(0, 3) == 3
    b = _Builder(c, big=draw_big if big is None else big)
    cur = b.input(b.shape())
    for _ in c.lengths(min_ops, max_ops):
        kind = c.choice(KINDS)
        if not b.shapes[cur] and kind not in ("unary", "binary", "reshape", "embedding"):
            cur = b.op("reshape", (1,), x=cur, shape=[1])
        cur = GENERATORS[kind](b, cur)
    b.prog.outputs = [cur, *b.side[:2]]
    if c.integers(0, 3) == 0:  # sometimes a second output, an earlier value
        earlier = [o["out"] for o in b.prog.ops[:-1] if o["out"] not in b.prog.outputs]
        if earlier:
            b.prog.outputs.append(c.choice(earlier))
    return b.prog


# --------------------------------------------------------------------------- rendering


def _arg(v: str | float) -> str:
    return repr(v) if isinstance(v, float) else v


def _expr(op: dict[str, Any]) -> str:
    x = op.get("x")
    kind = op["op"]
    if kind == "unary":
        return {
            "relu": f"torch.relu({x})", "exp": f"torch.exp({x})", "tanh": f"torch.tanh({x})",
            "sigmoid": f"torch.sigmoid({x})", "neg": f"-{x}", "abs": f"torch.abs({x})",
            "gelu": f"F.gelu({x})", "gelu_tanh": f"F.gelu({x}, approximate='tanh')",
            "silu": f"F.silu({x})", "square": f"{x} * {x}", "sqrt_abs": f"torch.sqrt(torch.abs({x}))",
            "log_abs1": f"torch.log(torch.abs({x}) + 1.0)", "rsqrt1": f"torch.rsqrt({x} * {x} + 1.0)",
            "sin": f"torch.sin({x})", "clamp": f"torch.clamp({x}, -0.5, 0.75)",
            "scale": f"{x} * 1.5", "shift": f"{x} + 0.25",
        }[op["fn"]]
    if kind == "binary":
        a, y = x, _arg(op["y"])
        if op["swap"]:
            a, y = y, a
        fn = op["fn"]
        if fn == "div":  # a denominator that stays away from 0
            return f"{a} / (torch.abs({y}) + 1.0)" if not isinstance(op["y"], float) or op["swap"] else f"{a} / {y}"
        if fn in ("maximum", "minimum"):
            if isinstance(op["y"], float):
                return f"torch.{fn}({x}, torch.tensor({op['y']!r}))"
            return f"torch.{fn}({a}, {y})"
        return f"{a} {dict(add='+', sub='-', mul='*')[fn]} {y}"
    if kind == "linear":
        return f"{op['m']}({x})"
    if kind == "matmul":
        return f"{x} @ {op['y']}"
    if kind == "bmm":
        return f"torch.bmm({x}, {op['y']}{'.transpose(1, 2)' if op.get('yt') else ''})"
    if kind == "softmax":
        return f"torch.{'log_softmax' if op['log'] else 'softmax'}({x}, dim={op['dim']})"
    if kind == "layernorm":
        return f"{op['m']}({x})"
    if kind == "layernorm_f":
        affine = "".join(f", {p}" for p in op.get("affine", []))
        return f"F.layer_norm({x}, {tuple(op['shape'])}{affine})"
    if kind == "reduce":
        dim = tuple(op["dim"]) if isinstance(op["dim"], list) else op["dim"]
        extra = f", unbiased={op['unbiased']}" if op["fn"] == "var" else ""
        return f"torch.{op['fn']}({x}, dim={dim}, keepdim={op['keepdim']}{extra})"
    if kind == "reduce_all":
        return f"{x}.{op['fn']}()"
    if kind == "transpose":
        return f"{x}.transpose({op['d0']}, {op['d1']})"
    if kind == "permute":
        return f"{x}.permute({', '.join(map(str, op['perm']))})"
    if kind == "reshape":
        return f"{x}.reshape({', '.join(map(str, op['shape']))})"
    if kind == "slice":
        step = f":{op['step']}" if op["step"] != 1 else ""
        start, stop = op["start"], op["stop"]
        if op.get("neg"):
            start, stop = start - op["size"], ("" if stop == op["size"] else stop - op["size"])
        index = ", ".join([":"] * op["dim"] + [f"{start}:{stop}{step}"])
        return f"{x}[{index}]"
    if kind == "cat":
        parts = [x, op["y"]] if op["first"] else [op["y"], x]
        if not op["first"]:  # x second: the output's dim layout is the same either way
            pass
        return f"torch.cat([{', '.join(parts)}], dim={op['dim']})"
    if kind == "where":
        return f"torch.where({op['c']} > {op['threshold']!r}, {x}, {_arg(op['y'])})"
    if kind == "masked_fill":
        value = "float('-inf')" if op["value"] == "-inf" else repr(op["value"])
        mask = op["c"] if op["threshold"] is None else f"{op['c']} > {op['threshold']!r}"
        return f"{x}.masked_fill({mask}, {value})"
    if kind == "ints":
        ids, d = op["ids"], op["dim"]
        return {
            "affine": f"{ids} * 3 - 4", "cumsum": f"torch.cumsum({ids}, dim={d})",
            "where": f"torch.where({x} > 0.0, {ids}, -1)", "sum": f"{ids}.sum(dim={d}, keepdim=True)",
            "compare": f"{x} > {ids}", "argmax": f"torch.argmax({x}, dim={d}, keepdim=True)",
        }[op["fn"]]
    if kind == "embedding_x":  # ids 0..2 from comparisons: NaN/inf give defined ids
        return f"{op['m']}(({x} > 0.0).long() + ({x} > 1.0).long())"
    if kind == "expand":
        src = f"{x}.unsqueeze({op['dim']})" if op["unsqueeze"] else x
        return f"{src}.expand({', '.join(map(str, op['shape']))})"
    if kind == "embedding":
        return f"{x} + {op['m']}({op['ids']})"
    if kind == "cumsum":
        return f"torch.cumsum({x}, dim={op['dim']})"
    raise ValueError(f"unknown op record {op}")


def _module_ctor(p: dict[str, Any]) -> str:
    kind = p["kind"]
    if kind == "param":
        return f"nn.Parameter(torch.randn({', '.join(map(str, p['shape']))}) * 0.5)"
    if kind == "linear":
        return f"nn.Linear({p['k']}, {p['n']}, bias={p['bias']})"
    if kind == "layernorm":
        return f"nn.LayerNorm({tuple(p['shape'])}, elementwise_affine={p['affine']})"
    if kind == "embedding":
        return f"nn.Embedding({p['num']}, {p['dim']})"
    raise ValueError(kind)


def render(prog: Program, title: str = "a fuzz program") -> str:
    """`prog` as a standalone model.py (defines `model` and `example_inputs`)."""
    lines = [
        f'"""{title} (testsuite/fuzz). Re-run: rdu-compile THIS_FILE --check"""',
        "",
        "import torch",
        "import torch.nn.functional as F  # noqa: F401",
        "from torch import nn",
        "",
        "torch.manual_seed(0)",
        "",
        "",
        "class Model(nn.Module):",
        "    def __init__(self):",
        "        super().__init__()",
    ]
    lines += [f"        {p['name']} = {_module_ctor(p)}" for p in prog.params]
    if not prog.params:
        lines.append("        pass")
    args = ", ".join(i["name"] for i in prog.inputs)
    lines += ["", f"    def forward(self, {args}):"]
    lines += [f"        {op['out']} = {_expr(op)}" for op in prog.ops]
    outs = prog.outputs
    lines.append(f"        return {outs[0]}" if len(outs) == 1 else f"        return ({', '.join(outs)})")
    lines += ["", "", "model = Model().eval()"]
    ins = []
    for i in prog.inputs:
        shape = tuple(i["shape"])
        if i["kind"] == "ids":
            ins.append(f"torch.randint(0, {i['high']}, {shape})")
        else:
            ins.append(f"torch.randn({shape})")
    lines.append(f"example_inputs = ({', '.join(ins)},)")
    return "\n".join(lines) + "\n"


def load(source: str) -> tuple[Any, tuple[Any, ...]]:
    """Execute a rendered model.py: (model, example_inputs)."""
    ns: dict[str, Any] = {"__name__": "fuzz_model"}
    exec(compile(source, "<fuzz model.py>", "exec"), ns)  # noqa: S102 - our own generated text
    return ns["model"], ns["example_inputs"]


# --------------------------------------------------------------------------- comparing


@dataclass
class Outcome:
    """What one program got in one configuration (see the module docstring)."""

    kind: str  # pass | refused | known | wrong | crash
    cls: str = ""  # refused: the message class; known: the KNOWN entry; wrong/crash: what
    detail: str = ""
    config: tuple[str, int] = ("", 0)


@dataclass
class Known:
    """A deviation owned by another part of the project, tolerated (and counted) by the fuzz.

    `applies(prog, got, want)` says whether it explains the mismatch of one output pair;
    `adjust(got, want)` returns the pair made comparable (e.g. a (1,) reshaped to ()).
    Remove an entry once its owner fixed it: the fuzz then checks that class again.
    """

    name: str
    reason: str
    applies: Any
    adjust: Any = None
    rtol: float = RTOL


def _uses(prog: Program, **match: Any) -> bool:
    return any(all(op.get(k) == v for k, v in match.items()) for op in prog.ops)


def _zero_d(g: Any, w: Any) -> bool:
    return tuple(w.shape) == () and tuple(g.shape) == (1,)


# Deviations owned by other parts of the project (issue 10 §2), each found by this fuzz and
# written up in docs/fuzz_findings.md. The fuzz tolerates exactly the deviation named (and
# counts it as "known"); everything else in such a program is still checked.
# Remove an entry when its owner's fix lands.
KNOWN: list[Known] = [
    # "zero-d-output" and "gelu-tanh-constant" were here; both are fixed (api.to_torch keeps
    # rank 0; GELU(tanh) is decomposed with the exact sqrt(2/pi)), so the fuzz checks them again.
]


def classify_refusal(message: str) -> str:
    """A stable class for a refusal message: its first clause with names and numbers blanked."""
    text = message.strip().splitlines()[0] if message.strip() else "(empty message)"
    text = re.sub(r"^([\w-]+)\{[^}]*\}", r"\1", text)  # a pass's options
    text = re.sub(r"'[^']*'|\"[^\"]*\"|`[^`]*`", "'_'", text)
    text = re.sub(r"%[\w.#]+|@\w+", "%_", text)
    text = re.sub(r"(tensor|memref|vector)<[^>]*>", r"\1<_>", text)
    text = re.sub(r"[\w./-]+\.py:\d+", "FILE:N", text)
    text = re.sub(r"\b\d+(\.\d+)?(e-?\d+)?\b", "N", text)
    text = re.sub(r"\(N(, N)*,?\)|\[N(, N)*\]|N(xN)+", "SHAPE", text)
    return re.split(r"(?<=[.;])\s", text, maxsplit=1)[0][:120]


def compare_outputs(got: Any, want: Any, prog: Program | None = None) -> tuple[str, str, list[str]]:
    """Compare emulator outputs with eager ones.

    Returns (kind, detail, known names used): kind "pass" or "wrong".
    """
    import torch

    gots, _ = torch.utils._pytree.tree_flatten(got)
    wants, _ = torch.utils._pytree.tree_flatten(want)
    if len(gots) != len(wants):
        return "wrong", f"{len(gots)} outputs, eager has {len(wants)}", []
    used: list[str] = []
    for i, (g, w) in enumerate(zip(gots, wants, strict=True)):
        problem = _mismatch(g, w)
        if problem and prog is not None:  # explained by known deviations (one or several)?
            active = [k for k in KNOWN if k.applies(prog, g, w)]
            for k in active:
                if k.adjust:
                    g, w = k.adjust(g, w)
            rtol = max([RTOL, *(k.rtol for k in active)])
            if active and not _mismatch(g, w, rtol):
                used += [k.name for k in active]
                problem = ""
        if problem:
            return "wrong", f"output {i}: {problem}", used
    return "pass", "", used


def _mismatch(g: Any, w: Any, rtol: float = RTOL) -> str:
    import numpy as np
    import torch

    if not isinstance(g, torch.Tensor) or not isinstance(w, torch.Tensor):
        return f"type {type(g).__name__}, eager {type(w).__name__}"
    if tuple(g.shape) != tuple(w.shape):
        return f"shape {tuple(g.shape)}, eager {tuple(w.shape)}"
    if g.dtype != w.dtype:
        return f"dtype {g.dtype}, eager {w.dtype}"
    gn, wn = g.detach().cpu().numpy(), w.detach().cpu().numpy()
    if not np.issubdtype(wn.dtype, np.floating):
        bad = int((gn != wn).sum())
        return f"{bad} of {wn.size} integer values differ" if bad else ""
    for what, fn in (("NaN", np.isnan), ("+inf", np.isposinf), ("-inf", np.isneginf)):
        if not np.array_equal(fn(gn), fn(wn)):
            return f"{what} at {int((fn(gn) != fn(wn)).sum())} positions differs"
    fin = np.isfinite(wn)
    gd, wd = gn[fin].astype(np.float64), wn[fin].astype(np.float64)
    norm = np.linalg.norm(wd)
    err = np.linalg.norm(gd - wd)
    rel = err / norm if norm > 0 else err
    if not rel <= rtol:
        return f"relative L2 error {rel:.3e} > {rtol:.0e} (max abs {np.abs(gd - wd).max():.3e})"
    return ""


def run_config(prog: Program, source: str, fabric: str, opt_level: int, imported: Any = None) -> Outcome:
    """Compile `source` (the rendered `prog`) for one configuration, run it, compare with
    eager. `imported` (from `rdu_compiler.import_model` on the same source) skips the
    export and lowering."""
    import torch

    import rdu_compiler
    from rdu_compiler.errors import RduError

    config = (fabric, opt_level)
    model, inputs = load(source)
    with torch.no_grad():
        want = model(*inputs)
    try:
        if imported is None:
            program = rdu_compiler.compile(model, inputs, fabric=fabric, opt_level=opt_level)
        else:
            program = rdu_compiler.compile_imported(imported, fabric=fabric, opt_level=opt_level)
    except RduError as e:
        return Outcome("refused", classify_refusal(str(e)), str(e), config)
    except Exception as e:  # noqa: BLE001 - a crash is what the fuzz looks for
        return Outcome("crash", f"compile: {type(e).__name__}", _tb(e), config)
    try:
        got = program.run(*inputs)
    except RduError as e:
        return Outcome("crash", f"run refused: {classify_refusal(str(e))}", str(e), config)
    except Exception as e:  # noqa: BLE001
        return Outcome("crash", f"run: {type(e).__name__}", _tb(e), config)
    kind, detail, used = compare_outputs(got, want, prog)
    if kind == "wrong" and "relative L2" in detail and ill_conditioned(model, inputs, want, got):
        return Outcome("illcond", "eager fp32 itself is off by as much", detail, config)
    if kind == "wrong" and "relative L2" in detail and moved_by_rounding(model, inputs, want, got):
        return Outcome("illcond", "one rounding per op moves eager as far", detail, config)
    if kind == "wrong" and decided_by_rounding(model, inputs, want, got):
        return Outcome("illcond", "integer result decided by one rounding", detail, config)
    if kind == "pass" and used:
        return Outcome("known", ",".join(sorted(set(used))), "", config)
    return Outcome(kind, detail.split(": ", 1)[-1].split(" ")[0] if kind == "wrong" else "", detail, config)


#: An emulator result may deviate from eager fp32 by more than RTOL only when eager fp32
#: itself is that far from the float64 result: within ILL_FACTOR times eager's own error.
ILL_FACTOR = 10.0


def ill_conditioned(model: Any, inputs: tuple[Any, ...], want: Any, got: Any) -> bool:
    """True if every float output's error against a float64 eager run is within
    ILL_FACTOR x eager fp32's own error there, and eager fp32 is off by more than RTOL/10
    somewhere: a program whose result is mostly rounding (a sum of a layer norm's outputs,
    say), not a compiler bug. Integer/bool outputs and NaN/inf positions must still agree.
    """
    import copy

    import numpy as np
    import torch

    m64 = copy.deepcopy(model).double()
    in64 = tuple(x.double() if x.is_floating_point() else x for x in inputs)
    with torch.no_grad():
        ref = m64(*in64)
    wants, _ = torch.utils._pytree.tree_flatten(want)
    gots, _ = torch.utils._pytree.tree_flatten(got)
    refs, _ = torch.utils._pytree.tree_flatten(ref)
    sensitive = False
    for w, g, r in zip(wants, gots, refs, strict=True):
        if not w.is_floating_point():
            if not torch.equal(w, r) or not torch.equal(g, w):
                return False
            continue
        wn, gn, rn = (t.detach().double().numpy() for t in (w, g, r))
        fin = np.isfinite(wn) & np.isfinite(rn)
        if not np.array_equal(np.isfinite(wn), np.isfinite(gn)):
            return False
        norm = max(np.linalg.norm(rn[fin]), 1e-30)
        eager_err = np.linalg.norm(wn[fin] - rn[fin]) / norm
        emu_err = np.linalg.norm(gn[fin] - rn[fin]) / norm
        if emu_err > max(RTOL, ILL_FACTOR * eager_err):
            return False
        sensitive |= eager_err > RTOL / 10
    return sensitive


#: Perturbed eager runs `decided_by_rounding` tries.
ROUNDING_RUNS = 32


class _RoundOtherWay:
    """A TorchDispatchMode (built lazily: torch is imported only when checking) that moves
    each float32 result of every ATen op one ulp up or down at random (a third each way, a
    third kept; zeros, inf and NaN are kept): eager as another correct fp32 implementation,
    whose every primitive op rounds within one ulp, might compute it."""

    def __new__(cls, seed: int) -> Any:
        import torch
        from torch.utils._python_dispatch import TorchDispatchMode
        from torch.utils._pytree import tree_map

        gen = torch.Generator().manual_seed(seed)

        def nudge(t: Any) -> Any:
            if not isinstance(t, torch.Tensor) or t.dtype != torch.float32 or not t.numel():
                return t
            way = torch.randint(0, 3, t.shape, generator=gen)
            keep = (way == 0) | (t == 0) | ~torch.isfinite(t)
            up = torch.nextafter(t, torch.full_like(t, math.inf))
            down = torch.nextafter(t, torch.full_like(t, -math.inf))
            return torch.where(keep, t, torch.where(way == 1, up, down))

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
                return tree_map(nudge, func(*args, **(kwargs or {})))

        return Mode()


def _decomposed(model: Any, inputs: tuple[Any, ...]) -> Any:
    """`model` exported with layer norm and softmax as their primitive ops, so each add,
    multiply and division rounds separately under `_RoundOtherWay`; None if it does not
    export."""
    import torch
    from torch._decomp import core_aten_decompositions, get_decompositions

    aten = torch.ops.aten
    table = core_aten_decompositions()
    table.update(get_decompositions([aten.native_layer_norm, aten._softmax, aten._log_softmax]))
    try:
        return torch.export.export(model, inputs).run_decompositions(table).module()
    except Exception:  # noqa: BLE001 - not decomposable: nothing is excused
        return None


def _rounded_other_way(graph: Any, inputs: tuple[Any, ...], seed: int) -> list[Any]:
    import torch

    with torch.no_grad(), _RoundOtherWay(seed):
        runs, _ = torch.utils._pytree.tree_flatten(graph(*inputs))
    return runs


def decided_by_rounding(model: Any, inputs: tuple[Any, ...], want: Any, got: Any) -> bool:
    """True if the emulator's integer outputs differ from eager's, and every differing
    position takes the emulator's value in at least one of ROUNDING_RUNS eager runs of the
    decomposed graph (layer norm and softmax as their primitive ops) in which every float
    op rounds one ulp the other way at random (`_RoundOtherWay`): an argmax over values one
    rounding apart, or a comparison of a sum that cancels to noise. Shapes, dtypes, NaN/inf
    positions and the float outputs of a program with no integer difference are not
    excused. Limit: an exact tie is broken at random by the perturbation, so a wrong
    tie-break would be excused here; testsuite/unit/test_numerics.py
    (`test_argmax_argmin_pick_the_first_nan_or_the_first_best`) checks tie-breaks.
    """
    import torch

    wants, _ = torch.utils._pytree.tree_flatten(want)
    gots, _ = torch.utils._pytree.tree_flatten(got)
    pairs = [(g, w) for g, w in zip(gots, wants, strict=True)
             if isinstance(w, torch.Tensor) and isinstance(g, torch.Tensor) and not w.is_floating_point()]
    if len(gots) != len(wants) or any(g.shape != w.shape or g.dtype != w.dtype for g, w in pairs):
        return False
    unexplained = [g != w for g, w in pairs]
    if not any(bool(u.any()) for u in unexplained):
        return False
    graph = _decomposed(model, inputs)
    if graph is None:
        return False
    index = [i for i, w in enumerate(wants) if isinstance(w, torch.Tensor) and not w.is_floating_point()]
    for seed in range(ROUNDING_RUNS):
        runs = _rounded_other_way(graph, inputs, seed)
        for u, i, (g, _) in zip(unexplained, index, pairs, strict=True):
            u &= runs[i] != g
        if not any(bool(u.any()) for u in unexplained):
            return True
    return False


def _rel_l2(a: Any, b: Any) -> float:
    """Relative L2 distance of `a` from `b` over the positions where both are finite
    (absolute when `b` is zero there), as `_mismatch` measures it."""
    import numpy as np

    an, bn = (t.detach().double().cpu().numpy() for t in (a, b))
    fin = np.isfinite(an) & np.isfinite(bn)
    norm = np.linalg.norm(bn[fin])
    err = float(np.linalg.norm(an[fin] - bn[fin]))
    return err / norm if norm > 0 else err


def moved_by_rounding(model: Any, inputs: tuple[Any, ...], want: Any, got: Any) -> bool:
    """True if every float output of the emulator is within ILL_FACTOR x the distance
    from eager that eager itself moves when each of its float ops rounds one ulp the other
    way (the largest over ROUNDING_RUNS `_RoundOtherWay` runs of the decomposed graph), and
    that distance exceeds RTOL/10: the result is a handful of roundings amplified (a layer
    norm over equal values divides a one-ulp mean error by sqrt(eps); a sum of 768 layer
    norm outputs cancels to noise), so another correct fp32 order of operations is as far
    off. This is the yardstick `ill_conditioned` lacks where float64 and eager agree
    exactly (fuzz seed 31239: eager's mean of three equal values is exact, a sequential
    fp32 sum is one ulp off). Integer outputs, shapes, dtypes and NaN/inf positions must
    still agree exactly.
    """
    import torch

    wants, _ = torch.utils._pytree.tree_flatten(want)
    gots, _ = torch.utils._pytree.tree_flatten(got)
    if len(gots) != len(wants):
        return False
    floats = []
    for i, (g, w) in enumerate(zip(gots, wants, strict=True)):
        if not isinstance(g, torch.Tensor) or not isinstance(w, torch.Tensor):
            return False
        if g.shape != w.shape or g.dtype != w.dtype:
            return False
        if not w.is_floating_point():
            if not torch.equal(g, w):
                return False
            continue
        if not torch.equal(torch.isnan(g), torch.isnan(w)) or not torch.equal(
                torch.isinf(g) & (g > 0), torch.isinf(w) & (w > 0)) or not torch.equal(
                torch.isinf(g) & (g < 0), torch.isinf(w) & (w < 0)):
            return False
        floats.append(i)
    if not floats:
        return False
    graph = _decomposed(model, inputs)
    if graph is None:
        return False
    spread = dict.fromkeys(floats, 0.0)
    for seed in range(ROUNDING_RUNS):
        runs = _rounded_other_way(graph, inputs, seed)
        for i in floats:
            spread[i] = max(spread[i], _rel_l2(runs[i], wants[i]))
    sensitive = False
    for i in floats:
        if _rel_l2(gots[i], wants[i]) > max(RTOL, ILL_FACTOR * spread[i]):
            return False
        sensitive |= spread[i] > RTOL / 10
    return sensitive


def _tb(e: BaseException) -> str:
    return "".join(traceback.format_exception(type(e), e, e.__traceback__)[-6:])


def check_program(prog: Program, configs: tuple[tuple[str, int], ...] = CONFIGS) -> list[Outcome]:
    """`run_config` for each configuration, sharing one export and lowering (the import is
    deterministic: testsuite/unit/test_determinism.py). A program the frontend refuses is
    refused, with the same message, in every configuration."""
    import rdu_compiler
    from rdu_compiler.errors import RduError

    source = render(prog)
    model, inputs = load(source)
    try:
        imported = rdu_compiler.import_model(model, inputs)
    except RduError as e:
        return [Outcome("refused", classify_refusal(str(e)), str(e), config) for config in configs]
    except Exception as e:  # noqa: BLE001 - a crash is what the fuzz looks for
        return [Outcome("crash", f"compile: {type(e).__name__}", _tb(e), config) for config in configs]
    return [run_config(prog, source, fabric, opt, imported) for fabric, opt in configs]
