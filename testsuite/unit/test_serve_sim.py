"""The serving loop's honesty checks, on a hand-made latency model (serve_fixtures)."""

from __future__ import annotations

import math

import pytest

from rdu_compiler.serve import PolicyError, Request, SimError, generate, parse_policy, simulate
from testsuite.unit.serve_fixtures import synthetic_model


def _clip(reqs: list[Request], p: int = 200, d: int = 40) -> list[Request]:
    return [Request(r.arrived_at, min(r.num_prefill_tokens, p), min(r.num_decode_tokens, d)) for r in reqs]


@pytest.mark.parametrize("policy", ["static:0.25", "static:0.5", "static:0.75"])
def test_one_request_alone_is_prefill_plus_decode(policy: str) -> None:
    lm = synthetic_model()
    res = simulate([Request(1.0, 100, 5)], lm, policy)
    rows_p = lm.rows_for(parse_policy(policy).share)
    rows_d = lm.base_rows - rows_p
    prefill = lm.prefill(rows_p, [(100, 0)])[0]
    decodes = [lm.decode(rows_d, [100 + k])[0] for k in range(1, 5)]
    rec = res.records[0]
    assert rec.ttft == pytest.approx(prefill, rel=1e-12)
    assert rec.finish == pytest.approx(1.0 + prefill + sum(decodes), rel=1e-12)
    assert rec.tbts == pytest.approx(decodes, rel=1e-9)


def test_one_request_alone_chunked_is_chunks_plus_decode() -> None:
    lm = synthetic_model()
    res = simulate([Request(0.0, 1000, 3)], lm, parse_policy("chunked", chunk_tokens=512))
    full = lm.base_rows
    chunks = lm.mixed(full, [(512, 0)], [])[0] + lm.mixed(full, [(488, 512)], [])[0]
    decodes = [lm.decode(full, [1000 + k])[0] for k in (1, 2)]
    assert res.records[0].ttft == pytest.approx(chunks, rel=1e-12)
    assert res.records[0].finish == pytest.approx(chunks + sum(decodes), rel=1e-12)


def test_nexus_alone_gives_decode_the_largest_share() -> None:
    lm = synthetic_model()
    res = simulate([Request(0.0, 100, 4)], lm, "nexus")
    rec = res.records[0]
    assert rec.ttft == pytest.approx(lm.prefill(6, [(100, 0)])[0])  # nothing to decode: prefill takes 6 of 8 rows
    assert rec.tbts[-1] == pytest.approx(lm.decode(6, [103])[0])  # nothing to prefill: decode takes 6


@pytest.mark.parametrize("policy", ["chunked", "static:0.5", "nexus"])
def test_every_request_finishes_with_its_tokens_and_kv_stays_in_capacity(policy: str) -> None:
    lm = synthetic_model()
    reqs = _clip(generate("conversation", 2000.0, 0.2, seed=3))
    cap_blocks = 40  # small: forces preemption
    res = simulate(reqs, lm, policy, kv_capacity=cap_blocks * 16 * lm.model.kv_bytes_per_token())
    assert res.kv_capacity_blocks == cap_blocks
    assert res.kv_peak_blocks <= cap_blocks
    assert res.metrics["preemptions"] > 0
    for q, rec in zip(reqs, res.records, strict=True):
        assert rec.finish is not None and rec.first_token is not None
        assert len(rec.token_times) == q.num_decode_tokens
        assert rec.token_times == sorted(rec.token_times)
        assert rec.arrival <= rec.first_token <= rec.finish
    assert res.metrics["finished"] == len(reqs)


@pytest.mark.parametrize("policy", ["chunked", "static:0.25", "nexus"])
def test_same_seed_same_result(policy: str) -> None:
    lm = synthetic_model()
    a = simulate(_clip(generate("code", 500.0, 0.5, seed=9)), lm, policy, slo_ttft=0.01, slo_tbt=0.001)
    b = simulate(_clip(generate("code", 500.0, 0.5, seed=9)), lm, policy, slo_ttft=0.01, slo_tbt=0.001)
    assert a.records == b.records and a.metrics == b.metrics and a.splits == b.splits


def test_metrics_and_slo() -> None:
    lm = synthetic_model()
    res = simulate(_clip(generate("conversation", 300.0, 0.5, seed=2)), lm, "static:0.5", slo_ttft=1e9, slo_tbt=1e9)
    m = res.metrics
    assert m["slo_attainment"] == 1.0
    assert m["ttft_s"]["p50"] <= m["ttft_s"]["p95"] <= m["ttft_s"]["p99"]
    assert m["throughput_rps"] > 0 and not math.isnan(m["tbt_s"]["p50"])
    tight = simulate(_clip(generate("conversation", 300.0, 0.5, seed=2)), lm, "static:0.5", slo_ttft=1e-9)
    assert tight.metrics["slo_attainment"] == 0.0


def test_refusals() -> None:
    lm = synthetic_model()
    with pytest.raises(SimError, match="simulate_node"):
        simulate([Request(0.0, 10, 10)], lm, "disaggregated")
    with pytest.raises(PolicyError, match="strictly between 0 and 1"):
        parse_policy("static:1.5")
    with pytest.raises(PolicyError, match="unknown policy"):
        parse_policy("fastserve")
    with pytest.raises(SimError, match="does not fit the KV cache"):
        simulate([Request(0.0, 10_000, 10)], lm, "chunked", kv_capacity=1 << 16)
    with pytest.raises(SimError, match="not both compiled"):
        simulate([Request(0.0, 10, 10)], lm, "static:0.9")


def test_greedy_split_walks_downhill_with_hysteresis() -> None:
    from rdu_compiler.serve.policies import greedy_split

    rows = [2, 4, 6]
    calls: list[int] = []

    def bowl(r: int) -> float:
        calls.append(r)
        return {2: 3.0, 4: 2.0, 6: 1.0}[r]

    assert greedy_split(rows, 2, bowl, 0.05) == (6, 3)
    assert calls == [2, 4, 6]  # never looks below the current split when it is the lowest
    assert greedy_split(rows, 4, lambda r: {2: 1.0, 4: 1.02, 6: 2.0}[r], 0.05)[0] == 4  # < 5 %: stay
    assert greedy_split(rows, 4, lambda r: {2: 0.5, 4: 1.0, 6: 2.0}[r], 0.05)[0] == 2


def test_contention_stretches_decode_during_prefill_only() -> None:
    """The same trace with HBM bandwidth 1000x higher (no contention possible) decodes faster
    while prompts are prefilled; prefill steps (compute-bound) keep their times."""
    from dataclasses import replace

    lm = synthetic_model(hbm_bytes_per_s=3.5e8)  # demands: decode 1, the 3000-token prefill ~0.3
    free = replace(lm, hbm_bytes_per_s=2e10)
    reqs = [Request(0.0, 50, 400), Request(0.003, 3000, 2)]  # a long prefill arrives mid-decode
    a = simulate(reqs, lm, "static:0.5")
    b = simulate(reqs, free, "static:0.5")
    assert a.records[1].ttft == pytest.approx(b.records[1].ttft)
    assert sum(a.records[0].tbts) > sum(b.records[0].tbts)
    assert a.records[0].finish > b.records[0].finish
