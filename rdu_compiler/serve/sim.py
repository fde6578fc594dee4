"""A discrete-event serving simulation: continuous batching over a paged KV cache in HBM.

Time is in seconds, sizes in tokens and bytes. Step durations come from a fitted
`latency.LatencyModel` (compiled programs) and, when prefill and decode programs are
resident together, `contention.steps_together`.

**KV cache.** Capacity = HBM capacity - all weights - activations (the largest prefill
program's peak HBM less one layer's weights), in blocks of `block_tokens` tokens of
`LlamaSpec.kv_bytes_per_token()` each. A request holds ceil(kv_tokens / block_tokens) blocks.
When a step needs a block and none is free, the most recently admitted request not in
flight is preempted by recompute (vLLM): its blocks are freed and it waits again at the
front of the prefill queue with prompt + generated tokens to prefill (that prefill emits
its next token). A request larger than the whole cache is refused before the run.

**Spatial policies** (`static:F`, `nexus`): a prefill engine on its region runs batches of
whole prompts (up to `prefill_token_budget` tokens, at least one prompt), a decode engine
on the rest runs one step for the running batch (up to `max_batch`) back to back. A step's
duration is fixed when it starts: contended (`contention.steps_together`) if the other
engine is busy then, alone otherwise. A split chosen by `nexus` applies to each engine
from its next step, and never to rows the other engine is using during its current step:
a prefill step that wants more rows than decode leaves free waits for the decode step to
end (one decode step, ~10 ms on the 8B model); a decode step takes what prefill leaves.

**Monolithic** (`chunked`): one engine on the whole fabric; a step decodes every running
request and fills the rest of `chunk_tokens` with prefill chunks (FCFS), timed by
`LatencyModel.mixed`.

The simulation is deterministic: same requests and model, same result.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from rdu_compiler.errors import RduError
from rdu_compiler.serve.contention import steps_together
from rdu_compiler.serve.latency import LatencyModel
from rdu_compiler.serve.metrics import RequestRecord, compute_metrics
from rdu_compiler.serve.policies import Policy, greedy_split, parse_policy, spf
from rdu_compiler.serve.traces import Request


class SimError(RduError):
    """The simulation cannot run as asked (KV cache too small, share not compiled)."""


@dataclass
class SimResult:
    """records: one per request, in trace order; metrics: `metrics.compute_metrics`;
    kv_capacity_blocks / kv_peak_blocks: cache size and the most blocks ever held;
    splits: (time s, prefill rows) each time the split changed (spatial policies)."""

    records: list[RequestRecord]
    metrics: dict[str, Any]
    policy: str
    block_tokens: int
    kv_capacity_blocks: int
    kv_peak_blocks: int
    splits: list[tuple[float, int]] = field(default_factory=list)


@dataclass(eq=False)  # identity: `in` on queues must not compare fields
class _Req:
    rec: RequestRecord
    seq: int  # admission order (for preemption)
    target: int  # tokens to prefill
    done: int = 0  # tokens prefilled so far (chunked)
    kv_tokens: int = 0
    blocks: int = 0
    generated: int = 0
    busy: bool = False  # in a running step


class _Sim:
    def __init__(self, lm: LatencyModel, pol: Policy, block_tokens: int, capacity_blocks: int,
                 budget: int, max_batch: int) -> None:
        self.lm, self.pol, self.bt = lm, pol, block_tokens
        self.cap, self.used, self.peak = capacity_blocks, 0, 0
        self.budget, self.max_batch = budget, max_batch
        self.waiting: list[_Req] = []
        self.running: list[_Req] = []
        self.holders: dict[int, _Req] = {}
        self.seq = 0
        self.events: list[tuple[float, int, str, Any]] = []
        self.n_events = 0
        self.finished = 0
        self.prefill: tuple[int, float, float] | None = None  # (rows, alone s, bytes) of the running step
        self.decode: tuple[int, float, float] | None = None
        self.splits: list[tuple[float, int]] = []

    # --- events and KV --------------------------------------------------------------
    def push(self, t: float, kind: str, payload: Any) -> None:
        self.n_events += 1
        heapq.heappush(self.events, (t, self.n_events, kind, payload))

    def grow(self, r: _Req, tokens: int) -> bool:
        """Hold blocks for `tokens` KV tokens of `r`, preempting others; False if r itself was preempted."""
        need = math.ceil(tokens / self.bt) - r.blocks
        while need > self.cap - self.used:
            victims = [v for v in self.holders.values() if not v.busy and v is not r]
            if not victims:
                self.preempt(r)
                return False
            self.preempt(max(victims, key=lambda v: v.seq))
        if need > 0:
            self.used += need
            r.blocks += need
            self.holders[id(r)] = r
            self.peak = max(self.peak, self.used)
        return True

    def free(self, r: _Req) -> None:
        self.used -= r.blocks
        r.blocks = r.kv_tokens = r.done = 0
        self.holders.pop(id(r), None)

    def preempt(self, r: _Req) -> None:
        self.free(r)
        r.rec.preemptions += 1
        r.target = r.rec.prompt_tokens + r.generated
        if r in self.running:
            self.running.remove(r)
        if r in self.waiting:
            self.waiting.remove(r)
        self.waiting.insert(0, r)

    def emit(self, r: _Req, t: float) -> None:
        r.generated += 1
        r.rec.token_times.append(t)
        if r.rec.first_token is None:
            r.rec.first_token = t
        if r.generated >= r.rec.output_tokens:
            r.rec.finish = t
            self.free(r)
            if r in self.running:
                self.running.remove(r)
            self.finished += 1

    # --- spatial engines ----------------------------------------------------------------
    def pairs(self) -> list[int]:
        base = self.lm.base_rows
        return sorted(r for r in self.lm.shares if r < base and base - r in self.lm.shares)

    def choose(self, split: int, engine: str) -> int:
        if self.pol.kind != "nexus":
            return split
        base = self.lm.base_rows
        cand = self.pairs()
        if engine == "decode" and self.prefill is not None:
            cand = [r for r in cand if r >= self.prefill[0]]
        if not cand:
            return split
        if not self.waiting:
            return cand[0]
        if not self.running and self.decode is None:
            return cand[-1]
        chunks = [(w.target, 0) for w in self.waiting]
        ctx = [r.kv_tokens + 1 for r in self.running[: self.max_batch]] or [1]
        norm_p = self.lm.prefill(base, chunks)[0]
        norm_d = self.lm.decode(base, ctx)[0]
        w = 0.75 if self.used < self.pol.kv_switch * self.cap else 0.25

        def objective(rows: int) -> float:
            p, pb = self.lm.prefill(rows, chunks)
            d, db = self.lm.decode(base - rows, ctx)
            c = steps_together(p, pb, d, db, self.lm.hbm_bytes_per_s)
            return w * c.a_s / norm_p + (1 - w) * c.b_s / norm_d

        start = min(cand, key=lambda r: abs(r - split))
        return greedy_split(cand, start, objective, self.pol.hysteresis)[0]

    def start_prefill(self, t: float, split: int) -> int:
        if self.prefill is not None or not self.waiting:
            return split
        split = self.choose(split, "prefill")
        if self.decode is not None and split > self.lm.base_rows - self.decode[0]:
            return split  # nexus wants rows decode is using: start when its step ends
        order = spf(range(len(self.waiting)), lambda i: self.waiting[i].target) if self.pol.kind == "nexus" else range(len(self.waiting))
        batch: list[_Req] = []
        tokens = 0
        for i in list(order):
            r = self.waiting[i]
            if batch and tokens + r.target > self.budget:
                break
            if math.ceil(r.target / self.bt) - r.blocks > self.cap - self.used:
                break  # wait for decode to free blocks (prefill never preempts)
            self.grow(r, r.target)
            batch.append(r)
            tokens += r.target
        if not batch:
            return split
        for r in batch:
            self.waiting.remove(r)
            r.busy = True
        alone, nbytes = self.lm.prefill(split, [(r.target, 0) for r in batch])
        dur = alone
        if self.decode is not None:
            dur = steps_together(alone, nbytes, self.decode[1], self.decode[2], self.lm.hbm_bytes_per_s).a_s
        self.prefill = (split, alone, nbytes)
        self.push(t + dur, "prefill_done", batch)
        return split

    def start_decode(self, t: float, split: int) -> int:
        if self.decode is not None or not self.running:
            return split
        split = self.choose(split, "decode")
        batch: list[_Req] = []
        for r in list(self.running[: self.max_batch]):
            if r in self.running and self.grow(r, r.kv_tokens + 1):
                r.busy = True
                batch.append(r)
        if not batch:
            return split
        rows = self.lm.base_rows - split
        alone, nbytes = self.lm.decode(rows, [r.kv_tokens + 1 for r in batch])
        dur = alone
        if self.prefill is not None:
            dur = steps_together(alone, nbytes, self.prefill[1], self.prefill[2], self.lm.hbm_bytes_per_s).a_s
        self.decode = (rows, alone, nbytes)
        self.push(t + dur, "decode_done", batch)
        return split

    # --- monolithic engine ---------------------------------------------------------------
    def start_mixed(self, t: float) -> None:
        if self.decode is not None or not (self.waiting or self.running):
            return
        dec: list[_Req] = []
        for r in list(self.running[: self.max_batch]):
            if r in self.running and self.grow(r, r.kv_tokens + 1):
                r.busy = True
                dec.append(r)
        budget = self.pol.chunk_tokens - len(dec)
        pre: list[tuple[_Req, int]] = []
        for r in list(self.waiting):
            if budget <= 0:
                break
            n = min(r.target - r.done, budget)
            if math.ceil((r.done + n) / self.bt) - r.blocks > self.cap - self.used:
                break
            self.grow(r, r.done + n)
            r.busy = True
            pre.append((r, n))
            budget -= n
        if not dec and not pre:
            return
        dur, nbytes = self.lm.mixed(self.lm.base_rows, [(n, r.done) for r, n in pre], [r.kv_tokens + 1 for r in dec])
        self.decode = (self.lm.base_rows, dur, nbytes)
        self.push(t + dur, "mixed_done", (dec, pre))

    # --- the loop ----------------------------------------------------------------------
    def run(self, reqs: list[_Req], split: int, progress: Callable[[int, int], None] | None) -> None:
        for r in reqs:
            self.push(r.rec.arrival, "arrival", r)
        while self.events:
            t, _, kind, payload = heapq.heappop(self.events)
            if kind == "arrival":
                payload.seq = self.seq = self.seq + 1
                self.waiting.append(payload)
            elif kind == "prefill_done":
                self.prefill = None
                for r in payload:
                    r.busy = False
                    r.kv_tokens = r.target
                    self.running.append(r)
                    self.emit(r, t)
            elif kind == "decode_done":
                self.decode = None
                for r in payload:
                    r.busy = False
                    r.kv_tokens += 1
                    self.emit(r, t)
            else:  # mixed_done
                self.decode = None
                dec, pre = payload
                for r in dec:
                    r.busy = False
                    r.kv_tokens += 1
                    self.emit(r, t)
                for r, n in pre:
                    r.busy = False
                    r.done += n
                    r.kv_tokens = r.done
                    if r.done >= r.target:
                        self.waiting.remove(r)
                        self.running.append(r)
                        self.emit(r, t)
            if self.pol.spatial:
                old = split
                split = self.start_prefill(t, split)
                split = self.start_decode(t, split)
                if split != old:
                    self.splits.append((t, split))
            else:
                self.start_mixed(t)
            if progress is not None:
                progress(self.finished, len(reqs))


def kv_capacity_bytes(lm: LatencyModel) -> int:
    """HBM capacity - weights - activations (bytes); may be <= 0 for a model too big."""
    return lm.hbm_capacity_bytes - lm.model.weight_bytes - lm.activation_bytes


def simulate(
    requests: Sequence[Request],
    latency: LatencyModel,
    policy: str | Policy = "nexus",
    *,
    block_tokens: int = 16,
    kv_capacity: int | None = None,
    prefill_token_budget: int = 8192,
    max_batch: int = 256,
    slo_ttft: float | None = None,
    slo_tbt: float | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> SimResult:
    """Serve `requests` (sorted by arrival) on the fabric of `latency` under `policy`.

    Args:
        kv_capacity: KV-cache bytes (default `kv_capacity_bytes(latency)`).
        prefill_token_budget: most prompt tokens per prefill step (spatial policies).
        max_batch: most requests per decode step.
        slo_ttft, slo_tbt: SLOs (s) for the attainment metric.
        progress: called with (finished, total) after every event.

    Raises:
        SimError: KV cache too small for a request, or a share the policy needs not compiled.
        PolicyError: a bad policy name.
    """
    pol = parse_policy(policy) if isinstance(policy, str) else policy
    if pol.kind == "disaggregated":
        raise SimError(f"policy {pol.name} runs prefill and decode on different sockets: use "
                       "rdu_compiler.serve.simulate_node(requests, latency, policy, sockets=N) (rdu-serve --sockets N "
                       "--fabric sn40l-node8); simulate serves one socket")
    if block_tokens < 1 or max_batch < 1 or prefill_token_budget < 1:
        raise SimError("block_tokens, max_batch and prefill_token_budget must be >= 1")
    cap_bytes = kv_capacity_bytes(latency) if kv_capacity is None else kv_capacity
    blocks = int(cap_bytes // (block_tokens * latency.model.kv_bytes_per_token())) if cap_bytes > 0 else 0
    for i, q in enumerate(requests):
        if math.ceil((q.num_prefill_tokens + q.num_decode_tokens) / block_tokens) > blocks:
            raise SimError(
                f"request {i} ({q.num_prefill_tokens} + {q.num_decode_tokens} tokens) does not fit the KV cache of "
                f"{blocks} blocks x {block_tokens} tokens ({cap_bytes} bytes = HBM - weights - activations); "
                f"use a shorter trace, a larger fabric or a smaller model"
            )
    sim = _Sim(latency, pol, block_tokens, blocks, prefill_token_budget, max_batch)
    split = latency.base_rows
    if pol.spatial:
        pairs = sim.pairs()
        if not pairs:
            raise SimError(f"no pair of compiled shares (F, 1 - F) of {latency.fabric}; compile shares such as 0.25..0.75")
        split = latency.rows_for(pol.share if pol.kind == "static" else 0.5)
        if split not in pairs:
            raise SimError(
                f"policy {pol.name}: share {split / latency.base_rows:g} and its complement are not both compiled "
                f"(compiled rows: {sorted(latency.shares)} of {latency.base_rows}); pick F among "
                f"{', '.join(f'{r / latency.base_rows:g}' for r in pairs)}"
            )
        sim.splits.append((0.0, split))
    records = [RequestRecord(i, q.arrived_at, q.num_prefill_tokens, q.num_decode_tokens) for i, q in enumerate(requests)]
    reqs = [_Req(rec, 0, rec.prompt_tokens) for rec in records]
    sim.run(reqs, split, progress)
    stuck = [r.id for r in records if r.finish is None]
    if stuck:  # a scheduling bug, never a user error: say so rather than report partial metrics
        raise SimError(f"internal error: {len(stuck)} request(s) never finished (first: {stuck[:5]}); please report it")
    return SimResult(records, compute_metrics(records, slo_ttft, slo_tbt), pol.name, block_tokens, blocks, sim.peak, sim.splits)
