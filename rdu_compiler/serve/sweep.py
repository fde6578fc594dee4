"""Serving-rate sweeps on the executors of `rdu-sweep` (`rdu_compiler.parallel`).

A serving study is many independent simulations: every (trace, rate, policy) point, and a
goodput bisection per (trace, policy). `rate_sweep` runs the points and `goodput_sweep`
the bisections as jobs on `serial`, `process` or `ray`, with the latency model (fitted
once, from compiled programs) shipped to every job. The rows are the same on every
executor (the simulations are deterministic: seeded traces, no wall clock).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from rdu_compiler.parallel import map_unordered
from rdu_compiler.serve.latency import LatencyModel
from rdu_compiler.serve.sim import simulate
from rdu_compiler.serve.traces import generate


@dataclass(frozen=True)
class RatePoint:
    """One simulation: `trace` ("conversation", "code") at `rate` requests/s for `duration`
    seconds (seed `seed`) under `policy`, SLOs in seconds."""

    trace: str
    rate: float
    policy: str
    duration: float = 60.0
    seed: int = 0
    slo_ttft: float = 0.5
    slo_tbt: float = 0.05


def run_point(point: RatePoint, latency: LatencyModel) -> dict[str, Any]:
    """Simulate `point`: a row of its inputs and P50/P95 TTFT and TBT (s), throughput
    (requests/s), SLO attainment and preemptions."""
    reqs = generate(point.trace, point.rate, point.duration, seed=point.seed)
    m = simulate(reqs, latency, point.policy, slo_ttft=point.slo_ttft, slo_tbt=point.slo_tbt).metrics
    return {**asdict(point), "ttft_p50_s": m["ttft_s"]["p50"], "ttft_p95_s": m["ttft_s"]["p95"],
            "tbt_p50_s": m["tbt_s"]["p50"], "tbt_p95_s": m["tbt_s"]["p95"], "throughput_rps": m["throughput_rps"],
            "slo_attainment": m["slo_attainment"], "preemptions": m["preemptions"]}


def goodput(point: RatePoint, latency: LatencyModel, hi: float = 32.0, steps: int = 7,
            attainment: float = 0.9) -> dict[str, Any]:
    """The highest rate in [0, hi] (bisection, `steps` halvings: hi / 2**steps resolution)
    at which at least `attainment` of `point`'s requests meet both SLOs (its rate is
    ignored): a row with `goodput_rps`."""
    lo = 0.0
    for _ in range(steps):
        mid = (lo + hi) / 2
        ok = run_point(RatePoint(point.trace, mid, point.policy, point.duration, point.seed, point.slo_ttft,
                                 point.slo_tbt), latency)["slo_attainment"] >= attainment
        lo, hi = (mid, hi) if ok else (lo, mid)
    return {"trace": point.trace, "policy": point.policy, "duration": point.duration, "seed": point.seed,
            "slo_ttft": point.slo_ttft, "slo_tbt": point.slo_tbt, "goodput_rps": lo}


def _rows(fn: Any, points: Sequence[RatePoint], executor: str, workers: int | None, address: str | None) -> list[dict[str, Any]]:
    rows: list[dict[str, Any] | None] = [None] * len(points)
    for res in map_unordered(fn, points, executor, workers=workers, address=address):
        rows[res.index] = res.value if not res.error else {**asdict(points[res.index]), "error": res.error}
    return [r for r in rows if r is not None]


def rate_sweep(latency: LatencyModel, points: Sequence[RatePoint], executor: str = "serial", *,
               workers: int | None = None, address: str | None = None) -> list[dict[str, Any]]:
    """`run_point` for every point on `executor`; rows in point order (a failed point is a
    row with `error`).

    Raises:
        ExecutorError: unknown executor, Ray missing or unreachable.
    """
    return _rows(functools.partial(run_point, latency=latency), points, executor, workers, address)


def goodput_sweep(latency: LatencyModel, points: Sequence[RatePoint], executor: str = "serial", *,
                  workers: int | None = None, address: str | None = None, hi: float = 32.0,
                  steps: int = 7) -> list[dict[str, Any]]:
    """`goodput` for every (trace, policy) of `points`, one job each, on `executor`; rows in
    point order.

    Raises:
        ExecutorError: unknown executor, Ray missing or unreachable.
    """
    return _rows(functools.partial(goodput, latency=latency, hi=hi, steps=steps), points, executor, workers, address)
