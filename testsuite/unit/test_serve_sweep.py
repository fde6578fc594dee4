"""Serving-rate sweeps on the shared executors: the same rows serially and in worker
processes, in point order, and each row what one `simulate` call gives."""

from __future__ import annotations

from rdu_compiler.serve import generate, simulate
from rdu_compiler.serve.sweep import RatePoint, goodput_sweep, rate_sweep
from testsuite.unit.serve_fixtures import synthetic_model

POINTS = [RatePoint(trace, rate, policy, duration=20.0) for trace in ("conversation", "code")
          for rate in (2.0, 40.0) for policy in ("chunked", "nexus")]


def test_rate_sweep_rows_equal_simulate_and_agree_across_executors() -> None:
    lm = synthetic_model()
    serial = rate_sweep(lm, POINTS)
    assert [(r["trace"], r["rate"], r["policy"]) for r in serial] == [(p.trace, p.rate, p.policy) for p in POINTS]
    p = POINTS[-1]
    m = simulate(generate(p.trace, p.rate, p.duration, seed=p.seed), lm, p.policy, slo_ttft=p.slo_ttft,
                 slo_tbt=p.slo_tbt).metrics
    assert serial[-1]["ttft_p95_s"] == m["ttft_s"]["p95"] and serial[-1]["slo_attainment"] == m["slo_attainment"]
    assert len({r["ttft_p95_s"] for r in serial}) > 1  # the points differ
    assert rate_sweep(lm, POINTS, "process", workers=2) == serial


def test_goodput_sweep_bisects_per_trace_and_policy() -> None:
    """Serial only (the executors' agreement is the test above): the bisection's answer
    meets the SLOs and the next step up does not."""
    lm = synthetic_model()
    points = [RatePoint("conversation", 0.0, "nexus", duration=10.0)]
    (row,) = goodput_sweep(lm, points, hi=64.0, steps=4)
    g = row["goodput_rps"]
    assert g % 4.0 == 0  # 64 / 2**4 resolution
    at = rate_sweep(lm, [RatePoint("conversation", g, "nexus", duration=10.0)])[0]
    assert at["slo_attainment"] >= 0.9 or g == 0
    above = rate_sweep(lm, [RatePoint("conversation", g + 4.0, "nexus", duration=10.0)])[0]
    assert above["slo_attainment"] < 0.9 or g + 4.0 >= 64.0
