"""HBM bandwidth shared by two resident programs (prefill on one region, decode on another).

Each region has its own PCUs, PMUs and AGCUs (`regions.py`), so the AGCU term of the cost
model is already the region's own; what the two programs share is the socket's HBM (and
DDR) bandwidth. Contention is computed from the two programs' bytes and times, with no
hand-set constant:

**Demand.** A program (or one of its sections) that moves H bytes of HBM traffic in T
seconds when alone demands the fraction u = H / (BW * T) of the HBM bandwidth BW
(0 <= u <= 1, because the cost model's time is at least H / BW). For a section, T is its
steady-state time core = max(compute, pmu, hbm, ddr, agcu, network) (fill and launch move
no bulk data); for a whole program, T is its total time.

**Sharing.** The HBM controller serves the two demands max-min fairly: when
u_A + u_B <= 1 both get what they ask; otherwise the smaller demand gets
min(u_small, 1/2) and the larger one the rest. Program A's section then gets a bandwidth
fraction g_A <= u_A and its memory time becomes H / (BW g_A):

    g_A     = u_A                       if u_A + u_B <= 1
            = min(u_A, max(1 - u_B, 1/2)) otherwise
    core'_A = max(core_A, core_A * u_A / g_A) = core_A * u_A / g_A
    time'_A = core'_A + fill + launch

so a section is stretched only when it is memory-hungry (u_A > 1/2 and u_A + u_B > 1): a
compute-bound prefill section next to a memory-bound decode keeps its time, and the decode
is stretched by prefill's demand. The other phase's demand u_B is its program-average
(its bytes over BW times its total time: the chance that its memory traffic overlaps a
given moment, as in Nexus [S]), since the two programs' sections are not synchronised.
DDR is treated the same way with its own bandwidth.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


def demand(bytes_: float, seconds: float, bandwidth: float) -> float:
    """The fraction of `bandwidth` (bytes/s) a transfer of `bytes_` in `seconds` uses, in [0, 1]."""
    if seconds <= 0 or bandwidth <= 0:
        return 0.0
    return min(1.0, max(0.0, bytes_ / (bandwidth * seconds)))


def granted(u_self: float, u_other: float) -> float:
    """Bandwidth fraction granted to a demand `u_self` next to `u_other` (max-min fair)."""
    if u_self + u_other <= 1.0:
        return u_self
    return min(u_self, max(1.0 - u_other, 0.5))


def stretch(u_self: float, u_other: float) -> float:
    """Factor (>= 1) by which a steady state demanding `u_self` slows next to `u_other`."""
    if u_self <= 0:
        return 1.0
    return u_self / granted(u_self, u_other)


@dataclass(frozen=True)
class Contended:
    """Times of the two phases when resident together (seconds) and the demands used."""

    a_s: float
    b_s: float
    u_a: float
    u_b: float


def program_demand(sections: Sequence[dict[str, Any]], bandwidth: float, key: str = "hbm_bytes") -> float:
    """A compiled program's average demand: its bytes over bandwidth times its total time.

    `sections` as in `programs.measure` (each with `hbm_bytes`/`ddr_bytes` and `total_s`)."""
    total = sum(s["total_s"] for s in sections)
    return demand(sum(s[key] for s in sections), total, bandwidth)


def section_time(section: dict[str, Any], u_other: float, bandwidth: float, ddr_bandwidth: float = 0.0,
                 u_other_ddr: float = 0.0) -> float:
    """One section's time (seconds) next to another program demanding `u_other` of HBM
    (and `u_other_ddr` of DDR), by the module's formula."""
    core = max(section[k] for k in ("compute_s", "pmu_s", "hbm_s", "ddr_s", "agcu_s", "network_s"))
    factor = stretch(demand(section["hbm_bytes"], core, bandwidth), u_other)
    if ddr_bandwidth > 0:
        factor = max(factor, stretch(demand(section["ddr_bytes"], core, ddr_bandwidth), u_other_ddr))
    return core * factor + section["fill_s"] + section["launch_s"]


def programs_together(a: Sequence[dict[str, Any]], b: Sequence[dict[str, Any]], bandwidth: float) -> Contended:
    """Times of compiled programs `a` and `b` (their `sections`) resident together, HBM shared."""
    u_a, u_b = program_demand(a, bandwidth), program_demand(b, bandwidth)
    return Contended(sum(section_time(s, u_b, bandwidth) for s in a), sum(section_time(s, u_a, bandwidth) for s in b), u_a, u_b)


def steps_together(a_s: float, a_bytes: float, b_s: float, b_bytes: float, bandwidth: float) -> Contended:
    """Two steps known only by (seconds alone, HBM bytes): each is treated as one section
    whose steady state is its whole time (the fitted latency model keeps no sections).

    Returns their times resident together by the module's formula."""
    u_a, u_b = demand(a_bytes, a_s, bandwidth), demand(b_bytes, b_s, bandwidth)
    return Contended(a_s * stretch(u_a, u_b), b_s * stretch(u_b, u_a), u_a, u_b)
