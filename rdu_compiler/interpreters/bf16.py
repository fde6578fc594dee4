"""bf16 unary payload ops by table: the op on every one of the 65,536 bf16 values, once.

A unary elementwise op on bf16 is a function of the element's 16 bits, so its value on a
tile is a lookup of each element's bits in a table holding the op's value on every bf16
value. The table is computed by the same numpy / ml_dtypes call the payload would make
(`fn(all bf16 values)`), so each looked-up element has the bits the direct call gives
it, NaN payloads and the result dtype included (scipy's erf of bf16 is f32: so is its
table). ml_dtypes evaluates bf16 ufuncs one element at a time through libm (tanh: about
20-90 ns an element here); a lookup costs about 1 ns. The payload uses a table for
arrays of at least `TABLE_MIN` elements. `testsuite/unit/test_bf16_tables.py` checks every
unary payload op's table against the direct call on all 65,536 values, in shuffled order
and at odd offsets (the direct call must not depend on an element's position).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

import ml_dtypes
import numpy as np

BF16 = np.dtype(ml_dtypes.bfloat16)

#: Arrays below this many elements call the op directly [NF: below it the lookup's
#: index conversion costs about what ml_dtypes' loop does for cheap ops].
TABLE_MIN = 1024

_TABLES: dict[Hashable, tuple[np.ndarray, ...]] = {}


def all_values() -> np.ndarray:
    """The 65,536 bf16 values in the order of their bits (element i has bits i)."""
    return np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(BF16)


def table(key: Hashable, fn: Callable[[np.ndarray], Any]) -> np.ndarray:
    """`fn` on every bf16 value, indexed by the value's bits (computed on first use, kept)."""
    ts = _TABLES.get(key)
    return (ts if ts is not None else tables(key, lambda v: [fn(v)]))[0]


def tabled(x: Any) -> bool:
    """Whether `x` is a bf16 array large enough for a table lookup."""
    return isinstance(x, np.ndarray) and x.dtype == BF16 and x.size >= TABLE_MIN


def lookup(key: Hashable, fn: Callable[[np.ndarray], Any], x: np.ndarray) -> np.ndarray:
    """`fn(x)` for a bf16 array `x`, element by element from `fn`'s table (the same bits;
    a new C-contiguous array of `x`'s shape)."""
    return np.take(table(key, fn), x.view(np.uint16))


def tables(key: Hashable, fn: Callable[[np.ndarray], list[Any]]) -> tuple[np.ndarray, ...]:
    """Several tables at once: `fn` on every bf16 value returns one array per table (a bf16
    chain's exits, `interpreters/chains.py`); computed on first use, kept by `key`."""
    ts = _TABLES.get(key)
    if ts is None:
        with np.errstate(all="ignore"):  # NaN and inf inputs are in the table; the tile's own call warns as before
            ts = tuple(np.asarray(v) for v in fn(all_values()))
        for t in ts:
            if t.shape != (1 << 16,):
                raise ValueError(f"bf16 table {key}: the op is not elementwise (shape {t.shape})")
            t.flags.writeable = False
        _TABLES[key] = ts
    return ts
