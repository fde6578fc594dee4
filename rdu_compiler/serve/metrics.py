"""Per-request records and the serving metrics computed from them (seconds, tokens)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class RequestRecord:
    """One request's life (seconds from the trace start).

    token_times: the time of each output token (the first is `first_token`, from prefill);
    finish: the last token's time; preemptions: times its KV was dropped and recomputed.
    """

    id: int
    arrival: float
    prompt_tokens: int
    output_tokens: int
    first_token: float | None = None
    token_times: list[float] = field(default_factory=list)
    finish: float | None = None
    preemptions: int = 0

    @property
    def ttft(self) -> float:
        """Time to first token (s); raises ValueError when unfinished."""
        if self.first_token is None:
            raise ValueError(f"request {self.id} has no first token")
        return self.first_token - self.arrival

    @property
    def tbts(self) -> list[float]:
        """Gaps between successive output tokens (s)."""
        return [b - a for a, b in zip(self.token_times, self.token_times[1:], strict=False)]

    @property
    def tpot(self) -> float:
        """Mean time per output token after the first (s); 0 for a one-token output."""
        gaps = self.tbts
        return sum(gaps) / len(gaps) if gaps else 0.0


def _pcts(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {"p50": float("nan"), "p95": float("nan"), "p99": float("nan"), "mean": float("nan")}
    a = np.asarray(values, dtype=float)
    p50, p95, p99 = np.percentile(a, [50, 95, 99])
    return {"p50": float(p50), "p95": float(p95), "p99": float(p99), "mean": float(a.mean())}


def compute_metrics(records: Sequence[RequestRecord], slo_ttft: float | None, slo_tbt: float | None) -> dict[str, Any]:
    """TTFT and TBT percentiles (s), throughput (requests/s and output tokens/s over the span
    from the first arrival to the last finish), and SLO attainment: the fraction of requests
    with TTFT <= slo_ttft and TPOT (mean TBT of the request) <= slo_tbt (an SLO left None
    is not checked; unfinished requests count as missing it)."""
    done = [r for r in records if r.finish is not None]
    ttft = [r.ttft for r in done]
    tbt = [g for r in done for g in r.tbts]
    out: dict[str, Any] = {"requests": len(records), "finished": len(done), "ttft_s": _pcts(ttft), "tbt_s": _pcts(tbt),
                           "tpot_s": _pcts([r.tpot for r in done]), "preemptions": sum(r.preemptions for r in records)}
    if done:
        start = min(r.arrival for r in records)
        end = max(r.finish for r in done if r.finish is not None)
        span = max(end - start, 1e-12)
        out["throughput_rps"] = len(done) / span
        out["throughput_tok_s"] = sum(r.output_tokens for r in done) / span
    else:
        out["throughput_rps"] = out["throughput_tok_s"] = 0.0
    ok = 0
    for r in done:
        if (slo_ttft is None or r.ttft <= slo_ttft) and (slo_tbt is None or r.tpot <= slo_tbt):
            ok += 1
    out["slo_attainment"] = ok / len(records) if records else 0.0
    out["slo_ttft_s"], out["slo_tbt_s"] = slo_ttft, slo_tbt
    return out
