"""bf16 unary payload ops by table (`interpreters/bf16.py`) give the direct call's bits.

Every unary payload op (and fpowi by 1-4) on all 65,536 bf16 values, shuffled, at odd
offsets and lengths, against its table; and whole example models in bf16 with the tables
off (`TABLE_MIN` above every tile) and on: bitwise equal outputs.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import rdu_compiler
from rdu_compiler.frontend.torch.model_file import load_model_file
from rdu_compiler.interpreters import bf16
from rdu_compiler.interpreters.payload import _UNARY
from rdu_compiler.runtime.emulator import Emulator


def _bits(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    return a.view(np.dtype(f"u{a.dtype.itemsize}")) if a.dtype.itemsize in (1, 2, 4, 8) else a


def _check(key: object, fn: object) -> None:
    values = bf16.all_values()
    rng = np.random.default_rng(5)
    shuffled = values[rng.permutation(values.size)]
    with np.errstate(all="ignore"):
        for x in (values, shuffled, shuffled[3:40_003], shuffled[::-3], shuffled[7:].reshape(-1, 9)[:, 2:]):
            direct = np.asarray(fn(x))  # type: ignore[operator]
            got = bf16.lookup(key, fn, x)  # type: ignore[arg-type]
            assert got.dtype == direct.dtype and got.shape == direct.shape
            bad = np.flatnonzero(_bits(got) != _bits(direct))
            assert bad.size == 0, (key, [float(v) for v in np.asarray(x).reshape(-1)[bad[:4]]])


@pytest.mark.parametrize("key", list(_UNARY), ids=lambda k: getattr(k, "name", str(k)))
def test_unary_table_is_the_direct_call_on_every_bf16_value(key: object) -> None:
    _check(key, _UNARY[key])  # type: ignore[index]


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_power_table_is_the_repeated_product(k: int) -> None:
    def powers(v: np.ndarray) -> np.ndarray:
        y = v
        for _ in range(k - 1):
            y = y * v
        return y

    _check(("test-fpowi", k), powers)


def test_tables_change_no_bit_of_a_bf16_model(monkeypatch: pytest.MonkeyPatch) -> None:
    model, inputs = load_model_file("examples/gpt2_2layer.py")  # GELU(tanh): tanh and x^3 on bf16 tiles
    model = model.to(torch.bfloat16)
    program = rdu_compiler.compile(model, inputs, fabric="sn40l")
    args = program._arguments(inputs)
    calls = []
    real = bf16.lookup
    monkeypatch.setattr(bf16, "lookup", lambda *a: calls.append(a[0]) or real(*a))
    on, _ = Emulator(program.module, program.fabric).run(args)
    assert calls, "no table was used: the test no longer covers them"
    monkeypatch.setattr(bf16, "TABLE_MIN", 1 << 62)
    off, _ = Emulator(program.module, program.fabric).run(args)
    assert len(on) == len(off)
    for x, y in zip(on, off, strict=True):
        assert x.dtype == y.dtype and np.array_equal(_bits(x), _bits(y))
