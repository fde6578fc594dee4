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


def _bag_reference(model: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """The model with each feature's bag computed from `CollisionlessTable.lookup` in numpy
    (the Python table, not the custom op): the eager reference of the compiled program."""
    import numpy as np

    dense, indices, offsets = inputs[:3]
    with torch.no_grad():
        x = model.bottom(dense)
        n, b = indices.shape[1], offsets.shape[0]
        ends = [*offsets.tolist()[1:], n]
        embs = []
        for f, t in enumerate(model.tables):
            rows = t.table.lookup(indices[f].numpy())
            embs.append(torch.from_numpy(np.stack([rows[s:e].sum(0) for s, e in zip(offsets.tolist(), ends, strict=True)])))
        z = torch.stack([x, *embs], dim=1)
        z = torch.bmm(z, z.transpose(1, 2))[:, model.li, model.lj]
        assert len(embs) == 26 and embs[0].shape == (b, 16)
        return torch.sigmoid(model.top(torch.cat([x, z], dim=1)))


def test_collisionless_dlrm_matches_the_python_tables() -> None:
    """DLRM with every table a CollisionlessTable (raw 64-bit IDs, a quarter of them absent):
    the compiled program (26 hash_probe kernels) on the emulator equals eager and the
    reference built from `CollisionlessTable.lookup`."""
    model, inputs = dlrm.get_model(batch=8, max_ind_range=256, collisionless=True)
    program = rdu_compiler.compile(model, inputs, fabric="sn40l", opt_level=1)
    assert program.report["totals"]["kernel_kinds"]["hash_probe"] == 26
    got = program.run(*inputs)
    want = _bag_reference(model, inputs)
    with torch.no_grad():
        eager = model(*inputs)
    assert float((got - want).norm() / want.norm()) <= 1e-5
    assert float((eager - want).norm() / want.norm()) <= 1e-5
    # about a quarter of the IDs are absent (zero rows, nothing inserted)
    misses = sum(int((t.table.find(inputs[1][f].numpy()) < 0).sum()) for f, t in enumerate(model.tables))
    assert 0.15 * inputs[1].numel() < misses < 0.35 * inputs[1].numel()
    # each probe is charged its 58 integer ops per ID (`embedding.probe.PROBE_INT_OPS`) on its
    # PCUs at sn40l's integer rate (the fp32 entry, 192/cycle, at 1.6 GHz)
    probes = [(k, c) for s in program.report["sections"] for k, c in zip(s["kernels"], s["cost"]["kernels"], strict=True)
              if k["kind"] == "hash_probe"]
    assert len(probes) == 26
    for k, c in probes:
        assert k["int_ops"] == 58 * inputs[1][0].numel()
        assert c["compute_s"] == pytest.approx(k["int_ops"] / (k["pcus"] * 192 * 1.6e9), rel=1e-12) and c["compute_s"] > 0
