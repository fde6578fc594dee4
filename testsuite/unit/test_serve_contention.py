"""Contention: HBM shared by two resident programs stretches memory-bound work only."""

from __future__ import annotations

import pytest

from rdu_compiler.serve.contention import (
    demand,
    granted,
    programs_together,
    section_time,
    steps_together,
    stretch,
)

BW = 1e12


def _section(core: dict[str, float], hbm_bytes: float) -> dict[str, float]:
    s = {"compute_s": 0.0, "pmu_s": 0.0, "hbm_s": hbm_bytes / BW, "ddr_s": 0.0, "agcu_s": 0.0, "network_s": 0.0,
         "fill_s": 1e-6, "launch_s": 1e-5, "hbm_bytes": hbm_bytes, "ddr_bytes": 0.0}
    s.update(core)
    s["total_s"] = max(s[k] for k in ("compute_s", "hbm_s")) + s["fill_s"] + s["launch_s"]
    return s


def test_compute_bound_phase_keeps_its_time() -> None:
    prefill = _section({"compute_s": 1e-3}, hbm_bytes=2e8)  # u = 0.2
    decode = _section({"compute_s": 1e-5}, hbm_bytes=1e9)  # memory-bound, u = 1
    both = programs_together([prefill], [decode], BW)
    assert both.a_s == pytest.approx(prefill["total_s"])  # prefill: unchanged
    assert both.b_s > decode["total_s"]  # decode: stretched by prefill's demand
    # decode gets 1 - u_prefill of the bandwidth (u over prefill's whole time, launch included)
    u_prefill = 2e8 / (BW * prefill["total_s"])
    assert both.b_s == pytest.approx(1e-3 / (1 - u_prefill) + 1e-6 + 1e-5, rel=1e-9)


def test_two_memory_bound_phases_split_bandwidth() -> None:
    c = steps_together(1.0, BW * 1.0, 2.0, BW * 2.0, BW)
    assert (c.a_s, c.b_s) == (pytest.approx(2.0), pytest.approx(4.0))


def test_no_stretch_when_demands_fit() -> None:
    assert stretch(0.6, 0.4) == 1.0
    assert stretch(0.3, 1.0) == 1.0  # a small demand is always served (max-min fairness)
    assert granted(0.9, 0.9) == 0.5
    assert stretch(0.0, 1.0) == 1.0
    assert demand(1.0, 0.0, BW) == 0.0


def test_stretch_grows_with_the_other_demand() -> None:
    values = [stretch(1.0, u) for u in (0.0, 0.2, 0.4, 0.6, 0.8)]
    assert values == sorted(values) and values[0] == 1.0 and values[-1] == pytest.approx(2.0)


def test_section_time_alone_is_its_cost() -> None:
    s = _section({"compute_s": 2e-4}, hbm_bytes=1e8)
    assert section_time(s, 0.0, BW) == pytest.approx(s["total_s"])
