"""bf16 reductions as numpy computes them, one vectorised step per element of the reduced dim.

numpy reduces a bf16 array with ml_dtypes' binary loop. Along one axis with a
non-negative stride that is a fold in index order: `out = op(out, x[i])`, each step
rounded to bf16. It is not pairwise: numpy sums pairwise only in its own float loops.
`ufunc.reduce` makes one loop call per output and runs at 3-5 ns an element. Softmax's max
and sum over the last dim of a (1, 12, 128, 128) tile are such reductions.

`reduce` computes the same fold as L - 1 binary calls, each over all the outputs at once;
a max or min goes through f32 instead, with the outputs where the fold's order could show
(zeros, NaNs) folded (`_extremum`). A large add or multiply fold is one compiled loop
(`jit.fold`: the same steps, the same bits) from the second fold of its shape on.
Measured on an Intel Xeon, one thread, idle, medians of 30, on softmax's (1, 12, 128, 128)
tiles: np.add.reduce took 0.85 ms and the fold 0.30 ms; np.maximum.reduce took 0.63 ms and
the fold 0.29 ms (2026-12-04). The fold is used when there are at least `FOLD_MIN_OUTPUTS` outputs, so
that each step's call overhead (~1 us) is shared; a long reduction into few outputs (one
row of 50,257 logits) stays `ufunc.reduce`. The bits are numpy's
(`testsuite/unit/test_folds.py`: add, multiply, maximum and minimum, with NaN, inf and
signed zeros, over contiguous, transposed, strided and broadcast tiles).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rdu_compiler.interpreters import jit
from rdu_compiler.interpreters.bf16 import BF16

#: At least this many outputs for a fold [NF: below it, ~1 us per step is more than
#: `ufunc.reduce`'s 3-5 ns an element].
FOLD_MIN_OUTPUTS = 512

_FOLDED = frozenset({"add", "multiply", "maximum", "minimum"})


def folds(ufunc: np.ufunc, x: Any, axes: tuple[int, ...] | list[int]) -> bool:
    """Whether `reduce` folds `x` step by step (else it calls `ufunc.reduce`)."""
    if not isinstance(x, np.ndarray) or x.dtype != BF16 or ufunc.__name__ not in _FOLDED or len(axes) != 1:
        return False
    axis = axes[0]
    n = x.shape[axis]
    return n >= 2 and x.strides[axis] >= 0 and x.size // n >= FOLD_MIN_OUTPUTS


def reduce(ufunc: np.ufunc, x: Any, axes: tuple[int, ...] | list[int]) -> Any:
    """`ufunc.reduce(x, axis=axes, keepdims=True)`, bit for bit: a fold over a bf16 tile's
    one reduced axis when `folds` says so."""
    if not folds(ufunc, x, axes):
        return ufunc.reduce(x, axis=tuple(axes), keepdims=True)
    axis = axes[0]
    if ufunc is np.maximum or ufunc is np.minimum:
        return _extremum(ufunc, x, axis)
    r = jit.fold(ufunc, x, axis)
    return r if r is not None else _fold(ufunc, x, axis)


def _fold(ufunc: np.ufunc, x: np.ndarray, axis: int) -> np.ndarray:
    steps = np.moveaxis(x, axis, 0)
    acc = steps[0].copy()
    for i in range(1, steps.shape[0]):
        ufunc(acc, steps[i], out=acc)
    return np.expand_dims(acc, axis)


def _extremum(ufunc: np.ufunc, x: np.ndarray, axis: int) -> np.ndarray:
    """A max or min reduce of bf16 `x` through f32 (exact both ways) on numpy's SIMD loop;
    where the order of the fold can show in the bits, by the fold. A non-zero, non-NaN
    extremum is one value with one bit pattern, whatever the order; a zero extremum may
    be +0 or -0 and a NaN one carries the payload of the NaN the fold met first, so those
    outputs are recomputed by `_fold` (np.maximum and np.minimum propagate NaNs, so a
    NaN anywhere in a row shows as a NaN f32 result)."""
    wide = ufunc.reduce(x.astype(np.float32), axis=axis, keepdims=True)
    out = wide.astype(BF16)
    redo = (wide == 0) | np.isnan(wide)
    if redo.any():
        rows = np.moveaxis(x, axis, -1)[np.moveaxis(redo, axis, -1)[..., 0]]  # (outputs to redo, L)
        out[redo] = _fold(ufunc, rows, 1)[:, 0]
    return out
