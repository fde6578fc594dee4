"""Serving on several sockets (serve.node): KV transfer time, decode admission after the
transfer, replicas, and refusals, on the hand-made latency model (serve_fixtures)."""

from __future__ import annotations

import pytest

from rdu_compiler.fabric.node import NodeSpec
from rdu_compiler.serve import (
    PolicyError,
    Request,
    SimError,
    generate,
    kv_transfer_seconds,
    parse_policy,
    simulate,
    simulate_node,
)
from testsuite.unit.serve_fixtures import synthetic_model

FULL = NodeSpec(4, "full", 2e9, 3e-6, 1e-5, 1e9)
RING = NodeSpec(6, "ring", 1e9, 5e-6, 1e-5, 1e9)


def _clip(reqs: list[Request], p: int = 200, d: int = 40) -> list[Request]:
    return [Request(r.arrived_at, min(r.num_prefill_tokens, p), min(r.num_decode_tokens, d)) for r in reqs]


def test_kv_transfer_time_is_hops_latency_plus_bytes_over_link() -> None:
    lm = synthetic_model()
    nbytes = 300 * lm.model.kv_bytes_per_token()  # tiny: 2 layers x 2 x 2 heads x 16 x 2 B = 256 B a token
    assert nbytes == 300 * 2 * 2 * 2 * 16 * 2
    assert kv_transfer_seconds(FULL, nbytes, 0, 3) == pytest.approx(3e-6 + nbytes / 2e9, rel=1e-15)
    assert kv_transfer_seconds(RING, nbytes, 0, 3) == pytest.approx(3 * 5e-6 + nbytes / 1e9, rel=1e-15)  # 3 hops round the ring
    assert kv_transfer_seconds(RING, nbytes, 1, 5) == pytest.approx(2 * 5e-6 + nbytes / 1e9, rel=1e-15)  # the short way


def test_one_request_alone_is_prefill_transfer_decode() -> None:
    lm = synthetic_model()
    res = simulate_node([Request(1.0, 300, 4)], lm, "disaggregated:1:3", sockets=4, node=FULL)
    full = lm.base_rows
    prefill = lm.prefill(full, [(300, 0)])[0]
    [tr] = res.transfers
    assert (tr.src, tr.nbytes) == (0, 300 * lm.model.kv_bytes_per_token())
    assert tr.dst in (1, 2, 3)
    assert tr.start == pytest.approx(1.0 + prefill)
    assert tr.end - tr.start == pytest.approx(3e-6 + tr.nbytes / 2e9, rel=1e-12)
    decodes = [lm.decode(full, [300 + k])[0] for k in (1, 2, 3)]
    rec = res.records[0]
    assert rec.ttft == pytest.approx(prefill, rel=1e-12)  # the first token comes from prefill
    assert rec.token_times[1] == pytest.approx(tr.end + decodes[0], rel=1e-12)  # decode waits for the KV
    assert rec.finish == pytest.approx(tr.end + sum(decodes), rel=1e-12)


@pytest.mark.parametrize("split", ["disaggregated:1:3", "disaggregated:2:2", "disaggregated:3:1"])
def test_decode_never_starts_before_its_transfer_ends(split: str) -> None:
    lm = synthetic_model()
    reqs = _clip(generate("conversation", 3000.0, 0.2, seed=5))
    cap = 60  # blocks per socket: forces waits for decode room and preemptions
    res = simulate_node(reqs, lm, split, sockets=4, node=FULL, kv_capacity=cap * 16 * lm.model.kv_bytes_per_token())
    assert res.kv_peak_blocks <= cap and res.metrics["preemptions"] > 0
    arrived = {tr.request: [] for tr in res.transfers}
    for tr in res.transfers:
        arrived[tr.request].append(tr.end)
        assert tr.src < res.prefill_sockets <= tr.dst
    by_link: dict[tuple[int, int], list[tuple[float, float]]] = {}
    for tr in res.transfers:
        by_link.setdefault((tr.src, tr.dst), []).append((tr.start, tr.end))
    for spans in by_link.values():  # one transfer at a time on a link
        spans.sort()
        assert all(a[1] <= b[0] + 1e-15 for a, b in zip(spans, spans[1:], strict=False))
    for step in res.steps:
        for rid in step.requests:
            if step.phase == "decode":
                assert step.socket >= res.prefill_sockets
                before = [e for e in arrived[rid] if e <= step.start]
                assert before, f"request {rid} decoded at {step.start} before any transfer ended"
            else:
                assert step.socket < res.prefill_sockets
    for q, rec in zip(reqs, res.records, strict=True):
        assert rec.finish is not None and len(rec.token_times) == q.num_decode_tokens
        assert rec.token_times == sorted(rec.token_times)
    # each request's transfers (one per prefill, re-sent after a preemption) precede its decode steps
    multi = [rid for rid, ends in arrived.items() if len(ends) > 1]
    assert len(multi) == len({r.id for r in res.records if r.preemptions and r.output_tokens > 1})


def test_disaggregated_sweep_picks_a_split_and_is_deterministic() -> None:
    lm = synthetic_model()
    reqs = _clip(generate("code", 800.0, 0.3, seed=2))
    a = simulate_node(reqs, lm, "disaggregated", sockets=4, node=FULL, slo_ttft=0.05, slo_tbt=0.01)
    b = simulate_node(reqs, lm, "disaggregated", sockets=4, node=FULL, slo_ttft=0.05, slo_tbt=0.01)
    assert [s["prefill_sockets"] for s in a.sweep] == [1, 2, 3]
    assert a.records == b.records and a.sweep == b.sweep
    best = max(a.sweep, key=lambda s: (s["slo_attainment"], s["throughput_tok_s"], -s["ttft_p95_s"]))
    assert a.prefill_sockets == best["prefill_sockets"]


def test_replicas_are_round_robin_one_socket_engines() -> None:
    lm = synthetic_model()
    reqs = _clip(generate("conversation", 500.0, 0.2, seed=1))
    res = simulate_node(reqs, lm, "nexus", sockets=3, node=FULL)
    one = simulate(reqs[1::3], lm, "nexus")
    assert [r.token_times for r in res.records[1::3]] == [r.token_times for r in one.records]
    assert res.policy == "nexus x3" and not res.transfers


def test_bad_splits_are_refused() -> None:
    lm = synthetic_model()
    reqs = [Request(0.0, 10, 3)]
    with pytest.raises(PolicyError, match="P \\+ D = 4"):
        simulate_node(reqs, lm, "disaggregated:1:2", sockets=4, node=FULL)
    with pytest.raises(SimError, match="has 4 socket"):
        simulate_node(reqs, lm, "disaggregated:3:3", sockets=6, node=FULL)
    with pytest.raises(PolicyError, match="at least 2 sockets"):
        simulate_node(reqs, lm, "disaggregated", sockets=1, node=FULL)
    for bad in ("disaggregated:0:4", "disaggregated:1", "disaggregated:a:b", "disaggregated:1.5:2"):
        with pytest.raises(PolicyError, match="whole numbers"):
            parse_policy(bad)
    with pytest.raises(SimError, match="simulate_node"):
        simulate(reqs, lm, "disaggregated:1:1")
