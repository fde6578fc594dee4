"""Compiled map payloads and bf16 folds (`interpreters/jit.py`) against the numpy steps: the same bits.

Each test compiles a model, runs it with `RDU_JIT=0` (numpy) and then twice with the JIT
on (the loops compile on a kernel's second run), with `JIT_MIN` at 0 so that every map
tile qualifies, and compares the outputs bit for bit. `RUNS` says the compiled loops ran
(or handed a NaN back), so that no test passes with the JIT silently off.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import rdu_compiler
from rdu_compiler.frontend.torch.model_file import load_model_file
from rdu_compiler.interpreters import jit
from rdu_compiler.interpreters.bf16 import BF16, all_values
from testsuite.jit_compare import bits as _bits
from testsuite.jit_compare import on_and_off
from testsuite.jit_compare import same as _same

pytest.importorskip("numba")


def _on_and_off(monkeypatch: pytest.MonkeyPatch, model: nn.Module, inputs: tuple[Any, ...]) -> tuple[list[Any], list[Any]]:
    """The outputs with the JIT off, and on (its second run); `RUNS` counts the on runs."""
    monkeypatch.setattr(jit, "JIT_MIN", 0)
    return on_and_off(monkeypatch, rdu_compiler.compile(model, inputs, fabric="sn40l"), inputs)


class _Arith(nn.Module):
    def forward(self, x: torch.Tensor, y: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (x + y, x - y, x * y, x / y, -x * 0.125 + b, (x.float() * y.float() + b.float()), x.float().to(torch.bfloat16) * 3.0,
                torch.tanh(x) * y, torch.exp(x - y),  # (bf16 tables: tanh alone, exp after a rounded subtract)
                torch.where(x > y, x, y * 2.0), x.masked_fill(x <= b, -1.0), torch.where(x.float() != y.float(), x.float(), 0.5))


def _operands() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x: every bf16 value that is not a NaN (±0, subnormals, ±inf included) in a (255, 256)
    tile; y: non-zero finite bf16 values, shuffled (so no op makes a NaN); b: a broadcast row."""
    v = all_values()
    x = v[~np.isnan(v.astype(np.float32))][: 255 * 256]
    rng = np.random.default_rng(0)
    finite = v[np.isfinite(v.astype(np.float32)) & (v.astype(np.float32) != 0)]
    y = rng.choice(finite, size=x.size)
    b = rng.standard_normal(256).astype(np.float32).astype(BF16)

    def t(a: np.ndarray, shape: tuple[int, ...]) -> torch.Tensor:
        return torch.from_numpy(a.view(np.int16).reshape(shape).copy()).view(torch.bfloat16)

    return t(x, (255, 256)), t(y, (255, 256)), t(b, (1, 256))


def test_bf16_arithmetic_on_every_value(monkeypatch: pytest.MonkeyPatch) -> None:
    off, on = _on_and_off(monkeypatch, _Arith(), _operands())
    assert jit.RUNS["map"] > 0 and jit.RUNS["map_nan"] == 0, jit.RUNS
    _same(off, on)


class _Compare(nn.Module):
    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(torch.where(c, x, y) for c in (x == y, x > y, x >= y, x < y, x <= y, x != y)) + (torch.where(x.isnan(), y, x),)


def test_compares_and_selects_with_nans(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every predicate torch-mlir emits on NaN, inf and signed-zero operands: a compare and
    a select round nothing, so NaN inputs stay compiled (no arithmetic made them)."""
    special = np.array([np.nan, -np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0, 1e-40], np.float32)
    rng = np.random.default_rng(3)
    x, y = (rng.choice(special, size=(200, 300)).astype(np.float32) for _ in range(2))
    for dtype in (torch.float32, torch.bfloat16):
        off, on = _on_and_off(monkeypatch, _Compare(), (torch.from_numpy(x).to(dtype), torch.from_numpy(y).to(dtype)))
        assert jit.RUNS["map"] > 0 and jit.RUNS["map_nan"] == 0, (dtype, jit.RUNS)
        _same(off, on)


def test_a_nan_hands_the_kernel_back_to_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
    x, y, b = _operands()
    x = x.clone()
    x[3, 7] = float("nan")
    off, on = _on_and_off(monkeypatch, _Arith(), (x, y, b))
    assert jit.RUNS["map_nan"] > 0, jit.RUNS
    _same(off, on)


def test_f32_multiply_add_is_not_contracted(monkeypatch: pytest.MonkeyPatch) -> None:
    """x * y + z in f32 on random data with subnormals: one rounding per op (an FMA would
    differ in the last bit on a good share of the elements)."""

    class MulAdd(nn.Module):
        def forward(self, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
            return x * y + z / y

    g = torch.Generator().manual_seed(0)
    x, y, z = (torch.randn(64, 512, generator=g) for _ in range(3))
    x[0, :16] = 1e-39  # subnormal
    off, on = _on_and_off(monkeypatch, MulAdd(), (x, y, z))
    assert jit.RUNS["map"] > 0, jit.RUNS
    _same(off, on)


def test_gpt2_two_layers_in_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    """Softmax (scale and mask, exp, sum, divide), LayerNorm, GELU's chain, residuals."""
    from rdu_compiler.interpreters import folds

    monkeypatch.setattr(folds, "FOLD_MIN_OUTPUTS", 1)  # the small model's softmax sums fold too
    model, inputs = load_model_file("examples/gpt2_2layer.py")
    off, on = _on_and_off(monkeypatch, model.to(torch.bfloat16), inputs)
    assert jit.RUNS["map"] > 0 and jit.RUNS["fold"] > 0, jit.RUNS
    _same(off, on)


@pytest.mark.parametrize("axis", [0, 1, 2])
@pytest.mark.parametrize("ufunc", [np.add, np.multiply])
def test_bf16_fold_is_the_numpy_fold(monkeypatch: pytest.MonkeyPatch, axis: int, ufunc: np.ufunc) -> None:
    from rdu_compiler.interpreters import folds

    monkeypatch.setattr(jit, "JIT_MIN", 0)
    monkeypatch.setattr(jit, "_SEEN", set())
    rng = np.random.default_rng(axis)
    if ufunc is np.multiply:  # magnitudes in [0.5, 2]: 130 products stay in range; zeros and a subnormal
        x = (rng.uniform(0.5, 2, (9, 70, 130)) * rng.choice([-1, 1], (9, 70, 130))).astype(np.float32).astype(BF16)
        x[0, 0, :3] = np.array([0.0, -0.0, 1e-40], np.float32).astype(BF16)
    else:  # sums that round at every step; signed zeros, a subnormal, an infinity, a near-overflow
        x = (rng.standard_normal((9, 70, 130)) * 50).astype(np.float32).astype(BF16)
        x[0, 0, :5] = np.array([0.0, -0.0, 1e-40, np.inf, 3e38], np.float32).astype(BF16)
        x[1] = np.array(-0.0, BF16)  # a plane of -0: folds of -0 + -0 keep the sign
    view = x[:, ::-1] if axis == 2 else x.transpose(0, 2, 1)  # strided layouts: the loop copies them
    ref = folds._fold(ufunc, view, axis)
    jit.fold(ufunc, view, axis)  # the first fold of a shape stays numpy
    jit.RUNS.clear()
    got = jit.fold(ufunc, view, axis)
    assert jit.RUNS["fold"] == 1 and got is not None
    assert got.shape == ref.shape and _bits(got) == _bits(ref)
    nan = view.copy()
    nan[1, 1, 1] = np.nan
    assert jit.fold(ufunc, nan, axis) is None  # a NaN: the numpy fold's payload bits, not ours


def test_the_environment_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RDU_JIT", "0")
    assert not jit.enabled()
    x = np.ones((600, 100), BF16)
    monkeypatch.setattr(jit, "JIT_MIN", 0)
    assert jit.fold(np.add, x, 1) is None and jit.fold(np.add, x, 1) is None


def test_compiled_loops_are_kept_on_disk(tmp_path: Any) -> None:
    """A second process loads the loop from `RDU_JIT_CACHE` (numba's cache hit), same values."""
    import os
    import subprocess
    import sys

    code = ("import numpy as np; from rdu_compiler.interpreters import jit; from rdu_compiler.interpreters.bf16 import BF16; "
            "m = jit.MapJit(['_s = v0 * v1', '_bad |= _s != _s', 'v2 = _round_bf16(_s)'], [(0, 'bf16'), (1, 'bf16')], [], [(2, 'bf16')]); "
            "x = (np.arange(600, dtype=np.float32) / 7).astype(BF16).reshape(20, 30); r = m.run([x, x], (20, 30)); "
            "fn = jit._COMPILED[m.source(2, [(False, False), (False, False)])]; "
            "print(sum(fn.stats.cache_hits.values()), (r[0] == x * x).all())")
    env = {**os.environ, "RDU_JIT_CACHE": str(tmp_path), "RDU_JIT": "1"}
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True, env=env).stdout.split()
            for _ in range(2)]
    assert runs == [["0", "True"], ["1", "True"]]
    assert len(list(tmp_path.glob("rdu_loop_*.py"))) == 1



def test_a_loop_numba_refuses_warns_and_stays_numpy() -> None:
    m = jit.MapJit(["v2 = v0 @ v1"], [(0, "bf16"), (1, "bf16")], [], [(2, "bf16")])  # not a scalar op
    x = np.ones((4, 5), BF16)
    with pytest.warns(UserWarning, match="did not compile"):
        assert m.run([x, x], (4, 5)) is None
    assert m.broken and m.run([x, x], (4, 5)) is None


def test_every_compare_predicate_is_the_numpy_one() -> None:
    """The 16 `arith.cmpf` predicates of the loop (`jit._CMPF`) against the numpy path's
    (`payload._CMPF`) on every pair of NaN, inf, signed zeros and ordinary values (torch
    emits only some of them; the rest are here)."""
    from rdu_compiler.interpreters import payload

    special = [np.float32(v) for v in (np.nan, -np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0, 1e-40)]
    assert len(jit._CMPF) == len(payload._CMPF) == 16
    for p, (text, fn) in enumerate(zip(jit._CMPF, payload._CMPF, strict=True)):
        for a in special:
            for b in special:
                got = eval(text.format(a="a", b="b"), {"a": a, "b": b})  # noqa: S307 - our own table
                assert bool(got) == bool(fn(np.array([a]), np.array([b]))[0]), (p, a, b)
