"""Where to cut a kernel sequence into sections: a dynamic program over cut points.

Plain data in, cut points out (no IR), so it is tested on hand-made cases. Kernels stay
in program order; a section is a run [i, j] whose units fit the fabric. Its cost is the
static bandwidth model's first-order estimate:

    max(work / (P * rate), hbm_bytes / hbm_bandwidth) + launch

where work is the run's PCU cycles (spread over all P PCUs: the allocator splits PCUs by
work), and hbm_bytes are the loads of values produced before i (re-reads included) plus
the stores of values read after j. The plan minimises the sum over sections, so a cut
lands where little data crosses it, not merely where the fabric first fills. Ties go to
fewer sections, then to the latest cut (what first fit would do).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class KernelNeeds:
    """One kernel as the planner sees it.

    pcus, pmus: minimum units. cycles: compute cycles on one PCU. inputs: (producer index
    or -1 for a function argument, bytes read from it at this kernel's tiles). output_bytes:
    bytes of its results. last_use: index of the last kernel reading a result (len(kernels)
    if the function returns it; -1 if nothing reads it).
    """

    name: str
    pcus: int
    pmus: int
    cycles: float
    inputs: tuple[tuple[int, int], ...]
    output_bytes: int
    last_use: int


@dataclass(frozen=True)
class Machine:
    """The fabric numbers the planner needs (units, Hz, bytes/s, seconds)."""

    pcus: int
    pmus: int
    clock_hz: float
    hbm_bytes_per_s: float
    launch_s: float


@dataclass
class Plan:
    """Section starts (kernel indices) and, per section, why it ends where it does."""

    starts: list[int] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    cost_s: float = 0.0


def _fits(k: KernelNeeds, m: Machine) -> bool:
    return k.pcus <= m.pcus and k.pmus <= m.pmus


#: the reason of a section that ends at a forced cut
FORCED_REASON = "a collective follows: the sockets exchange data between sections"


def plan(kernels: Sequence[KernelNeeds], m: Machine, forced: frozenset[int] = frozenset()) -> Plan:
    """Cost-minimal cut points. `forced`: kernel indices where a section must start (a
    collective lies before them); the program is then optimal given those cuts, so
    identical stretches between them (a transformer's layers) get identical cuts.

    Raises:
        ValueError: a kernel needs more units than the machine has.
    """
    n = len(kernels)
    for k in kernels:
        if not _fits(k, m):
            raise ValueError(f"kernel '{k.name}' needs {k.pcus} PCUs / {k.pmus} PMUs; the fabric has {m.pcus} / {m.pmus}")
    consumers: list[list[tuple[int, int]]] = [[] for _ in range(n)]
    for c, k in enumerate(kernels):
        for p, nbytes in k.inputs:
            if p >= 0:
                consumers[p].append((c, nbytes))
    best = [0.0] + [float("inf")] * n  # best[j]: cost of kernels [0, j)
    count = [0] + [n + 1] * n  # sections in that best plan
    choice = [0] * (n + 1)
    crossing = [0] * (n + 1)
    for j in range(n):  # the section ends at kernel j (inclusive)
        pcus = pmus = 0
        cycles = 0.0
        loads = stores = 0
        for i in range(j, -1, -1):  # grow the section backwards: it starts at i
            if i + 1 in forced and i + 1 <= j:  # the section would cross a forced cut
                break
            k = kernels[i]
            pcus, pmus = pcus + k.pcus, pmus + k.pmus
            if pcus > m.pcus or pmus > m.pmus:
                break
            cycles += k.cycles
            loads += sum(nbytes for _, nbytes in k.inputs)
            loads -= sum(nbytes for c, nbytes in consumers[i] if c <= j)  # now on chip
            if k.last_use > j:
                stores += k.output_bytes
            hbm = loads + stores
            t = max(cycles / (m.pcus * m.clock_hz), hbm / m.hbm_bytes_per_s) + m.launch_s
            cost, sections = best[i] + t, count[i] + 1
            tie = abs(cost - best[j + 1]) <= 1e-12 * max(cost, 1e-30)
            # ties go to fewer sections (fewer launches), then to the later cut (first fit)
            if (cost < best[j + 1] and not tie) or (tie and sections < count[j + 1]):
                best[j + 1], count[j + 1], choice[j + 1], crossing[j + 1] = cost, sections, i, stores
    return _backtrack(kernels, m, choice, crossing, best[n], forced)


def _backtrack(kernels: Sequence[KernelNeeds], m: Machine, choice: list[int], crossing: list[int], cost: float,
               forced: frozenset[int] = frozenset()) -> Plan:
    n = len(kernels)
    ends, j = [], n
    while j > 0:
        ends.append(j)
        j = choice[j]
    ends.reverse()
    starts = [0, *ends[:-1]]
    reasons = []
    for start, end in zip(starts, ends, strict=True):
        if end == n:
            reasons.append("end of program")
            continue
        if end in forced:
            reasons.append(FORCED_REASON)
            continue
        units = (sum(k.pcus for k in kernels[start : end + 1]), sum(k.pmus for k in kernels[start : end + 1]))
        stored = crossing[end]
        if units[0] > m.pcus or units[1] > m.pmus:
            reasons.append(
                f"fabric full: adding '{kernels[end].name}' needs {units[0]} PCUs / {units[1]} PMUs "
                f"(fabric {m.pcus}/{m.pmus}); cut chosen by the cost model, {stored} B stored across it"
            )
        else:
            reasons.append(
                f"cost model: cutting before '{kernels[end].name}' (which would still fit) makes the "
                f"program cheaper; {stored} B stored across the cut"
            )
    return Plan(starts, reasons, cost)
