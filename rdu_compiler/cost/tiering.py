"""Embedding-table tiering in the cost model (issue 16): which rows of which tables live in
on-chip SRAM (PMUs), HBM or DDR, and what a batch of lookups then costs per tier.

Placement is greedy by access density, the rule a cache with perfect knowledge of the
access profile would follow: every row's value is its expected lookups per batch divided by
its bytes; the densest rows fill SRAM (up to a given budget), the next ones HBM (up to a
given budget), the rest go to DDR. Within a table the rows are ranked by frequency, so each
table's hot prefix lands in the faster tiers. Profiles are either the user's per-row access
counts (any order; they are sorted) or a stated Zipf law: row of rank r (1-based) is looked
up with probability r^-s / H(n, s), H the generalised harmonic number.

Costs: a lookup reads its row rounded up to the tier's access granularity (HBM/DDR:
`TierSpec.burst_bytes`; SRAM: one PMU cycle, `pmu.bytes_per_cycle`), as the compiled
program's gathers are charged (`kernel.traffic.gathered_bytes`). Each tier's time is its
bytes over its bandwidth (SRAM: the PMUs holding the hot rows, `pmu.bytes_per_cycle` each
per cycle; HBM, DDR: `bytes_per_s`); off-chip gathers also pass through the AGCUs
(`agcu.count x bytes_per_cycle`). The tiers are read in parallel, so the gather time is the
largest of those terms ([NF]: no contention between tiers beyond the shared AGCUs).

Hash probes (`place_indexes`): a `CollisionlessTable` lookup first probes its cuckoo index
(at most two buckets of 4 x 16 B); each table's whole index goes to the densest tier it fits,
and the probes are charged like the row gathers.

This module is the cost model's answer to "where should the rows go and what would it
save", including an SRAM tier; the compiled program's split (HBM / DDR by row range) is the
`rdu-tier-rows` pass, which shares the placement (`plan.tiering.place_rows`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from rdu_compiler.embedding.table import SLOTS
from rdu_compiler.fabric import Fabric
from rdu_compiler.kernel.traffic import burst_round
from rdu_compiler.plan.tiering import (
    TableProfile,
    TieringError,
    harmonic,
    place_rows,
    zipf_hit_fraction,
)

__all__ = [
    "ProbePlan", "TableProfile", "TierPlan", "TieringError", "harmonic", "index_bytes", "place_indexes", "place_tables",
    "sparse_update_cost", "zipf_hit_fraction",
]

TIERS = ("sram", "hbm", "ddr")


@dataclass(frozen=True)
class TierPlan:
    """Rows per tier of each table, and a batch's gather bytes and seconds per tier."""

    rows: dict[str, dict[str, int]]  # table -> tier -> rows
    stored_bytes: dict[str, int]  # tier -> bytes of rows placed there
    gather_bytes: dict[str, float]  # tier -> bytes read per batch (bursts included)
    seconds: dict[str, float]  # "sram", "hbm", "ddr", "agcu" -> seconds per batch
    gather_s: float
    binds: str

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "stored_bytes": self.stored_bytes, "gather_bytes": self.gather_bytes,
                "seconds": self.seconds, "gather_s": self.gather_s, "binds": self.binds}


def place_tables(tables: list[TableProfile], fabric: Fabric, sram_bytes: int, hbm_bytes: int) -> TierPlan:
    """Place every table's rows: densest first into `sram_bytes` of PMU capacity, then
    `hbm_bytes` of HBM, the rest in DDR; cost one batch of lookups per tier.

    Raises:
        TieringError: a budget above the tier's capacity (fabric.sram_bytes,
            fabric.hbm.capacity_bytes), or rows left over that DDR cannot hold.
    """
    if not 0 <= sram_bytes <= fabric.sram_bytes or not 0 <= hbm_bytes <= fabric.hbm.capacity_bytes:
        raise TieringError(
            f"tiering budgets: {sram_bytes} B of SRAM and {hbm_bytes} B of HBM asked, fabric '{fabric.name}' has "
            f"{fabric.sram_bytes} B and {fabric.hbm.capacity_bytes} B; give budgets within them"
        )
    rows = place_rows(tables, [("sram", sram_bytes), ("hbm", hbm_bytes), ("ddr", fabric.ddr.capacity_bytes)])
    left = [t.name for t in tables if sum(rows[t.name].values()) < t.rows]
    if left:
        raise TieringError(f"tables {left} do not fit SRAM + HBM + DDR of fabric '{fabric.name}'; use smaller tables or a fabric with more DDR")
    burst = {"sram": fabric.pmu.bytes_per_cycle, "hbm": fabric.hbm.burst_bytes, "ddr": fabric.ddr.burst_bytes}
    stored = {tier: sum(rows[t.name][tier] * t.row_bytes for t in tables) for tier in TIERS}
    gathered: dict[str, float] = dict.fromkeys(TIERS, 0.0)
    for t in tables:
        start = 0
        for tier in TIERS:
            end = start + rows[t.name][tier]
            share = t.hit_fraction(end) - t.hit_fraction(start)
            gathered[tier] += t.lookups * share * burst_round(t.row_bytes, burst[tier])
            start = end
    pmus = math.ceil(stored["sram"] / fabric.pmu.capacity_bytes)
    sram_bw = pmus * fabric.pmu.bytes_per_cycle * fabric.clock_hz
    agcu_bw = fabric.agcu.count * fabric.agcu.bytes_per_cycle * fabric.clock_hz
    seconds = {
        "sram": gathered["sram"] / sram_bw if gathered["sram"] else 0.0,
        "hbm": gathered["hbm"] / fabric.hbm.bytes_per_s,
        "ddr": gathered["ddr"] / fabric.ddr.bytes_per_s,
        "agcu": (gathered["hbm"] + gathered["ddr"]) / agcu_bw,
    }
    binds = max(seconds, key=lambda k: seconds[k])
    return TierPlan(rows, stored, gathered, seconds, seconds[binds], binds)


# --------------------------------------------------------------------------- hash probes

#: Bytes of one bucket of `embedding.CollisionlessTable`'s cuckoo index: SLOTS slots of
#: (uint64 ID, int64 row number).
BUCKET_BYTES = SLOTS * 16


def index_bytes(capacity: int) -> int:
    """Bytes of a collisionless table's index for `capacity` IDs: buckets rounded up to a
    power of two at <= 50 % load (as `CollisionlessTable` sizes them) x BUCKET_BYTES."""
    return (1 << max(0, math.ceil(math.log2(max(1, 2 * capacity / SLOTS))))) * BUCKET_BYTES


@dataclass(frozen=True)
class ProbePlan:
    """Where each table's cuckoo index lives, and a batch's probe bytes and seconds per tier."""

    tier: dict[str, str]  # table -> "sram" | "hbm" | "ddr"
    stored_bytes: dict[str, int]
    probe_bytes: dict[str, float]
    seconds: dict[str, float]
    probe_s: float
    binds: str


def place_indexes(tables: list[TableProfile], fabric: Fabric, sram_bytes: int, hbm_bytes: int,
                  buckets_per_lookup: int = 2) -> ProbePlan:
    """Place each table's whole cuckoo index (a probe reads any bucket, so the index is not
    split by frequency) densest first (lookups per index byte) into `sram_bytes` of PMUs,
    then `hbm_bytes` of HBM, then DDR; a lookup reads `buckets_per_lookup` buckets (2: the
    worst case, both candidates; a hit in the first bucket reads one), each rounded up to
    the tier's burst. SRAM probes run at the bandwidth of the PMUs holding the indexes
    (`pmu.bytes_per_cycle` each); HBM/DDR probes at the tier's bandwidth and through the
    AGCUs; tiers in parallel ([NF]). A table's `rows` is its capacity in IDs.

    Raises:
        TieringError: budgets above the fabric's capacities, or indexes DDR cannot hold.
    """
    if not 0 <= sram_bytes <= fabric.sram_bytes or not 0 <= hbm_bytes <= fabric.hbm.capacity_bytes:
        raise TieringError(f"index budgets {sram_bytes} B SRAM / {hbm_bytes} B HBM exceed fabric '{fabric.name}'; give budgets within it")
    size = {t.name: index_bytes(t.rows) for t in tables}
    left = {"sram": sram_bytes, "hbm": hbm_bytes, "ddr": fabric.ddr.capacity_bytes}
    tier: dict[str, str] = {}
    for t in sorted(tables, key=lambda t: -t.lookups / size[t.name]):
        where = next((k for k in TIERS if size[t.name] <= left[k]), None)
        if where is None:
            raise TieringError(f"the index of table '{t.name}' ({size[t.name]} B) fits no tier of fabric '{fabric.name}'")
        tier[t.name] = where
        left[where] -= size[t.name]
    burst = {"sram": fabric.pmu.bytes_per_cycle, "hbm": fabric.hbm.burst_bytes, "ddr": fabric.ddr.burst_bytes}
    stored = {k: sum(size[t.name] for t in tables if tier[t.name] == k) for k in TIERS}
    probes: dict[str, float] = dict.fromkeys(TIERS, 0.0)
    for t in tables:
        probes[tier[t.name]] += t.lookups * buckets_per_lookup * burst_round(BUCKET_BYTES, burst[tier[t.name]])
    pmus = math.ceil(stored["sram"] / fabric.pmu.capacity_bytes)
    agcu_bw = fabric.agcu.count * fabric.agcu.bytes_per_cycle * fabric.clock_hz
    seconds = {
        "sram": probes["sram"] / (pmus * fabric.pmu.bytes_per_cycle * fabric.clock_hz) if probes["sram"] else 0.0,
        "hbm": probes["hbm"] / fabric.hbm.bytes_per_s,
        "ddr": probes["ddr"] / fabric.ddr.bytes_per_s,
        "agcu": (probes["hbm"] + probes["ddr"]) / agcu_bw,
    }
    binds = max(seconds, key=lambda k: seconds[k])
    return ProbePlan(tier, stored, probes, seconds, seconds[binds], binds)


def sparse_update_cost(rows: int, dim: int, fabric: Fabric, tier: str = "hbm", itemsize: int = 4,
                       state_rows: int = 0) -> dict[str, float]:
    """Cost of an online-training sparse row update (issue 16, item (b)): `rows` distinct
    rows touched, each read and written whole (row of `dim` x `itemsize` B plus
    `state_rows` optimizer rows of the same size, e.g. 1 for Adagrad's accumulator), every
    access rounded up to `tier`'s burst ("hbm" or "ddr"), over that tier's bandwidth.

    Returns {"bytes": charged bytes read + written, "s": seconds}.

    Raises:
        TieringError: a tier other than hbm/ddr, or negative counts.
    """
    if tier not in ("hbm", "ddr"):
        raise TieringError(f"sparse_update_cost: tier must be 'hbm' or 'ddr', got {tier!r}")
    if rows < 0 or dim < 1 or itemsize < 1 or state_rows < 0:
        raise TieringError(f"sparse_update_cost: rows/state_rows must be >= 0 and dim/itemsize >= 1 (got {rows}, {dim}, {itemsize}, {state_rows})")
    spec = getattr(fabric, tier)
    nbytes = 2 * rows * (1 + state_rows) * burst_round(dim * itemsize, spec.burst_bytes)
    return {"bytes": float(nbytes), "s": nbytes / spec.bytes_per_s}
