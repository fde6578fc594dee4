"""The emulator's compiled loops (`interpreters/jit.py`) on and off, for the tests that
compare them (testsuite/unit/test_jit.py, testsuite/fuzz/test_fuzz_jit.py)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from rdu_compiler.interpreters import jit
from rdu_compiler.runtime.emulator import Emulator


def bits(a: Any) -> bytes:
    """`a`'s bytes, C order."""
    return np.ascontiguousarray(np.asarray(a)).view(np.uint8).tobytes()


def on_and_off(monkeypatch: pytest.MonkeyPatch, program: Any, inputs: tuple[Any, ...]) -> tuple[list[Any], list[Any]]:
    """`program`'s outputs with `RDU_JIT=0`, and with the JIT on (its second run, where the
    loops compile); `jit.RUNS` then counts that second run. The caller sets `JIT_MIN`."""
    args = program._arguments(inputs)
    monkeypatch.setattr(jit, "_SEEN", set())
    with np.errstate(all="ignore"):
        monkeypatch.setenv("RDU_JIT", "0")
        off, _ = Emulator(program.module, program.fabric).run(args)
        monkeypatch.setenv("RDU_JIT", "1")
        emu = Emulator(program.module, program.fabric)
        emu.run(args)
        jit.RUNS.clear()
        on, _ = emu.run(args)
    assert len(on) == len(off)
    return off, on


def same(off: list[Any], on: list[Any], where: str = "") -> None:
    """Every output of the same dtype and bits."""
    for x, y in zip(off, on, strict=True):
        assert np.asarray(x).dtype == np.asarray(y).dtype and bits(x) == bits(y), where
