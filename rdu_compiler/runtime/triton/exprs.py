"""Small pieces of Triton source: dtypes, literals, index arithmetic, a line writer."""

from __future__ import annotations

import keyword
import math
import re
from dataclasses import dataclass, field
from typing import Any

from xdsl.dialects.builtin import Float32Type, IntegerType
from xdsl.ir import Attribute

from rdu_compiler.dtypes import ElementType, UnsupportedElementType, is_float, lookup
from rdu_compiler.runtime.triton.program import fail


def _row(t: Attribute, what: str) -> ElementType:
    try:
        return lookup(t)
    except UnsupportedElementType:
        raise fail(f"element type {t} has no {what} dtype") from None


def tl_dtype(t: Attribute) -> str:
    """The `tl.*` dtype of an MLIR element type (index is int32 inside kernels; `dtypes.TABLE`).

    Raises:
        CompileError: an element type with no Triton dtype.
    """
    return _row(t, "Triton").triton


def tl_unsigned(t: Attribute) -> str:
    """The same-width unsigned `tl.*` dtype of an integer element type (i1: tl.int1).

    Raises:
        CompileError: a float or unsupported element type.
    """
    u = _row(t, "Triton").triton_unsigned
    if u is None:
        raise fail(f"element type {t} has no unsigned Triton dtype")
    return u


def torch_dtype(t: Attribute) -> str:
    """The `torch.*` dtype of an MLIR element type, as source text (`dtypes.TABLE`).

    Raises:
        CompileError: an element type with no torch dtype.
    """
    return f"torch.{_row(t, 'torch').torch}"


def py_literal(value: Any) -> str:
    """A Python literal for a scalar (inf and nan spelled as float(...))."""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, int):
        return repr(value)
    v = float(value)
    if math.isnan(v):
        return 'float("nan")'
    if math.isinf(v):
        return 'float("inf")' if v > 0 else 'float("-inf")'
    return repr(v)


def literal(value: Any, t: Attribute) -> str:
    """A Triton scalar of element type `t` (fp32 as a plain Python float, others typed)."""
    if isinstance(t, Float32Type) and math.isfinite(float(value)):
        return py_literal(float(value))
    if isinstance(t, IntegerType) and t.width.data == 1:
        return f"tl.full([], {py_literal(bool(value))}, tl.int1)"
    if is_float(t):
        value = float(value)
    else:
        value = int(value)
    return f"tl.full([], {py_literal(value)}, {tl_dtype(t)})"


def pow2_at_least(n: int) -> int:
    return 1 if n <= 1 else 1 << (n - 1).bit_length()


def clamp_pow2(n: int, lo: int, hi: int) -> int:
    return max(lo, min(hi, pow2_at_least(max(1, n))))


# --------------------------------------------------------------------------- indices


@dataclass(frozen=True)
class Coord:
    """An integer tensor expression with values in [0, extent); `axes` name the masks it needs."""

    expr: str
    extent: int
    axes: frozenset[str] = frozenset()


ZERO = Coord("0", 1)


def index_expr(coords: list[tuple[Coord, int]], s: int, e: int) -> Coord:
    """The index of a loop of size `e` and row-major stride `s` in a linear space whose
    position is `sum(coord * stride)` over `coords`: `(position // s) % e`, simplified.

    Terms are taken by decreasing stride: a stride that `s` divides adds `coord * (stride
    // s)` to the quotient; the first smaller stride that divides `s`, with everything
    below it smaller than it, adds `coord // (s // stride)` and ends the walk; terms whose
    sum stays below `s` vanish. Anything else keeps the general form."""
    if e == 1:
        return ZERO
    terms = sorted(((c, st) for c, st in coords if c.extent > 1), key=lambda t: -t[1])
    parts: list[tuple[str, int, frozenset[str]]] = []  # expression, max value, axes
    simple = True
    for i, (c, st) in enumerate(terms):
        below = sum((c2.extent - 1) * st2 for c2, st2 in terms[i + 1 :])
        if st % s == 0:
            f = st // s
            if f % e:
                parts.append((c.expr if f == 1 else f"{c.expr} * {f}", (c.extent - 1) * f, c.axes))
            continue
        if st < s and s % st == 0 and below < st:
            q = s // st
            parts.append((f"{c.expr} // {q}", (c.extent - 1) // q, c.axes))
            break
        if (c.extent - 1) * st + below < s:
            break
        simple = False
        break
    if simple:
        parts = [p for p in parts if p[1] > 0]
        if not parts:
            return ZERO
        top = sum(p[1] for p in parts)
        expr = " + ".join(p[0] for p in parts)
        axes = frozenset().union(*(p[2] for p in parts))
        if top >= e:
            return Coord(f"(({expr}) % {e})", e, axes)
        return Coord(f"({expr})" if len(parts) > 1 or "/" in expr or "*" in expr else expr, top + 1, axes)
    pos = " + ".join(c.expr if st == 1 else f"{c.expr} * {st}" for c, st in terms)
    axes = frozenset().union(*(c.axes for c, _ in terms))
    expr = f"({pos})" if s == 1 else f"(({pos}) // {s})"
    return Coord(f"({expr} % {e})", e, axes)


def address(forms: tuple[tuple[tuple[int, ...], int], ...], dims: list[Coord], strides: tuple[int, ...]) -> Coord:
    """Element offset of an operand access `forms` at loop indices `dims`, with `strides`."""
    rank = len(dims)
    coeffs = [0] * rank
    const = 0
    for (cs, c0), st in zip(forms, strides, strict=True):
        const += c0 * st
        for d, c in enumerate(cs):
            coeffs[d] += c * st
    parts = []
    axes: frozenset[str] = frozenset()
    for d in range(rank):
        if coeffs[d] == 0 or dims[d].extent <= 1:
            continue
        parts.append(dims[d].expr if coeffs[d] == 1 else f"{dims[d].expr} * {coeffs[d]}")
        axes |= dims[d].axes
    if const:
        parts.append(str(const))
    if not parts:
        return Coord("0", 1)
    return Coord(" + ".join(parts), 0, axes)


# --------------------------------------------------------------------------- writer


@dataclass
class Writer:
    """Lines of one kernel body, with fresh names and caches of shared subexpressions."""

    lines: list[str] = field(default_factory=list)
    indent: int = 1
    counter: int = 0
    cache: dict[str, str] = field(default_factory=dict)

    def line(self, text: str) -> None:
        self.lines.append("    " * self.indent + text)

    def fresh(self, stem: str = "v") -> str:
        self.counter += 1
        return f"{stem}{self.counter}"

    def let(self, expr: str, stem: str = "v", share: bool = False) -> str:
        """Bind `expr` to a new name (once per distinct expression when `share`)."""
        if share and expr in self.cache:
            return self.cache[expr]
        name = self.fresh(stem)
        self.line(f"{name} = {expr}")
        if share:
            self.cache[expr] = name
        return name

    def text(self) -> str:
        return "\n".join(self.lines)


def ident(name: str, taken: set[str]) -> str:
    """`name` as a fresh Python identifier of the generated source (not a keyword or a
    name the file uses itself), added to `taken`."""
    base = re.sub(r"\W", "_", name) or "v"
    if base[0].isdigit():
        base = "_" + base
    if keyword.iskeyword(base) or base in ("torch", "triton", "tl", "run", "weights", "inputs", "dev", "math"):
        base += "_"
    out, n = base, 1
    while out in taken:
        n += 1
        out = f"{base}_{n}"
    taken.add(out)
    return out
