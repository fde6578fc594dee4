"""Random graphs with the emulator's compiled loops on and off (`interpreters/jit.py`): the same bits.

Each program of `fuzz_programs.generate` (fixed seeds) is compiled (sn40l, -O1) in fp32
and in bf16, and run with `RDU_JIT=0` and then twice with the JIT on, `JIT_MIN` at 0
and every bf16 sum folded (so that the small tiles take the compiled paths). Every output
must be bitwise equal. A program the compiler refuses is skipped; the test fails if no
bf16 program reached a compiled loop.
"""

from __future__ import annotations

import pytest
import torch
from fuzz_programs import RandomChooser, generate, load, render

import rdu_compiler
from rdu_compiler.errors import RduError
from rdu_compiler.interpreters import folds, jit
from testsuite.jit_compare import on_and_off, same

pytest.importorskip("numba")

SEEDS = range(6)


def test_random_graphs_have_the_same_bits_compiled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jit, "JIT_MIN", 0)
    monkeypatch.setattr(folds, "FOLD_MIN_OUTPUTS", 1)
    compiled = {torch.float32: 0, torch.bfloat16: 0}
    for seed, dtype in ((s, d) for s in SEEDS for d in compiled):
        model, inputs = load(render(generate(RandomChooser(seed))))
        if dtype != torch.float32:
            model = model.to(dtype)
            inputs = tuple(x.to(dtype) if x.is_floating_point() else x for x in inputs)
        try:
            program = rdu_compiler.compile(model, inputs, fabric="sn40l", opt_level=1)
        except RduError:
            continue
        off, on = on_and_off(monkeypatch, program, inputs)
        compiled[dtype] += jit.RUNS["map"] + jit.RUNS["fold"]
        same(off, on, f"seed {seed}, {dtype}")
    # fp32 fuzz graphs rarely reach one (their maps are compares, selects, f32 transcendentals,
    # single ops); bf16 ones do (their arithmetic rounds after every op)
    assert compiled[torch.bfloat16] > 0, f"no bf16 program reached a compiled loop: {compiled}"
