"""Golden counts: the compiler's decisions on GPT-2 and Llama must not change unnoticed.

Refresh with `python benchmarks/refresh_golden.py` when a change is intended, and review
the diff of testsuite/golden/counts.json.

Pins transformers 5.23.0 and torch 2.13.0 (requirements.lock): the GPT-2 and Llama graphs
come from transformers' modelling code through torch.export, so another version can export
another graph. transformers 5.24.0 does: gpt2_2layer/tiny/O1 and llama_2layer/tiny/O1 move
by 128 HBM bytes. A lock refresh that moves either package re-records the counts.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from testsuite.example_programs import program

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("refresh_golden", ROOT / "benchmarks" / "refresh_golden.py")
assert spec and spec.loader
refresh = importlib.util.module_from_spec(spec)
spec.loader.exec_module(refresh)
GOLDEN = json.loads((ROOT / "testsuite" / "golden" / "counts.json").read_text())


@pytest.mark.parametrize("key", sorted(GOLDEN))
def test_golden_counts(key: str) -> None:
    model, fabric, level = key.split("/")
    got = refresh.counts_of(program(model, fabric, int(level[1:])).report)  # refresh.counts' compile
    assert got == GOLDEN[key], (
        f"{key}: the compiler's decisions changed; if intended, run "
        "`python benchmarks/refresh_golden.py` and review the diff"
    )


def test_golden_covers_both_fabrics_and_levels() -> None:
    assert len(GOLDEN) == len(refresh.MODELS) * len(refresh.FABRICS) * 2
    tiny = GOLDEN["gpt2_2layer/tiny/O1"]
    assert tiny["sections"] > 1 and tiny["ddr_peak_bytes"] > 0  # tiny sections and spills
