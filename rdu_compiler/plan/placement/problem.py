"""A section's placement problem as plain data: groups of units, and the flows between them.

A *group* is the units one kernel owns of one kind: its PCUs, or the PMUs of one operand
buffer. A *flow* moves bytes per section execution from one group to one or more groups
(multicast), or from/to an AGCU (`AGCU`, the off-chip side of a load, store or gather).

Units are numbered group after group (`Problem.offsets`). A flow between groups of
different sizes is split evenly over `n = max(sizes)` unit-level *nets*: net `k` goes
from unit `k % size` of the source group to unit `k % size` of every sink group and
carries `bytes / n` to each sink. This is the data-parallel split of a stage over its
units (each PCU computes its share of the tile, each PMU holds its share of the buffer):
an approximation of where each byte goes, exact in total bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

AGCU = -1
"""The off-chip endpoint of a flow (which AGCU is a placement decision, per net)."""

PCU, PMU = "pcu", "pmu"


@dataclass(frozen=True)
class Group:
    """`size` units of `kind` ("pcu" or "pmu") owned by kernel number `kernel`."""

    kernel: int
    kind: str
    size: int
    label: str = ""


@dataclass(frozen=True)
class Flow:
    """Bytes from group `source` to each sink group, per section execution.

    `source` and sink groups are group indices or `AGCU`; `sinks` is `((group, bytes),
    ...)`; several sinks share the route segments they have in common (multicast).
    """

    source: int
    sinks: tuple[tuple[int, float], ...]
    label: str = ""


@dataclass(frozen=True)
class Net:
    """One unit-level piece of a flow: `source` and sink units (or `AGCU`), bytes per sink."""

    flow: int
    index: int
    source: int
    sinks: tuple[tuple[int, float], ...]

    @property
    def has_agcu(self) -> bool:
        return self.source == AGCU or any(s == AGCU for s, _ in self.sinks)


@dataclass(frozen=True)
class Problem:
    """Kernels (names, program order), their unit groups, and the flows of one section."""

    kernels: tuple[str, ...]
    groups: tuple[Group, ...]
    flows: tuple[Flow, ...] = field(default=())

    def __post_init__(self) -> None:
        for g in self.groups:
            if g.kind not in (PCU, PMU) or g.size < 1 or not 0 <= g.kernel < len(self.kernels):
                raise ValueError(f"bad group {g}: kind must be pcu/pmu, size >= 1, kernel in range")
        for f in self.flows:
            for end in (f.source, *(s for s, _ in f.sinks)):
                if end != AGCU and not 0 <= end < len(self.groups):
                    raise ValueError(f"flow {f.label!r} names group {end}, not in 0..{len(self.groups) - 1}")
            if sum(1 for end in (f.source, *(s for s, _ in f.sinks)) if end == AGCU) > 1:
                raise ValueError(f"flow {f.label!r} has more than one AGCU endpoint")

    @cached_property
    def offsets(self) -> tuple[int, ...]:
        """First unit of each group."""
        out, n = [], 0
        for g in self.groups:
            out.append(n)
            n += g.size
        return tuple(out)

    @cached_property
    def shape_key(self) -> tuple[object, ...]:
        """What placement and routing depend on: group kinds, sizes and kernels, and flow
        endpoints and bytes, without names. Two sections with equal keys are the same
        problem, so a deterministic strategy places them alike (`rdu-place` memoizes on it)."""
        groups = tuple((g.kernel, g.kind, g.size) for g in self.groups)
        flows = tuple((f.source, f.sinks) for f in self.flows)
        return (len(self.kernels), groups, flows)

    @property
    def num_units(self) -> int:
        return sum(g.size for g in self.groups)

    @cached_property
    def unit_group(self) -> tuple[int, ...]:
        return tuple(i for i, g in enumerate(self.groups) for _ in range(g.size))

    def unit_kind(self, unit: int) -> str:
        return self.groups[self.unit_group[unit]].kind

    def count(self, kind: str) -> int:
        return sum(g.size for g in self.groups if g.kind == kind)

    def _size(self, group: int) -> int:
        return 1 if group == AGCU else self.groups[group].size

    def _unit(self, group: int, k: int) -> int:
        return AGCU if group == AGCU else self.offsets[group] + k % self.groups[group].size

    @cached_property
    def nets(self) -> tuple[Net, ...]:
        """Every flow split into unit-level nets (module docstring), flow by flow."""
        out = []
        for fi, f in enumerate(self.flows):
            n = max(self._size(f.source), *(self._size(s) for s, _ in f.sinks))
            for k in range(n):
                sinks = tuple((self._unit(s, k), b / n) for s, b in f.sinks)
                out.append(Net(fi, k, self._unit(f.source, k), sinks))
        return tuple(out)

    @cached_property
    def _nets_by_flow(self) -> dict[int, list[int]]:
        out: dict[int, list[int]] = {}
        for i, n in enumerate(self.nets):
            out.setdefault(n.flow, []).append(i)
        return out

    def nets_of(self, flow: int) -> list[int]:
        """Indices (into `nets`) of the nets of one flow, in order."""
        return self._nets_by_flow.get(flow, [])
