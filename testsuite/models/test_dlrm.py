"""DLRM at the Criteo-Kaggle shape (examples/dlrm.py, issue 16): compiles, runs on the
emulator equal to eager for every bag mode, and describes the full-size model on meta."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

import rdu_compiler

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
import dlrm  # noqa: E402


@pytest.mark.parametrize(("mode", "per_sample_weights"), [("sum", False), ("mean", False), ("max", False), ("sum", True)])
def test_dlrm_matches_eager(mode: str, per_sample_weights: bool) -> None:
    model, inputs = dlrm.get_model(batch=4, mode=mode, per_sample_weights=per_sample_weights)
    got = rdu_compiler.compile(model, inputs, fabric="sn40l", opt_level=1).run(*inputs)
    with torch.no_grad():
        want = model(*inputs)
    assert got.shape == want.shape == (4, 1)
    assert float((got - want).norm() / want.norm()) <= 1e-5
    if per_sample_weights:  # the weights matter: without them the result differs
        with torch.no_grad():
            assert not torch.allclose(model(*inputs[:3]), want)


def test_full_size_dlrm_compiles_on_meta() -> None:
    with torch.device("meta"):
        model, inputs = dlrm.get_model(batch=128, max_ind_range=None)
    program = rdu_compiler.compile(model, inputs, fabric="sn40l", opt_level=1)
    assert program.shape_only
    rows = sum(t.num_embeddings for t in model.tables)
    assert rows == sum(dlrm.CRITEO_KAGGLE_ROWS) == 33_762_577
    assert program.report["totals"]["estimated_s"] > 0
