"""Embedding-table tiering in the cost model (`cost.tiering`, issue 16): rows placed densest
first (lookups per byte) into SRAM, then HBM, then DDR; a batch's gather bytes and seconds
per tier. Expected values are worked out by hand in the comments, or by brute force."""

from __future__ import annotations

import numpy as np
import pytest

from rdu_compiler.cost.tiering import (
    TableProfile,
    TieringError,
    harmonic,
    index_bytes,
    place_indexes,
    place_tables,
    zipf_hit_fraction,
)
from rdu_compiler.embedding import CollisionlessTable
from rdu_compiler.fabric import load_fabric

SN40L = load_fabric("sn40l")


def test_rows_go_to_tiers_by_lookups_per_byte() -> None:
    # t1: 4 rows of 64 B, 10 lookups, counts 1..4 -> densities 4, 3, 2, 1 (x 1/64 per byte)
    # t2: 2 rows of 128 B, 4 lookups, counts 3, 1 -> densities 4 x 0.75 / 128 = 1.5 and 0.5 (x 1/64)
    t1 = TableProfile("t1", rows=4, row_bytes=64, lookups=10, counts=(1, 2, 3, 4))
    t2 = TableProfile("t2", rows=2, row_bytes=128, lookups=4, counts=(3, 1))
    plan = place_tables([t1, t2], SN40L, sram_bytes=128, hbm_bytes=192)
    # SRAM (128 B): t1's 4 and 3; HBM (192 B): t1's 2 (64 B) and t2's 3 (128 B); DDR: the rest
    assert plan.rows == {"t1": {"sram": 2, "hbm": 1, "ddr": 1}, "t2": {"sram": 0, "hbm": 1, "ddr": 1}}
    assert plan.stored_bytes == {"sram": 128, "hbm": 192, "ddr": 192}
    # per batch: SRAM 10 x 0.7 x 64; HBM 10 x 0.2 x 64 + 4 x 0.75 x 128; DDR 10 x 0.1 x 64 + 4 x 0.25 x 128
    assert plan.gather_bytes == pytest.approx({"sram": 448, "hbm": 128 + 384, "ddr": 64 + 128})
    # one PMU holds the SRAM rows: 64 B/cycle x 1.6 GHz
    assert plan.seconds["sram"] == pytest.approx(448 / (64 * 1.6e9))
    assert plan.seconds["ddr"] == pytest.approx(192 / 200e9)
    assert plan.binds == "sram" and plan.gather_s == plan.seconds["sram"]


def test_rows_are_charged_at_the_tier_burst() -> None:
    # 40 B rows cost a 64 B burst from HBM; everything fits in HBM
    t = TableProfile("t", rows=10, row_bytes=40, lookups=100, counts=tuple(range(1, 11)))
    plan = place_tables([t], SN40L, sram_bytes=0, hbm_bytes=10**6)
    assert plan.rows["t"] == {"sram": 0, "hbm": 10, "ddr": 0}
    assert plan.gather_bytes["hbm"] == pytest.approx(100 * 64)


def test_harmonic_and_zipf_hit_fraction_match_brute_force() -> None:
    for n, s in [(5000, 1.1), (3_000_000, 1.05), (2_000_000, 1.0)]:
        brute = float(np.sum(np.arange(1, n + 1, dtype=np.float64) ** -s))
        assert harmonic(n, s) == pytest.approx(brute, rel=1e-10)
    k, n, s = 700, 5000, 1.1
    w = np.arange(1, n + 1, dtype=np.float64) ** -s
    assert zipf_hit_fraction(k, n, s) == pytest.approx(w[:k].sum() / w.sum(), rel=1e-12)


def test_zipf_table_puts_its_hot_prefix_in_hbm() -> None:
    # 100,000 rows of 64 B, HBM budget = 25,000 rows: those are ranks 1..25,000
    t = TableProfile("t", rows=100_000, row_bytes=64, lookups=4096, zipf_s=1.05)
    plan = place_tables([t], SN40L, sram_bytes=0, hbm_bytes=25_000 * 64)
    assert plan.rows["t"] == {"sram": 0, "hbm": 25_000, "ddr": 75_000}
    hot = zipf_hit_fraction(25_000, 100_000, 1.05)
    assert 0.8 < hot < 0.95  # a quarter of the rows take most lookups
    assert plan.gather_bytes["hbm"] == pytest.approx(4096 * hot * 64)
    assert plan.gather_bytes["ddr"] == pytest.approx(4096 * (1 - hot) * 64)
    # the same table all in DDR reads every lookup there: slower than the tiered plan
    cold = place_tables([t], SN40L, sram_bytes=0, hbm_bytes=0)
    assert cold.gather_s > plan.gather_s and cold.binds == "ddr"


def test_bad_profiles_and_budgets_are_refused() -> None:
    with pytest.raises(TieringError, match="exactly one access profile"):
        TableProfile("t", rows=2, row_bytes=4, lookups=1)
    with pytest.raises(TieringError, match="one non-negative count per row"):
        TableProfile("t", rows=2, row_bytes=4, lookups=1, counts=(1.0,))
    t = TableProfile("t", rows=2, row_bytes=4, lookups=1, zipf_s=1.0)
    with pytest.raises(TieringError, match="within them"):
        place_tables([t], SN40L, sram_bytes=SN40L.sram_bytes + 1, hbm_bytes=0)


def test_index_bytes_follow_the_table_sizing() -> None:
    # 1,000 IDs -> 2 x 1000 / 4 = 500 buckets -> 512 (a power of two) x 64 B
    assert index_bytes(1000) == 512 * 64
    assert index_bytes(1000) == CollisionlessTable(dim=4, capacity=1000).buckets * 64


def test_probes_are_charged_where_the_index_lives() -> None:
    small = TableProfile("small", rows=1000, row_bytes=64, lookups=100, zipf_s=1.0)  # index 32 KiB
    big = TableProfile("big", rows=10**6, row_bytes=64, lookups=100, zipf_s=1.0)  # 2^19 buckets: 32 MiB
    plan = place_indexes([small, big], SN40L, sram_bytes=40 * 1024, hbm_bytes=1 << 30)
    assert plan.tier == {"small": "sram", "big": "hbm"}
    # 100 lookups x 2 buckets x 64 B in each tier; the small index sits in one PMU
    assert plan.probe_bytes == {"sram": 12_800, "hbm": 12_800, "ddr": 0}
    assert plan.seconds["sram"] == pytest.approx(12_800 / (64 * 1.6e9))
    assert plan.seconds["hbm"] == pytest.approx(12_800 / 1.8e12)
    assert plan.binds == "sram"


def test_sparse_update_is_charged_read_plus_write_at_the_burst() -> None:
    from rdu_compiler.cost.tiering import TieringError, sparse_update_cost
    from rdu_compiler.fabric import load_fabric

    fab = load_fabric("sn40l")
    # 100 rows of 16 fp32 (64 B, one burst) + an Adagrad accumulator row: 100 x 2 x 2 x 64 B
    c = sparse_update_cost(100, 16, fab, "hbm", state_rows=1)
    assert c["bytes"] == 100 * 2 * 2 * 64
    assert c["s"] == c["bytes"] / fab.hbm.bytes_per_s
    # 20 fp32 = 80 B rounds up to 128 B
    assert sparse_update_cost(1, 20, fab, "ddr")["bytes"] == 2 * 128
    with pytest.raises(TieringError):
        sparse_update_cost(1, 16, fab, "sram")
