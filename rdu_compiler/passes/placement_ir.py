"""The IR side of placement: a section's `Problem` from its kernels, and placements
written to / read from the kernels' `pcu_sites`/`pmu_sites` and the AGCUs of
`rdu.load` / `rdu.store` / gathering kernels (`agcu_sites`).

Groups, kernel by kernel in program order: the kernel's PCUs, then one group per
operand buffer with PMUs. Flows, with bytes per section execution as `cost.analysis`
counts them (`kernel_traffic`, the same tile geometry the emulator runs):

- every operand buffer -> its kernel's PCUs: the operand's traffic (re-reads included);
- the kernel's PCUs -> each result's output buffer: the result's bytes;
- a load -> the buffers of every operand it feeds (one multicast flow per load, AGCU
  source), bytes = each operand's traffic (a re-read tile is re-read from HBM/DDR, as
  the cost model counts it);
- a result -> the buffers of every operand it feeds in the section (one multicast flow
  per result, from its output buffer, or its PCUs when it has none), bytes = the
  operand's size: each element crosses the network once, and re-reads are served by
  the consumer's own buffer (as the cost model charges them to the consumer's PMUs);
- a result -> the AGCU of its store: the stored bytes;
- an AGCU -> a gathering kernel's PCUs: the gathered bytes.

Views and pads pass their source through; a concat splits bytes over its sources by size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from xdsl.dialects.builtin import BytesAttr, DenseArrayBase, i64
from xdsl.ir import Operation, SSAValue

from rdu_compiler.dialects import rdu
from rdu_compiler.ir import int_values
from rdu_compiler.kernel.traffic import gathered_bytes, itemsize, kernel_traffic
from rdu_compiler.plan.placement.grid import Grid, RouteError, Site
from rdu_compiler.plan.placement.network import NetworkLoad, assign_agcus, link_loads
from rdu_compiler.plan.placement.problem import AGCU, PCU, PMU, Flow, Group, Problem
from rdu_compiler.plan.placement.strategies import Placement

Key = tuple[str, object, int]


@dataclass
class SectionProblem:
    """A section's `Problem` and where its parts live in the IR."""

    problem: Problem
    kernels: list[rdu.KernelOp]
    pcu_group: list[int]
    buffer_groups: list[list[int]]  # per kernel, per buffer: group index or -1 (no PMUs)
    transfers: list[tuple[Operation, list[int]]] = field(default_factory=list)  # op -> its AGCU flows


def _nbytes(v: SSAValue) -> int:
    return math.prod(rdu.shape_of(v.type)) * itemsize(v.type)


def _origins(v: SSAValue, kernel_index: dict[Operation, int]) -> list[tuple[Key, float]]:
    """Where a stream value's bytes come from: loads and kernel results, with fractions."""
    owner = v.owner
    if isinstance(owner, rdu.LoadOp):
        return [(("load", owner, 0), 1.0)]
    if isinstance(owner, rdu.KernelOp) and owner in kernel_index:
        return [(("result", kernel_index[owner], v.index), 1.0)]  # type: ignore[attr-defined]
    if isinstance(owner, rdu.ViewOp | rdu.PadOp):
        return _origins(owner.operands[0], kernel_index)
    if isinstance(owner, rdu.ConcatOp):
        total = max(1, math.prod(rdu.shape_of(v.type)))
        out = []
        for s in owner.sources:
            share = math.prod(rdu.shape_of(s.type)) / total
            out += [(k, f * share) for k, f in _origins(s, kernel_index)]
        return out
    return []


def section_problem(section: rdu.SectionOp) -> SectionProblem:
    """The placement problem of one allocated section (kernels need `pcus` and `buffers`).

    Raises:
        ValueError: a kernel has no units (run rdu-allocate first).
    """
    kernels = section.kernels()
    kernel_index: dict[Operation, int] = {k: i for i, k in enumerate(kernels)}
    groups: list[Group] = []
    pcu_group: list[int] = []
    buffer_groups: list[list[int]] = []
    for i, k in enumerate(kernels):
        if k.pcus is None or k.buffers is None:
            raise ValueError(f"kernel '{k.label}' has no units; run rdu-allocate first")
        pcu_group.append(len(groups))
        groups.append(Group(i, PCU, k.pcus.value.data, f"{k.label}.pcu"))
        mine = []
        for j, b in enumerate(k.buffers.data):
            if b.pmus.data > 0:
                mine.append(len(groups))
                groups.append(Group(i, PMU, b.pmus.data, f"{k.label}.buf{j}"))
            else:
                mine.append(-1)
        buffer_groups.append(mine)

    def out_group(ki: int, r: int) -> int:
        g = buffer_groups[ki][len(kernels[ki].inputs) + r]
        return g if g >= 0 else pcu_group[ki]

    flows: list[Flow] = []
    fed: dict[Key, dict[int, float]] = {}
    transfers: list[tuple[Operation, list[int]]] = []
    for i, k in enumerate(kernels):
        gathered = gathered_bytes(k)
        if gathered:
            transfers.append((k, [len(flows)]))
            flows.append(Flow(AGCU, ((pcu_group[i], float(gathered)),), f"gather -> {k.label}"))
        operands = [*k.inputs, *k.inits]
        for j, (v, nbytes) in enumerate(zip(operands, kernel_traffic(k), strict=True)):
            if nbytes <= 0:
                continue
            dest = buffer_groups[i][j] if buffer_groups[i][j] >= 0 else pcu_group[i]
            if dest != pcu_group[i]:
                flows.append(Flow(dest, ((pcu_group[i], float(nbytes)),), f"{k.label}.buf{j} -> PCUs"))
            for key, frac in _origins(v, kernel_index):
                moved = nbytes if key[0] == "load" else _nbytes(v)  # on chip: sent once
                sinks = fed.setdefault(key, {})
                sinks[dest] = sinks.get(dest, 0.0) + moved * frac
        for r, res in enumerate(k.results):
            if out_group(i, r) != pcu_group[i]:
                flows.append(Flow(pcu_group[i], ((out_group(i, r), float(_nbytes(res))),), f"{k.label} -> result {r}"))
    for op in section.body.block.ops:
        if isinstance(op, rdu.LoadOp) and ("load", op, 0) in fed:
            transfers.append((op, [len(flows)]))
            flows.append(Flow(AGCU, tuple(fed[("load", op, 0)].items()), f"load {op.result.name_hint or ''}"))
    for key, sinks in fed.items():
        if key[0] == "result":
            ki, r = key[1], key[2]
            flows.append(Flow(out_group(ki, r), tuple(sinks.items()), f"{kernels[ki].label} result {r} -> consumers"))  # type: ignore[index]
    for op in section.body.block.ops:
        if not isinstance(op, rdu.StoreOp):
            continue
        mine = []
        for key, frac in _origins(op.source, kernel_index):
            if key[0] == "result":
                mine.append(len(flows))
                src = out_group(key[1], key[2])  # type: ignore[arg-type]
                flows.append(Flow(src, ((AGCU, _nbytes(op.result) * frac),), f"store from {kernels[key[1]].label}"))  # type: ignore[index]
        if mine:
            transfers.append((op, mine))
    names = tuple(k.label for k in kernels)
    return SectionProblem(Problem(names, tuple(groups), tuple(flows)), kernels, pcu_group, buffer_groups, transfers)


def flat(sites: Sequence[Site]) -> DenseArrayBase:
    """`array<i64: r0, c0, r1, c1, ...>`: sites as flattened (row, col) pairs (built from
    the bytes, the attribute `DenseArrayBase.from_list` gives, without its per-element walk)."""
    data = np.asarray(sites, dtype="<i8").reshape(-1).tobytes()
    return DenseArrayBase(i64, BytesAttr(data))


def pairs(array: DenseArrayBase) -> list[Site]:
    values = int_values(array)
    return [(int(values[i]), int(values[i + 1])) for i in range(0, len(values) - 1, 2)]


def write_placement(sp: SectionProblem, placement: Placement, grid: Grid) -> None:
    """Record `placement` on the IR: kernel sites and the AGCUs of every transfer."""
    p = sp.problem
    for ki, k in enumerate(sp.kernels):
        k.pcu_sites = flat(_group_sites(p, sp.pcu_group[ki], placement.sites))
        pmus = [s for g in sp.buffer_groups[ki] if g >= 0 for s in _group_sites(p, g, placement.sites)]
        k.pmu_sites = flat(pmus)
    first, count = _net_ranges(p)
    for op, flows in sp.transfers:
        agcus = [grid.agcus[placement.agcus[n]] for f in flows for n in range(first[f], first[f] + count[f])]
        op.properties["agcu_sites"] = flat(agcus)


def _group_sites(p: Problem, g: int, sites: Sequence[Site]) -> list[Site]:
    return list(sites[p.offsets[g] : p.offsets[g] + p.groups[g].size])


def read_placement(sp: SectionProblem, grid: Grid) -> Placement | None:
    """The placement recorded on the IR, or None when a kernel is not placed. Transfers
    without recorded AGCUs get `assign_agcus`'s choice.

    Raises:
        RouteError: a recorded AGCU is not an AGCU of `grid`.
    """
    p = sp.problem
    sites: list[Site] = [(0, 0)] * p.num_units
    for ki, k in enumerate(sp.kernels):
        if k.pcu_sites is None or k.pmu_sites is None:
            return None
        groups = [sp.pcu_group[ki], *(g for g in sp.buffer_groups[ki] if g >= 0)]
        mine = pairs(k.pcu_sites) + pairs(k.pmu_sites)
        units = [u for g in groups for u in range(p.offsets[g], p.offsets[g] + p.groups[g].size)]
        if len(mine) != len(units):
            return None
        for u, s in zip(units, mine, strict=True):
            sites[u] = s
    first, count = _net_ranges(p)
    recorded: dict[int, int] = {}
    missing = False
    index = {a: i for i, a in enumerate(grid.agcus)}
    for op, flows in sp.transfers:
        attr = op.properties.get("agcu_sites")
        nets = [n for f in flows for n in range(first[f], first[f] + count[f])]
        if not isinstance(attr, DenseArrayBase) or len(pairs(attr)) != len(nets):
            missing = True
            continue
        for n, a in zip(nets, pairs(attr), strict=True):
            if a not in index:
                raise RouteError(f"{op.name} routed through {a}, which is not an AGCU of the grid")
            recorded[n] = index[a]
    total = first[-1] + count[-1] if count else 0
    covered = {f for _, flows in sp.transfers for f in flows}
    if missing or any(f not in covered for f in _agcu_flows(p)):
        agcus = list(assign_agcus(grid, p, sites))  # some off-chip net has no recorded AGCU
    else:
        agcus = [-1] * total
    for n, a in recorded.items():
        agcus[n] = a
    return Placement(tuple(sites), tuple(agcus))


def _net_ranges(p: Problem) -> tuple[list[int], list[int]]:
    """Per flow: its first net's index and its number of nets (`Problem.nets`' split,
    without building the nets)."""
    first, count, n = [], [], 0
    for f in p.flows:
        k = max(1 if g == AGCU else p.groups[g].size for g in (f.source, *(s for s, _ in f.sinks)))
        first.append(n)
        count.append(k)
        n += k
    return first, count


def _agcu_flows(p: Problem) -> list[int]:
    return [i for i, f in enumerate(p.flows) if f.source == AGCU or any(s == AGCU for s, _ in f.sinks)]


def section_routing(section: rdu.SectionOp) -> str:
    """The routing `rdu-place` recorded on the section (dimension-order when none)."""
    return section.routing.data if section.routing is not None else "dimension-order"


def section_network(section: rdu.SectionOp, grid: Grid) -> NetworkLoad | None:
    """Link loads of a placed section under its recorded routing (None when not placed)."""
    if any(k.pcus is None or k.buffers is None for k in section.kernels()):
        return None
    sp = section_problem(section)
    placement = read_placement(sp, grid)
    if placement is None:
        return None
    return cached_link_loads(grid, sp.problem, placement, section_routing(section))


_LINK_LOADS: dict[tuple[object, ...], NetworkLoad] = {}
_LINK_LOADS_MAX = 256


def cached_link_loads(grid: Grid, problem: Problem, placement: Placement, routing: str) -> NetworkLoad:
    """`link_loads`, memoized on what it depends on (the grid, `problem.shape_key`, the
    placement and the routing), so identical sections (and the report after `--plot`) route
    once. The result is shared: callers must not modify its arrays."""
    key = (grid, problem.shape_key, placement, routing)
    net = _LINK_LOADS.get(key)
    if net is None:
        net = link_loads(grid, problem, placement.sites, placement.agcus, routing)
        net.link_bytes.flags.writeable = False
        if len(_LINK_LOADS) >= _LINK_LOADS_MAX:
            _LINK_LOADS.pop(next(iter(_LINK_LOADS)))
        _LINK_LOADS[key] = net
    return net
