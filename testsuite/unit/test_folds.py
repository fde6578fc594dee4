"""bf16 reductions by fold (`interpreters.folds`): numpy's `ufunc.reduce` bits, on every
layout a tile can have, and only where the fold applies."""

from __future__ import annotations

import numpy as np
import pytest

from rdu_compiler.interpreters import folds
from rdu_compiler.interpreters.bf16 import BF16, all_values


def _tile(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """bf16 values drawn from all 65,536 (NaNs with payloads, infs, signed zeros,
    subnormals), half of them from a narrow range so that sums round."""
    every = all_values()
    wide = rng.choice(every, size=shape)
    narrow = (rng.standard_normal(shape) * 4).astype(BF16)
    return np.where(rng.random(shape) < 0.5, wide, narrow)


def _layouts(x: np.ndarray) -> list[tuple[str, np.ndarray, int]]:
    """(name, array, reduced axis): the same values in several layouts."""
    t = np.ascontiguousarray(np.swapaxes(x, 2, 3))
    wide = np.zeros(x.shape[:-1] + (x.shape[-1] * 2,), dtype=BF16)
    wide[..., ::2] = x
    return [("contiguous", x, 3), ("transposed", np.swapaxes(t, 2, 3), 3), ("strided", wide[..., ::2], 3),
            ("over a middle axis", np.swapaxes(x, 2, 3), 2), ("broadcast", np.broadcast_to(x[:, :, :1], x.shape), 2)]


@pytest.mark.parametrize("op", [np.add, np.multiply, np.maximum, np.minimum])
def test_folds_give_the_bits_of_ufunc_reduce(op: np.ufunc) -> None:
    rng = np.random.default_rng(0)
    x = _tile(rng, (1, 6, 96, 96))
    for name, arr, axis in _layouts(x):
        assert folds.folds(op, arr, [axis]), name
        with np.errstate(all="ignore"):
            got = folds.reduce(op, arr, [axis])
            want = op.reduce(arr, axis=(axis,), keepdims=True)
        assert got.dtype == want.dtype and got.shape == want.shape, name
        assert np.array_equal(got.view(np.uint16), want.view(np.uint16)), name


def test_a_sum_is_a_fold_in_index_order() -> None:
    """Rounding each step matters: 1 + 2^-8 + 2^-8 folded left in bf16 is 1 (each step is
    a tie, rounded to even), and 1 + 2^-7 when the two small terms meet first or the sum is
    kept in f32. numpy's bf16 reduce, and so `folds.reduce`, gives 1."""
    x = np.broadcast_to(np.array([1.0, 2.0**-8, 2.0**-8], dtype=np.float32).astype(BF16), (1024, 3))
    assert np.all(folds.reduce(np.add, x, [1]) == 1.0)
    assert np.all(np.add.reduce(x.astype(np.float32), axis=1) == 1.0 + 2.0**-7)


def test_where_it_does_not_fold() -> None:
    rng = np.random.default_rng(1)
    x = _tile(rng, (1, 4, 128, 128))
    assert not folds.folds(np.add, x.astype(np.float32), [3])  # numpy's own loop: pairwise sums
    assert not folds.folds(np.add, x, [2, 3])  # two axes: numpy's order follows the layout
    assert not folds.folds(np.add, x[..., ::-1], [3])  # a negative stride: numpy runs it backwards
    assert not folds.folds(np.add, x[:1, :1, :1], [3])  # few outputs: ufunc.reduce is faster
    assert not folds.folds(np.logaddexp, x, [3])
    with np.errstate(all="ignore"):
        for arr, axes in [(x[..., ::-1], [3]), (x, [2, 3])]:
            got = folds.reduce(np.add, arr, axes)
            assert np.array_equal(got.view(np.uint16), np.add.reduce(arr, axis=tuple(axes), keepdims=True).view(np.uint16))


@pytest.mark.parametrize("op", [np.maximum, np.minimum])
def test_a_max_or_min_through_f32_keeps_the_folds_zero_signs_and_nan_payloads(op: np.ufunc) -> None:
    """Rows whose extremum is a zero (+0 and -0 mixed, in either order) or a NaN (several
    payloads, both signs): the order of the fold decides the bits there, and the f32 way
    hands those rows to the fold (`folds._extremum`)."""
    rng = np.random.default_rng(2)
    sign = -1.0 if op is np.maximum else 1.0  # the other values lie beyond the zeros
    x = (sign * (1 + rng.random((1, 2, 640, 64)))).astype(np.float32).astype(BF16)
    bits = x.view(np.uint16)
    bits[0, 0, :, 5] = 0x0000
    bits[0, 0, ::2, 9] = 0x8000  # -0 after +0 in even rows
    bits[0, 0, 1::2, 3] = 0x8000  # and before it in odd rows
    nans = np.array([0x7FC1, 0xFFC0, 0x7F81, 0xFFAB], dtype=np.uint16)
    bits[0, 1, :, 7] = nans[np.arange(640) % 4]
    bits[0, 1, ::3, 20] = nans[::-1][np.arange(0, 640, 3) % 4]
    assert folds.folds(op, x, [3])
    with np.errstate(all="ignore"):
        got = folds.reduce(op, x, [3])
        want = op.reduce(x, axis=(3,), keepdims=True)
    assert np.array_equal(got.view(np.uint16), want.view(np.uint16))
