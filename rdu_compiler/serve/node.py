"""Serving on several sockets of a node: replicas, and engine-level disaggregation.

`simulate_node(requests, latency, policy, sockets=N)` serves a trace on N sockets of a node
(a fabric with a `[sockets]` table such as `sn40l-node8`; `fabric/node.py`). Times in
seconds, sizes in tokens and bytes. What is modelled, exactly:

- **Each socket holds the whole model** (no tensor parallelism: Llama-3.1-8B's 16 GB of
  bf16 weights fit one socket's 64 GiB of HBM) and runs the one-socket programs compiled
  for it (`latency.LatencyModel`, the same fits as one-socket serving). Its KV cache is its
  own: `sim.kv_capacity_bytes(latency)` per socket. TP inside a group of sockets is NOT
  modelled: that needs per-shard compiled programs (`coe.llama.tp_layer`) and two
  all-reduces per layer (`cost.collectives.all_reduce`); serving here is replicated.
- **Replicas** (`chunked`, `static:F`, `nexus` on N sockets): request i goes to socket
  i mod N (round robin); each socket is an independent one-socket engine (`sim.simulate`);
  nothing crosses sockets.
- **Disaggregated** (`disaggregated:P:D`, DistServe / Splitwise): sockets 0..P-1 prefill,
  P..P+D-1 decode, each phase alone on its socket's whole grid (no HBM contention: one
  program per socket).

  * An arriving request joins the prefill socket with the fewest queued prompt tokens
    (ties: the lowest index). A prefill socket runs first-come-first-served batches of whole
    prompts (up to `prefill_token_budget` tokens, at least one prompt) timed by
    `LatencyModel.prefill` on the whole grid; it holds each prompt's KV blocks from the
    step's start and never preempts (it waits for blocks).
  * The prefill emits the first token (TTFT). Then the request's KV, `kv_tokens x
    kv_bytes_per_token()` bytes, moves to the decode socket with the most free blocks that
    can hold `ceil((kv_tokens + 1) / block_tokens)` blocks, which are reserved when the
    transfer starts (the decode side pulls when it has room, as in DistServe); while no
    decode socket has room the request waits, keeping its prefill-side blocks (back
    pressure on the prefill sockets). Requests that wait are served in order, a later one
    passing an earlier one only if it fits where that one does not.
  * The transfer takes `cost.collectives.send_recv(node, bytes, src, dst).seconds` =
    hops(src, dst) x hop_latency_s + bytes / link_bytes_per_s (`NodeSpec`). Transfers on one
    directed socket pair go one after another (FIFO on that link); on a `full` node every
    pair has its own link, so this is the whole link model there. On a `ring`, transfers
    of different pairs that share a link are not serialised against each other (not
    modelled). The transfer's HBM reads and writes (at most link_bytes_per_s, ~6 % of HBM
    bandwidth on sn40l-node8) are not charged as contention.
  * When the transfer ends the prefill socket frees the request's blocks and the request
    joins the decode socket's running batch: its first decode step starts no earlier.
  * A decode socket steps its running batch (up to `max_batch`) back to back, timed by
    `LatencyModel.decode` on the whole grid. When a step needs a block and none is free,
    the most recently admitted request of that socket not in the step is preempted by
    recompute (vLLM): its blocks are freed and it joins the front of a prefill queue with
    prompt + generated tokens; that prefill emits its next token and its KV is sent again.
  * Plain `disaggregated` runs every split P:D with P + D = N and keeps the best (highest
    SLO attainment, then output tokens/s, then lowest P95 TTFT); all are in `sweep`.

Deterministic: same requests, model and node give the same result.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from rdu_compiler.cost.collectives import send_recv
from rdu_compiler.fabric.node import NodeSpec
from rdu_compiler.serve.latency import LatencyModel
from rdu_compiler.serve.metrics import RequestRecord, compute_metrics
from rdu_compiler.serve.policies import Policy, PolicyError, parse_policy
from rdu_compiler.serve.sim import SimError, kv_capacity_bytes, simulate
from rdu_compiler.serve.traces import Request


@dataclass(frozen=True)
class Transfer:
    """One KV-cache transfer: request id, source and destination sockets, bytes, and its
    start and end (s; it starts when the link is free and the decode socket has room)."""

    request: int
    src: int
    dst: int
    nbytes: int
    start: float
    end: float


@dataclass(frozen=True)
class Step:
    """One engine step: phase ("prefill" | "decode"), socket, start and end (s), request ids."""

    phase: str
    socket: int
    start: float
    end: float
    requests: tuple[int, ...]


@dataclass
class NodeResult:
    """records: one per request, in trace order; metrics: `metrics.compute_metrics`;
    prefill_sockets / decode_sockets: the split (0 / 0 for replicas); kv_capacity_blocks:
    per socket; kv_peak_blocks: the most blocks any socket held; transfers and steps
    (disaggregated); sweep: one summary per split tried (plain `disaggregated`)."""

    records: list[RequestRecord]
    metrics: dict[str, Any]
    policy: str
    sockets: int
    prefill_sockets: int
    decode_sockets: int
    block_tokens: int
    kv_capacity_blocks: int
    kv_peak_blocks: int
    transfers: list[Transfer] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    sweep: list[dict[str, Any]] = field(default_factory=list)


def kv_transfer_seconds(node: NodeSpec, nbytes: float, src: int, dst: int) -> float:
    """Seconds to send `nbytes` of KV cache from socket `src` to `dst`:
    hops x hop_latency_s + nbytes / link_bytes_per_s (`cost.collectives.send_recv`)."""
    return send_recv(node, nbytes, src, dst).seconds


@dataclass(eq=False)  # identity: `in` on queues must not compare fields
class _R:
    rec: RequestRecord
    target: int  # tokens to prefill
    kv_tokens: int = 0
    generated: int = 0
    pblocks: int = 0  # held on its prefill socket
    dblocks: int = 0  # held on its decode socket
    psock: int = -1
    admitted: int = 0  # admission order on its decode socket (preemption picks the latest)


@dataclass(eq=False)  # identity: `in` on queues must not compare fields
class _Socket:
    index: int
    cap: int
    used: int = 0
    peak: int = 0
    busy: bool = False
    queue: list[_R] = field(default_factory=list)  # prefill: waiting; decode: running
    queued_tokens: int = 0  # prefill: sum of the waiting prompts' tokens

    def take(self, n: int) -> None:
        self.used += n
        self.peak = max(self.peak, self.used)


class _Disagg:
    def __init__(self, lm: LatencyModel, node: NodeSpec, p: int, d: int, bt: int, cap: int, budget: int, max_batch: int):
        self.lm, self.node, self.bt, self.budget, self.max_batch = lm, node, bt, budget, max_batch
        self.pre = [_Socket(i, cap) for i in range(p)]
        self.dec = [_Socket(p + i, cap) for i in range(d)]
        self.pending: list[_R] = []  # prefilled, waiting for a decode socket
        self.requeue: list[_R] = []  # preempted during the decode step being formed
        self.link_free: dict[tuple[int, int], float] = {}
        self.events: list[tuple[float, int, str, Any]] = []
        self.n, self.admitted, self.finished = 0, 0, 0
        self.transfers: list[Transfer] = []
        self.steps: list[Step] = []
        self.kv_token_bytes = lm.model.kv_bytes_per_token()

    def push(self, t: float, kind: str, payload: Any) -> None:
        self.n += 1
        heapq.heappush(self.events, (t, self.n, kind, payload))

    def blocks(self, tokens: int) -> int:
        return math.ceil(tokens / self.bt)

    def emit(self, r: _R, t: float) -> bool:
        """One output token at t; True when the request is finished."""
        r.generated += 1
        r.rec.token_times.append(t)
        if r.rec.first_token is None:
            r.rec.first_token = t
        if r.generated >= r.rec.output_tokens:
            r.rec.finish = t
            self.finished += 1
            return True
        return False

    # --- prefill sockets -------------------------------------------------------------
    def enqueue(self, r: _R, t: float, front: bool = False) -> None:
        s = min(self.pre, key=lambda s: (s.queued_tokens, s.index))
        s.queue.insert(0, r) if front else s.queue.append(r)
        s.queued_tokens += r.target
        r.psock = s.index
        self.try_prefill(s, t)

    def try_prefill(self, s: _Socket, t: float) -> None:
        if s.busy or not s.queue:
            return
        batch: list[_R] = []
        tokens = 0
        for r in list(s.queue):
            if batch and tokens + r.target > self.budget:
                break
            need = self.blocks(r.target)
            if need > s.cap - s.used:
                break
            s.take(need)
            r.pblocks = need
            batch.append(r)
            tokens += r.target
        if not batch:
            return
        del s.queue[: len(batch)]  # the batch is the queue's head
        s.queued_tokens -= tokens
        s.busy = True
        dur = self.lm.prefill(self.lm.base_rows, [(r.target, 0) for r in batch])[0]
        self.steps.append(Step("prefill", s.index, t, t + dur, tuple(r.rec.id for r in batch)))
        self.push(t + dur, "prefill_done", (s, batch))

    # --- transfers -------------------------------------------------------------------
    def try_transfers(self, t: float) -> None:
        if not self.pending:
            return
        best = max(self.dec, key=lambda d: (d.cap - d.used, -d.index))  # the most free blocks (ties: lowest index)
        for r in list(self.pending):
            need = self.blocks(r.kv_tokens + 1)
            if best.cap - best.used < need:
                continue
            d = best
            d.take(need)
            r.dblocks = need
            self.pending.remove(r)
            nbytes = r.kv_tokens * self.kv_token_bytes
            link = (r.psock, d.index)
            start = max(t, self.link_free.get(link, 0.0))
            end = start + kv_transfer_seconds(self.node, nbytes, r.psock, d.index)
            self.link_free[link] = end
            self.transfers.append(Transfer(r.rec.id, r.psock, d.index, nbytes, start, end))
            self.push(end, "transfer_done", (r, d))
            best = max(self.dec, key=lambda d: (d.cap - d.used, -d.index))

    # --- decode sockets --------------------------------------------------------------
    def grow(self, d: _Socket, r: _R, in_step: list[_R]) -> bool:
        need = self.blocks(r.kv_tokens + 1) - r.dblocks
        while need > d.cap - d.used:
            victims = [v for v in d.queue if v is not r and v not in in_step]
            if not victims:
                self.preempt(d, r)
                return False
            self.preempt(d, max(victims, key=lambda v: v.admitted))
        if need > 0:
            d.take(need)
            r.dblocks += need
        return True

    def preempt(self, d: _Socket, r: _R) -> None:
        d.used -= r.dblocks
        r.dblocks = r.kv_tokens = 0
        d.queue.remove(r)
        r.rec.preemptions += 1
        r.target = r.rec.prompt_tokens + r.generated
        self.requeue.append(r)

    def try_decode(self, d: _Socket, t: float) -> None:
        if d.busy or not d.queue:
            return
        batch: list[_R] = []
        self.requeue = []
        for r in list(d.queue[: self.max_batch]):
            if r in d.queue and self.grow(d, r, batch):
                batch.append(r)
        for r in self.requeue:
            self.enqueue(r, t, front=True)
        if not batch:
            return
        d.busy = True
        dur = self.lm.decode(self.lm.base_rows, [r.kv_tokens + 1 for r in batch])[0]
        self.steps.append(Step("decode", d.index, t, t + dur, tuple(r.rec.id for r in batch)))
        self.push(t + dur, "decode_done", (d, batch))

    # --- the loop ----------------------------------------------------------------------
    def run(self, reqs: list[_R], progress: Callable[[int, int], None] | None) -> None:
        for r in reqs:
            self.push(r.rec.arrival, "arrival", r)
        while self.events:
            t, _, kind, payload = heapq.heappop(self.events)
            if kind == "arrival":
                self.enqueue(payload, t)
            elif kind == "prefill_done":
                s, batch = payload
                s.busy = False
                for r in batch:
                    r.kv_tokens = r.target
                    if self.emit(r, t):
                        s.used -= r.pblocks
                        r.pblocks = 0
                    else:
                        self.pending.append(r)
                self.try_transfers(t)
                self.try_prefill(s, t)
            elif kind == "transfer_done":
                r, d = payload
                src = self.pre[r.psock]
                src.used -= r.pblocks
                r.pblocks = 0
                self.admitted += 1
                r.admitted = self.admitted
                d.queue.append(r)
                self.try_decode(d, t)
                self.try_prefill(src, t)
            else:  # decode_done
                d, batch = payload
                d.busy = False
                for r in batch:
                    r.kv_tokens += 1
                    if self.emit(r, t):
                        d.used -= r.dblocks
                        r.dblocks = 0
                        d.queue.remove(r)
                self.try_transfers(t)
                self.try_decode(d, t)
            if progress is not None:
                progress(self.finished, len(reqs))


def _capacity_blocks(lm: LatencyModel, block_tokens: int, kv_capacity: int | None) -> tuple[int, int]:
    cap_bytes = kv_capacity_bytes(lm) if kv_capacity is None else kv_capacity
    return (int(cap_bytes // (block_tokens * lm.model.kv_bytes_per_token())) if cap_bytes > 0 else 0), cap_bytes


def _rank(res: NodeResult) -> tuple[float, float, float]:
    m = res.metrics
    return (m["slo_attainment"], m["throughput_tok_s"], -m["ttft_s"]["p95"])


def simulate_node(
    requests: Sequence[Request],
    latency: LatencyModel,
    policy: str | Policy,
    *,
    sockets: int,
    node: NodeSpec | None = None,
    block_tokens: int = 16,
    kv_capacity: int | None = None,
    prefill_token_budget: int = 8192,
    max_batch: int = 256,
    slo_ttft: float | None = None,
    slo_tbt: float | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> NodeResult:
    """Serve `requests` on `sockets` sockets of `node` (module docstring).

    Args:
        node: the node (default: the `[sockets]` table of `latency.fabric`).
        kv_capacity: KV-cache bytes per socket (default `sim.kv_capacity_bytes(latency)`).
        Others as `sim.simulate`.

    Raises:
        SimError: fewer sockets in the node than asked, a split that does not add up to
            `sockets`, or a request larger than one socket's KV cache.
        PolicyError: a bad policy name.
    """
    pol = parse_policy(policy) if isinstance(policy, str) else policy
    if node is None:
        from rdu_compiler.fabric import load_fabric

        node = load_fabric(latency.fabric).node
    if sockets < 1 or sockets > node.sockets:
        raise SimError(f"--sockets {sockets}: the node of {latency.fabric!r} has {node.sockets} socket(s); use 1..{node.sockets}, "
                       "or a node fabric such as sn40l-node8")
    kw: dict[str, Any] = {"block_tokens": block_tokens, "kv_capacity": kv_capacity, "max_batch": max_batch,
                          "prefill_token_budget": prefill_token_budget, "slo_ttft": slo_ttft, "slo_tbt": slo_tbt}
    if pol.kind != "disaggregated":
        return _replicas(requests, latency, pol, sockets, progress, kw)
    if sockets < 2:
        raise PolicyError(f"policy {pol.name} needs at least 2 sockets (one prefill, one decode); got --sockets {sockets}")
    if not pol.prefill_sockets:
        results = [simulate_node(requests, latency, Policy("disaggregated", prefill_sockets=p, decode_sockets=sockets - p),
                                 sockets=sockets, node=node, progress=progress, **kw) for p in range(1, sockets)]
        best = max(results, key=_rank)
        best.sweep = [{"prefill_sockets": r.prefill_sockets, "decode_sockets": r.decode_sockets,
                       "slo_attainment": r.metrics["slo_attainment"], "throughput_tok_s": r.metrics["throughput_tok_s"],
                       "ttft_p95_s": r.metrics["ttft_s"]["p95"], "tbt_p95_s": r.metrics["tbt_s"]["p95"]} for r in results]
        return best
    p, d = pol.prefill_sockets, pol.decode_sockets
    if p + d != sockets:
        raise PolicyError(f"policy {pol.name}: {p} prefill + {d} decode sockets = {p + d}, but --sockets is {sockets}; "
                          f"make P + D = {sockets}, or use plain disaggregated to sweep the splits")
    if block_tokens < 1 or max_batch < 1 or prefill_token_budget < 1:
        raise SimError("block_tokens, max_batch and prefill_token_budget must be >= 1")
    blocks, cap_bytes = _capacity_blocks(latency, block_tokens, kv_capacity)
    for i, q in enumerate(requests):
        if math.ceil((q.num_prefill_tokens + q.num_decode_tokens) / block_tokens) > blocks:
            raise SimError(f"request {i} ({q.num_prefill_tokens} + {q.num_decode_tokens} tokens) does not fit one socket's KV "
                           f"cache of {blocks} blocks x {block_tokens} tokens ({cap_bytes} bytes); use a shorter trace")
    sim = _Disagg(latency, node, p, d, block_tokens, blocks, prefill_token_budget, max_batch)
    records = [RequestRecord(i, q.arrived_at, q.num_prefill_tokens, q.num_decode_tokens) for i, q in enumerate(requests)]
    sim.run([_R(rec, rec.prompt_tokens) for rec in records], progress)
    stuck = [r.id for r in records if r.finish is None]
    if stuck:
        raise SimError(f"internal error: {len(stuck)} request(s) never finished (first: {stuck[:5]}); please report it")
    peak = max(s.peak for s in [*sim.pre, *sim.dec])
    return NodeResult(records, compute_metrics(records, slo_ttft, slo_tbt), pol.name, sockets, p, d, block_tokens, blocks,
                      peak, sim.transfers, sim.steps)


def _replicas(requests: Sequence[Request], lm: LatencyModel, pol: Policy, sockets: int,
              progress: Callable[[int, int], None] | None, kw: dict[str, Any]) -> NodeResult:
    records: list[RequestRecord] = []
    caps, peaks = [], []
    for k in range(sockets):
        ids = list(range(k, len(requests), sockets))
        if not ids:
            continue
        res = simulate([requests[i] for i in ids], lm, pol, progress=progress, **kw)
        for i, rec in zip(ids, res.records, strict=True):
            rec.id = i
            records.append(rec)
        caps.append(res.kv_capacity_blocks)
        peaks.append(res.kv_peak_blocks)
    records.sort(key=lambda r: r.id)
    name = pol.name if sockets == 1 else f"{pol.name} x{sockets}"
    return NodeResult(records, compute_metrics(records, kw["slo_ttft"], kw["slo_tbt"]), name, sockets, 0, 0,
                      kw["block_tokens"], max(caps, default=0), max(peaks, default=0))
