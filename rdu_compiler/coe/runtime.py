"""The runtime for many programs: a home tier for every expert, an LRU cache of experts in
HBM, switching costs, and a request-level timeline.

The memory tiers (RDU: DDR home, HBM cache; GPU: host-memory home, HBM cache):

    cache_bytes = hbm_bytes - router_bytes - kv_bytes - activation_bytes
    a CoE fits when sum(expert_bytes) <= home_bytes and max(expert_bytes) <= cache_bytes

A request runs the router, copies the chosen expert into HBM unless it is resident
(evicting the least recently used experts until it fits; weights are read-only, so an
eviction writes nothing back), then runs the expert. The steps depend on each other, so
they add: total = router_s + switch_s + exec_s. Switching on an RDU node: each of the
`copiers` sockets copies its TP shard (bytes / copiers) over its own DDR -> HBM path at
once, so switch_s = bytes / copiers / bytes_per_s_per_copier.

**Prefetch** (`simulate(..., prefetch=True)`, the default; as the SN40L runtime can): the
next queued request is routed before the current one executes (look-ahead routing: the
router is pinned in HBM, so routing needs no copy), and while the current expert A runs, the
next request's expert B is copied DDR -> HBM if it is not resident and fits beside A (B's
bytes + A's bytes <= the cache; the LRU then evicts only other experts, A being the most
recently used). Its space is taken, and its victims evicted, when the copy starts. The next
run starts when both A's run and B's copy are done, so only the part of the copy longer
than A's run is exposed (`switch_s`); the rest is `hidden_switch_s`. When B does not fit
beside A, B is copied after A's run, as without prefetch. The cache sees the same accesses
in the same order either way, so hits and evictions do not change; only time does.
Modelling choice [NF]: the copy's HBM writes (at most the DDR -> HBM bandwidth, ~7 % of
HBM's on sn40l) do not slow the running expert.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from rdu_compiler.errors import RduError

GB = 1e9


class CoEDoesNotFit(RduError):
    """The experts do not fit their home tier, or one expert does not fit the HBM cache."""


@dataclass(frozen=True)
class MemoryPlan:
    """How a node's memory is split (all bytes; the home is DDR on an RDU node, host memory on a GPU box)."""

    hbm_bytes: float
    router_bytes: float
    kv_bytes: float
    activation_bytes: float
    home_bytes: float
    experts_bytes: float
    largest_expert_bytes: float

    @property
    def cache_bytes(self) -> float:
        """HBM left for resident experts: hbm - router - KV cache - activations."""
        return self.hbm_bytes - self.router_bytes - self.kv_bytes - self.activation_bytes


def plan_memory(
    hbm_bytes: float,
    home_bytes: float,
    router_bytes: float,
    expert_bytes: Sequence[float],
    kv_bytes: float = 0.0,
    activation_bytes: float = 0.0,
    *,
    machine: str = "the node",
    home: str = "DDR",
) -> MemoryPlan:
    """Check that the CoE fits and return the split of memory.

    Args:
        hbm_bytes, home_bytes: capacities of the node's HBM and of the experts' home tier.
        router_bytes: the router's weights, pinned in HBM.
        expert_bytes: each expert's weights (what is copied home -> HBM on a switch).
        kv_bytes, activation_bytes: HBM reserved for the KV cache and for activations.

    Raises:
        CoEDoesNotFit: the experts exceed the home tier, or the largest expert exceeds the
            HBM left for the cache (each message names the sizes and what to do).
    """
    plan = MemoryPlan(hbm_bytes, router_bytes, kv_bytes, activation_bytes, home_bytes,
                      float(sum(expert_bytes)), float(max(expert_bytes, default=0.0)))
    n = len(expert_bytes)
    if plan.experts_bytes > home_bytes:
        per = plan.experts_bytes / max(n, 1)
        raise CoEDoesNotFit(
            f"{n} experts need {plan.experts_bytes / GB:.3f} GB of {home} but {machine} has "
            f"{home_bytes / GB:.3f} GB ({home} is the home of every expert); at {per / GB:.3f} GB per expert "
            f"at most {int(home_bytes // per) if per else 0} fit: use fewer experts, a node with more {home}, "
            "or smaller (quantised) experts")
    if plan.largest_expert_bytes > plan.cache_bytes:
        raise CoEDoesNotFit(
            f"the largest expert ({plan.largest_expert_bytes / GB:.3f} GB) does not fit the HBM left for experts on "
            f"{machine}: {plan.cache_bytes / GB:.3f} GB = HBM {hbm_bytes / GB:.3f} GB - router {router_bytes / GB:.3f} GB - "
            f"KV cache {kv_bytes / GB:.3f} GB - activations {activation_bytes / GB:.3f} GB; use more sockets, "
            "a smaller KV cache (shorter context or batch), or smaller experts")
    return plan


def switch_seconds(nbytes: float, bytes_per_s: float, copiers: int = 1) -> float:
    """Seconds to copy `nbytes` when `copiers` engines (sockets) each copy nbytes / copiers
    at `bytes_per_s` (bytes/s) in parallel: nbytes / copiers / bytes_per_s.

    Raises:
        ValueError: copiers < 1 or bytes_per_s <= 0.
    """
    if copiers < 1 or bytes_per_s <= 0:
        raise ValueError(f"need copiers >= 1 and bytes_per_s > 0, got {copiers} and {bytes_per_s}")
    return nbytes / copiers / bytes_per_s


@dataclass(frozen=True)
class Access:
    """One cache lookup: whether it hit, and the experts evicted to make room."""

    hit: bool
    evicted: tuple[int, ...]


class ExpertCache:
    """An LRU cache of experts (by index) in `capacity_bytes` of HBM.

    Raises (from `access`):
        CoEDoesNotFit: an expert larger than the whole cache.
    """

    def __init__(self, capacity_bytes: float):
        self.capacity_bytes = capacity_bytes
        self._resident: OrderedDict[int, float] = OrderedDict()  # least recently used first
        self.hits = 0
        self.misses = 0

    @property
    def used_bytes(self) -> float:
        return sum(self._resident.values())

    @property
    def resident(self) -> list[int]:
        """Resident experts, least recently used first."""
        return list(self._resident)

    @property
    def hit_rate(self) -> float:
        """hits / lookups (0.0 before any lookup)."""
        total = self.hits + self.misses
        return self.hits / total if total else 0.0

    def fits_beside(self, nbytes: float, keep: int) -> bool:
        """Whether `nbytes` can be loaded without evicting the resident expert `keep`."""
        return nbytes + self._resident.get(keep, 0.0) <= self.capacity_bytes

    def contains(self, expert: int) -> bool:
        return expert in self._resident

    def access(self, expert: int, nbytes: float) -> Access:
        """Look `expert` (of `nbytes` bytes) up; on a miss evict LRU experts until it fits, then load it."""
        if expert in self._resident:
            self._resident.move_to_end(expert)
            self.hits += 1
            return Access(True, ())
        if nbytes > self.capacity_bytes:
            raise CoEDoesNotFit(f"expert {expert} ({nbytes / GB:.3f} GB) is larger than the HBM cache of experts "
                                f"({self.capacity_bytes / GB:.3f} GB); use more sockets or smaller experts")
        evicted: list[int] = []
        while self.used_bytes + nbytes > self.capacity_bytes:
            victim, _ = self._resident.popitem(last=False)
            evicted.append(victim)
        self._resident[expert] = nbytes
        self.misses += 1
        return Access(False, tuple(evicted))


@dataclass(frozen=True)
class Request:
    """One request: which expert, prompt tokens, output tokens, batch (sequences sharing the expert)."""

    expert: int
    prompt: int = 1
    output: int = 1
    batch: int = 1


class Timing(Protocol):
    """Execution times of a CoE's programs for a request (seconds)."""

    def router_s(self, request: Request) -> float: ...

    def exec_s(self, request: Request) -> float: ...


@dataclass(frozen=True)
class RequestTime:
    """One request on the timeline (seconds; `start_s`, when its router starts, and
    `exec_start_s` from the first request's start). `switch_s` is the copy time the
    request waited for; `hidden_switch_s` the part of a prefetched copy overlapped with the
    previous run; `prefetched`: its copy started during the previous request's run."""

    index: int
    expert: int
    start_s: float
    router_s: float
    switch_s: float
    exec_s: float
    hit: bool
    evicted: tuple[int, ...]
    exec_start_s: float = 0.0
    hidden_switch_s: float = 0.0
    prefetched: bool = False

    @property
    def total_s(self) -> float:
        return self.router_s + self.switch_s + self.exec_s


@dataclass(frozen=True)
class Copy:
    """One DDR -> HBM copy: expert, start and end (s), the experts evicted at its start."""

    expert: int
    start_s: float
    end_s: float
    evicted: tuple[int, ...]


@dataclass
class Timeline:
    """A simulation's result: per request times, the cache hit rate and the totals (seconds);
    `copies`: every copy in time order (for checking residency)."""

    machine: str
    requests: list[RequestTime] = field(default_factory=list)
    hit_rate: float = 0.0
    plan: MemoryPlan | None = None
    copies: list[Copy] = field(default_factory=list)
    prefetch: bool = False

    def total(self, part: str = "total_s") -> float:
        """Sum over requests of `router_s`, `switch_s`, `exec_s` or `total_s`."""
        return sum(getattr(r, part) for r in self.requests)

    def to_dict(self) -> dict[str, Any]:
        return {
            "machine": self.machine,
            "hit_rate": self.hit_rate,
            "prefetch": self.prefetch,
            "totals": {p: self.total(p) for p in ("router_s", "switch_s", "hidden_switch_s", "exec_s", "total_s")},
            "cache_bytes": self.plan.cache_bytes if self.plan else None,
            "requests": [asdict(r) | {"total_s": r.total_s} for r in self.requests],
        }


def simulate(
    requests: Sequence[Request],
    expert_bytes: Sequence[float],
    plan: MemoryPlan,
    copy_s: Callable[[float], float],
    timing: Timing,
    machine: str,
    *,
    prefetch: bool = True,
) -> Timeline:
    """Run `requests` one after the other through an LRU cache of `plan.cache_bytes`.

    Args:
        expert_bytes: weights of each expert (bytes), indexed by `Request.expert`.
        copy_s: seconds to bring an expert of that many bytes into HBM.
        timing: router and execution times per request.
        prefetch: copy the next request's expert during the current run when it fits beside
            it (module docstring); False: every step in sequence.

    Raises:
        CoEDoesNotFit: a request names an expert that is not there.
    """
    for i, req in enumerate(requests):
        if not 0 <= req.expert < len(expert_bytes):
            raise CoEDoesNotFit(f"request {i} asks for expert {req.expert} but there are {len(expert_bytes)} "
                                f"(0..{len(expert_bytes) - 1}); fix the request mix")
    cache = ExpertCache(plan.cache_bytes)
    timeline = Timeline(machine, plan=plan, prefetch=prefetch)
    n = len(requests)
    routed = [0.0] * n  # when each request's router started
    router = [timing.router_s(r) for r in requests]
    clock = router[0] if n else 0.0
    ahead: tuple[Access, float] | None = None  # the access and copy end of a prefetched expert
    for i, req in enumerate(requests):
        nbytes = expert_bytes[req.expert]
        hidden, prefetched = 0.0, ahead is not None
        if ahead is not None:
            access, ready = ahead
            switch = max(0.0, ready - clock)
            hidden = copy_s(nbytes) - switch
            ahead = None
        else:
            access = cache.access(req.expert, nbytes)
            switch = 0.0
            if not access.hit:
                switch = copy_s(nbytes)
                timeline.copies.append(Copy(req.expert, clock, clock + switch, access.evicted))
        clock += switch
        if prefetch and i + 1 < n:  # look-ahead routing, then the next copy beside this run
            routed[i + 1] = clock
            clock += router[i + 1]
            nxt = requests[i + 1]
            nb = expert_bytes[nxt.expert]
            if not cache.contains(nxt.expert) and cache.fits_beside(nb, req.expert):
                acc = cache.access(nxt.expert, nb)
                end = clock + copy_s(nb)
                timeline.copies.append(Copy(nxt.expert, clock, end, acc.evicted))
                ahead = (acc, end)
        run = timing.exec_s(req)
        timeline.requests.append(RequestTime(i, req.expert, routed[i], router[i], switch, run, access.hit, access.evicted,
                                             clock, hidden, prefetched))
        clock += run
        if not prefetch and i + 1 < n:
            routed[i + 1] = clock
            clock += router[i + 1]
    timeline.hit_rate = cache.hit_rate
    return timeline
