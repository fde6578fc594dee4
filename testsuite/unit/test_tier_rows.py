"""rdu-tier-rows (issue 16): hot rows of a gathered table in HBM, cold rows in DDR.

Checks: the emulator reads each row from the tier its actual row number falls in (its DDR
bytes equal a numpy count of the IDs >= hot_rows, times the row's bursts); the cost model
charges the expected hot share (Zipf or profile) at HBM and the rest at DDR, so its DDR
bytes grow as the HBM budget shrinks and are zero for a table that fits; rdu-allocate
splits the table's bytes; bad options are refused by name; DLRM compiles with it and
still equals eager.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from rdu_compiler.cost.analysis import build_report
from rdu_compiler.errors import CompileError, RduError
from rdu_compiler.fabric import load_fabric
from rdu_compiler.ir import parse_module
from rdu_compiler.passes.common import kernels
from rdu_compiler.pipeline import pipeline, run_pipeline
from rdu_compiler.plan.tiering import zipf_hit_fraction
from rdu_compiler.runtime.emulator import Emulator
from testsuite.unit.test_gather_bursts import row_gather  # the same one-table row gather

TINY = load_fabric("tiny")
ROWS = 50  # the table rows of test_gather_bursts.row_gather's default


def compiled(text: str, tier_rows: str = "") -> tuple[object, object]:
    module = parse_module(text)
    run_pipeline(module, pipeline("tiny", 1, tier_rows=tier_rows))
    (gather,) = [k for k in kernels(module) if k.captures]
    return module, gather


@pytest.mark.parametrize(("d", "hbm_bytes", "row_burst"), [(16, 640, 64), (20, 800, 128), (16, 0, 64)])
def test_emulated_tiers_equal_a_numpy_count_of_the_ids(d: int, hbm_bytes: int, row_burst: int) -> None:
    n = 40
    rng = np.random.default_rng(3)
    table = rng.standard_normal((ROWS, d)).astype(np.float32)
    ids = np.minimum(rng.zipf(1.3, n) - 1, ROWS - 1).astype(np.int64)  # skewed, some cold
    base, _ = compiled(row_gather(n, d))
    (out0,), whole = Emulator(base, TINY).run([table, ids])
    module, gather = compiled(row_gather(n, d), f"hbm_bytes={hbm_bytes} zipf=1.0")
    hot = gather.hot_rows.value.data
    assert hot == hbm_bytes // (d * 4)  # the budget's whole rows (one table: densest = first)
    (out,), split = Emulator(module, TINY).run([table, ids])
    np.testing.assert_array_equal(out, table[ids])
    cold = int(np.count_nonzero(ids >= hot))
    assert 0 < cold < n or hot == 0
    assert split.ddr_bytes == cold * row_burst
    assert split.rows_read == {gather.label: (n - cold, cold)}  # the emulator's row counts
    assert whole.ddr_bytes == 0 and whole.rows_read == {}
    assert split.hbm_bytes == whole.hbm_bytes - cold * row_burst  # the rest of the program unchanged
    # the cost model's expectation, from the stated Zipf(1): f = H(hot, 1) / H(50, 1)
    f = zipf_hit_fraction(hot, ROWS, 1.0)
    assert gather.hot_fraction.value.data == pytest.approx(f)
    g = build_report(module, TINY, 1)["totals"]["gather_bytes"]
    assert g["ddr"]["charged"] == round((1 - f) * n * row_burst)
    assert g["hbm"]["charged"] == round(f * n * row_burst)


def test_ddr_bytes_grow_as_the_hbm_budget_shrinks_and_a_table_that_fits_has_none() -> None:
    ddr, est = [], []
    for budget in (ROWS * 64, 1280, 640, 128, 0):
        module, gather = compiled(row_gather(24, 16), f"hbm_bytes={budget} zipf=1.0")
        rep = build_report(module, TINY, 1)
        ddr.append(rep["totals"]["ddr_bytes"])
        est.append(rep["totals"]["estimated_s"])
        assert module.attributes["rdu.ddr_peak_bytes"].value.data == (ROWS - gather.hot_rows.value.data) * 64
        assert rep["tiering"]["tables"][0]["hot_rows"] == min(ROWS, budget // 64)
    assert ddr[0] == 0
    assert all(a < b for a, b in zip(ddr, ddr[1:], strict=False)), ddr
    assert ddr[-1] == 24 * 64  # nothing hot: every row read from DDR
    assert est[0] <= est[-1]


def test_profile_counts_give_the_hot_share_of_the_rows_as_numbered(tmp_path: Path) -> None:
    counts = np.arange(ROWS, 0, -1, dtype=np.float64)  # numbered hot-first
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"0": counts.tolist()}))
    _, gather = compiled(row_gather(24, 16), f'hbm_bytes=640 profile="{path}"')
    assert gather.hot_rows.value.data == 10
    assert gather.hot_fraction.value.data == pytest.approx(counts[:10].sum() / counts.sum())
    path.write_text(json.dumps({"0": counts[::-1].tolist()}))  # cold-first: the 10 rows chosen hold the least
    _, gather = compiled(row_gather(24, 16), f'hbm_bytes=640 profile="{path}"')
    assert gather.hot_fraction.value.data == pytest.approx(counts[-10:].sum() / counts.sum())


@pytest.mark.parametrize(("options", "message"), [
    ("zipf=1.0", "hbm_bytes = -1"),
    ("hbm_bytes=-5 zipf=1.0", "hbm_bytes = -5"),
    (f"hbm_bytes={1 << 40} zipf=1.0", "give the HBM budget"),
    ("hbm_bytes=640", "no access profile"),
    ("hbm_bytes=640 zipf=-1.0", "zipf = -1.0"),
    ('hbm_bytes=640 profile="/nonexistent/p.json"', "cannot be read"),
])
def test_bad_options_are_refused_by_name(options: str, message: str) -> None:
    with pytest.raises(CompileError, match="rdu-tier-rows") as e:
        compiled(row_gather(8, 16), options)
    assert message in str(e.value)


@pytest.mark.parametrize(("profile", "message"), [
    ({"0": [1.0] * 7}, "give 50 non-negative counts"),
    ({"1": [1.0] * ROWS}, "names arguments [1]"),
    ({"0": [0.0] * ROWS}, "not all zero"),
])
def test_bad_profiles_are_refused_by_name(tmp_path: Path, profile: dict, message: str) -> None:
    path = tmp_path / "p.json"
    path.write_text(json.dumps(profile))
    with pytest.raises(CompileError, match="rdu-tier-rows") as e:
        compiled(row_gather(8, 16), f'hbm_bytes=640 profile="{path}"')
    assert message in str(e.value)


def test_dlrm_with_row_tiering_equals_eager_and_reads_its_cold_rows_from_ddr() -> None:
    import rdu_compiler

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
    import dlrm

    model, inputs = dlrm.get_model(batch=8)
    budget = 1 << 20  # 1 MiB of the 3.5 MiB of tables
    program = rdu_compiler.compile(model, inputs, fabric="sn40l", opt_level=1, tier_rows={"hbm_bytes": budget, "zipf": 1.05})
    got = program.run(*inputs)
    with torch.no_grad():
        want = model(*inputs)
    assert float((got - want).norm() / want.norm()) <= 1e-5
    tiering = program.report["tiering"]
    assert tiering["assumption"] == f"hbm_bytes={budget} zipf(s=1.05)"
    assert tiering["stored_bytes"]["hbm"] <= budget < tiering["stored_bytes"]["hbm"] + 16 * 4 * 26
    hot = {t["kernel"]: t["hot_rows"] for t in tiering["tables"]}
    assert len(hot) == 26
    gathers = sorted((k for k in kernels(program.module) if k.hot_rows is not None), key=lambda k: int(k.label[1:].split("_")[0]))
    # the f-th tiered gather reads feature f's IDs (indices row f): the cold ones come from DDR
    cold = sum(int(np.count_nonzero(inputs[1][f].numpy() >= k.hot_rows.value.data)) for f, k in enumerate(gathers))
    assert cold > 0
    assert program.last_stats.ddr_bytes == cold * 64
    assert sum(d for _, d in program.last_stats.rows_read.values()) == cold
    assert sum(h + d for h, d in program.last_stats.rows_read.values()) == inputs[1].numel()
    with pytest.raises(RduError, match="tier_rows takes"):
        rdu_compiler.compile(model, inputs, tier_rows={"hbm": 1})
    assert math.isfinite(program.report["totals"]["estimated_s"])


def test_hot_first_snapshot_puts_the_counted_ids_first_and_the_compiled_lookup_reads_them_from_hbm() -> None:
    import rdu_compiler
    from rdu_compiler.embedding import CollisionlessTable
    from rdu_compiler.embedding.probe import probe
    from rdu_compiler.frontend.torch.collisionless import CollisionlessEmbedding

    rng = np.random.default_rng(5)
    table = CollisionlessTable(16, capacity=256, seed=1)
    ids = np.unique(rng.integers(-(1 << 62), 1 << 62, 200, dtype=np.int64))
    table.assign(ids, rng.standard_normal((len(ids), 16)).astype(np.float32), now=0)
    counts = rng.zipf(1.2, len(ids)).astype(np.float64)
    plain, hot = CollisionlessEmbedding(table), CollisionlessEmbedding(table, hot_first=(ids, counts))
    query = torch.from_numpy(np.concatenate([ids[rng.integers(0, len(ids), 60)], [7, -7]]))  # two absent IDs
    torch.testing.assert_close(hot(query), plain(query), rtol=0, atol=0)
    np.testing.assert_array_equal(hot(query).numpy(), table.lookup(query.numpy()))
    rows = probe(hot.index.numpy(), ids)
    ranked = np.argsort(-counts, kind="stable")
    np.testing.assert_array_equal(rows[ranked], np.arange(len(ids)))  # most counted ID -> row 0, ...
    # compiled with a 640 B budget (10 rows of 64 B) and the profile per row: the hot rows
    # are the 10 most counted IDs, and the emulator reads the rest (and misses: the zero row) from DDR
    per_row = np.zeros(hot.weight.shape[0])
    per_row[rows] = counts
    program = rdu_compiler.compile(hot, (query,), fabric="sn40l", opt_level=1,
                                   tier_rows={"hbm_bytes": 640, "profile": {"weight": per_row}})
    np.testing.assert_array_equal(program.run(query), table.lookup(query.numpy()))
    (t,) = program.report["tiering"]["tables"]
    assert t["hot_rows"] == 10
    assert t["hot_fraction"] == pytest.approx(np.sort(counts)[::-1][:10].sum() / counts.sum())
    looked_up = probe(hot.index.numpy(), query.numpy())
    looked_up[looked_up < 0] = hot.miss_row
    assert program.last_stats.ddr_bytes == int(np.count_nonzero(looked_up >= 10)) * 64


def test_hot_rows_fill_hbm_first_and_the_rest_spills_or_is_refused() -> None:
    cap = TINY.hbm.capacity_bytes
    rows = 2 * cap // 64  # a table of twice HBM; the budget is all of HBM
    module, gather = compiled(row_gather(8, 16, rows=rows), f"hbm_bytes={cap} zipf=1.0")
    assert gather.hot_rows.value.data == cap // 64
    # the hot rows take all of HBM, so the IDs (8 x 8 B) and the result (8 x 64 B) go to DDR with the cold rows
    assert module.attributes["rdu.hbm_peak_bytes"].value.data == cap
    assert module.attributes["rdu.ddr_peak_bytes"].value.data == (rows - cap // 64) * 64 + 8 * 8 + 8 * 64
    # an argument placed before the table fills HBM: its hot rows cannot go there, and rdu-allocate says what to change
    text = row_gather(8, 16, rows=rows).replace("func.func @main(", f"func.func @main(%big: tensor<{cap // 4}xf32>, ")
    with pytest.raises(CompileError, match="rdu-allocate") as e:
        compiled(text, f"hbm_bytes={cap} zipf=1.0")
    assert "smaller hbm_bytes" in str(e.value)


EMBEDDING_MODEL = """
import torch
from torch import nn

torch.manual_seed(0)
model = nn.EmbeddingBag(64, 16, mode="sum")
example_inputs = (torch.arange(0, 64, 4, dtype=torch.int64), torch.tensor([0, 4, 8, 12]))
"""


def test_cli_tier_rows_compiles_checks_and_reports_rows_per_tier(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from rdu_compiler.tools.rdu_compile import main

    model = tmp_path / "model.py"
    model.write_text(EMBEDDING_MODEL)
    out = tmp_path / "out"
    try:
        main([str(model), "--fabric", "tiny", "--tier-rows", "640", "--zipf", "1.2", "--check", "-o", str(out)])
    except SystemExit as e:
        pytest.fail(f"rdu-compile exited {e.code}: {capsys.readouterr().err}")
    report = json.loads((out / "report.json").read_text())
    assert report["check"]["ok"] is True
    (t,) = report["tiering"]["tables"]
    assert (t["rows"], t["hot_rows"]) == (64, 10) and report["tiering"]["assumption"] == "hbm_bytes=640 zipf(s=1.2)"
    ids = np.arange(0, 64, 4)
    (rows,) = report["emulator"]["rows_read"].values()
    assert rows == {"hbm": int((ids < 10).sum()), "ddr": int((ids >= 10).sum())}
    assert report["emulator"]["ddr_bytes"] == 64 * int((ids >= 10).sum())
    assert "rows read HBM / DDR" in capsys.readouterr().out


def test_tier_rows_with_tensor_or_pipeline_parallelism_is_refused() -> None:
    for tp, pp in ((2, 1), (1, 2)):
        with pytest.raises(CompileError, match="rdu-tier-rows.*one socket"):
            pipeline("sn40l-node8", 1, tp=tp, pp=pp, tier_rows="hbm_bytes=1024 zipf=1.0")
