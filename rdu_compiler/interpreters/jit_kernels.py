"""The numba functions behind `interpreters/jit.py`: the bf16 scalar helpers its generated
loops call (inlined) and the bf16 fold. Imported only when a loop is compiled (numba's
import costs ~0.4 s); the generated loop modules import their helpers from here.

bf16 values are held as the f32 values they are (exact). `_round_bf16` is
round-to-nearest-even of an f32 to bf16 precision in integer form: add 0x7FFF plus the
lowest kept bit, clear the low 16 bits (ties to even, subnormals and overflow to inf
included; not for NaN, which the callers hand back to numpy).
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np

u32 = np.uint32


def _cached(fn: Any) -> Any:
    """`numba.njit(error_model="numpy", cache=True)(fn)`; without the on-disk cache where
    numba finds no writable place for it (a read-only install and home)."""
    try:
        return numba.njit(error_model="numpy", cache=True)(fn)
    except RuntimeError:  # "cannot cache function ...: no locator available"
        return numba.njit(error_model="numpy")(fn)


@numba.njit(inline="always")
def _round_bf16(s: Any) -> Any:  # f32 -> the nearest bf16 (ties to even), as f32; not for NaN
    u = np.float32(s).view(np.uint32)
    return u32((u + u32(0x7FFF) + ((u >> u32(16)) & u32(1))) & u32(0xFFFF0000)).view(np.float32)


@numba.njit(inline="always")
def _widen(b: Any) -> Any:  # bf16 bits -> its f32 value (exact)
    return u32(u32(b) << u32(16)).view(np.float32)


@numba.njit(inline="always")
def _bits(f: Any) -> Any:  # a bf16 value held as f32 -> its 16 bits
    return u32(np.float32(f).view(np.uint32) >> u32(16))


@_cached
def fold(x: Any, out: Any, mul: bool) -> bool:
    """Each row of `x` (R, L) bf16 bits, C order, folded in index order into `out` (R,):
    acc = x[0]; acc = round(acc + x[i]) (or *), as `folds._fold`. True if any step gave a
    NaN (then `out` is not to be used)."""
    rows, n = x.shape
    block = 64
    tmp = np.empty((n, block), np.float32)  # a block of rows, transposed: the fold runs across rows (SIMD)
    acc = np.empty(block, np.float32)
    bad = False
    for r0 in range(0, rows, block):
        m = min(block, rows - r0)
        for r in range(m):
            for i in range(n):
                tmp[i, r] = _widen(x[r0 + r, i])
        for r in range(m):
            acc[r] = tmp[0, r]
        for i in range(1, n):
            for r in range(m):
                s = acc[r] * tmp[i, r] if mul else acc[r] + tmp[i, r]
                bad |= s != s
                acc[r] = _round_bf16(s)
        for r in range(m):
            out[r0 + r] = _bits(acc[r])
    return bad
