"""Routing a placed section: AGCUs for off-chip nets, routes, link loads, traffic x hops.

Every net goes from its source unit's site to each sink's site on a minimal route that
bends once (`Grid.route`). A link carries, per net, the largest byte count of the sinks
whose routes use it: a multicast tree sends shared segments once. Link loads are bytes
per section execution; the cost model divides the largest by the link bandwidth.

Two routings (`ROUTINGS`), both deterministic functions of the placement:

- `dimension-order`: every net XY (columns first), as a mesh router does by itself.
- `balanced` (what `rdu-place` records by default): static compiler-chosen flows, which
  the RDN supports besides dimension-order routing (sn40l.md, SN40L §II). Each on-chip
  net takes XY or YX: nets are taken largest first and each picks the orientation whose
  most loaded link (with the net added) is lighter, ties to the lighter path, then to
  XY; then `BALANCE_PASSES` rip-up-and-reroute passes re-pick each net against all the
  others. A multicast net turns all its branches the same way. Nets to or from an AGCU
  keep their fixed route. Network congestion is one of the two main performance
  pitfalls SN40L §VII names; this spreads a dense stream over twice the links.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rdu_compiler.placement.grid import Grid, Site, hops
from rdu_compiler.placement.problem import AGCU, Net, Problem

#: An AGCU takes another net while its bytes stay within this factor of an even share.
AGCU_SLACK = 1.05

#: The routings `link_loads` knows (module docstring).
ROUTINGS = ("balanced", "dimension-order")

#: Rip-up-and-reroute passes of the balanced routing after its greedy start.
BALANCE_PASSES = 3


@dataclass(frozen=True)
class NetworkLoad:
    """Bytes on every link (`link_bytes[link]`, link ids of `Grid`), and summaries.

    traffic_hops: sum of link bytes (= sum of bytes x hops, multicast segments once);
    max_link_bytes: the most loaded link's bytes; max_link: its id (-1 when idle).
    """

    link_bytes: np.ndarray
    traffic_hops: float
    max_link_bytes: float
    max_link: int
    rows_first: tuple[bool, ...] = ()  # per net: routed YX (rows first)


def _agcu_end(net: Net) -> tuple[int, float, bool]:
    """(the unit at the other end, bytes through the AGCU, whether the AGCU sends)."""
    if net.source == AGCU:
        units = [u for u, _ in net.sinks if u != AGCU]
        return (units[0] if units else AGCU), max(b for _, b in net.sinks), True
    b = next(b for u, b in net.sinks if u == AGCU)
    return net.source, b, False


def assign_agcus(grid: Grid, problem: Problem, sites: Sequence[Site]) -> list[int]:
    """The AGCU (index into `grid.agcus`) of every net, -1 for nets on chip.

    Balanced nearest: nets are taken by bytes, largest first (ties: net order); each
    goes to the nearest AGCU (ties: lower index) whose bytes in that direction (reads
    into the fabric, or writes out) stay within AGCU_SLACK x an even share, or to the
    least loaded AGCU when none does. Each AGCU has one link to the grid per direction,
    so balance is what keeps its link from binding the section.
    """
    out = [-1] * len(problem.nets)
    todo = []
    totals = {True: 0.0, False: 0.0}
    for i, net in enumerate(problem.nets):
        if net.has_agcu:
            unit, b, reads = _agcu_end(net)
            todo.append((-b, i, unit, b, reads))
            totals[reads] += b
    todo.sort()
    n = len(grid.agcus)
    load = {True: [0.0] * n, False: [0.0] * n}
    for _, i, unit, b, reads in todo:
        share = totals[reads] / n * AGCU_SLACK
        used = load[reads]
        site = sites[unit] if unit != AGCU else grid.agcus[0]
        fits = [a for a in range(n) if used[a] + b <= share]
        if fits:
            best = min(fits, key=lambda a: (hops(site, grid.agcus[a]), a))
        else:
            best = min(range(n), key=lambda a: (used[a], hops(site, grid.agcus[a]), a))
        used[best] += b
        out[i] = best
    return out


def nearest_agcus(grid: Grid, problem: Problem, sites: Sequence[Site]) -> list[int]:
    """The nearest AGCU of every off-chip net (-1 for nets on chip), ignoring balance."""
    out = []
    for net in problem.nets:
        if not net.has_agcu:
            out.append(-1)
            continue
        unit, _, _ = _agcu_end(net)
        site = sites[unit] if unit != AGCU else grid.agcus[0]
        out.append(min(range(len(grid.agcus)), key=lambda a: (hops(site, grid.agcus[a]), a)))
    return out


def link_loads(
    grid: Grid, problem: Problem, sites: Sequence[Site], agcus: Sequence[int], routing: str = "dimension-order"
) -> NetworkLoad:
    """Route every net of `problem` with units at `sites` and AGCUs `agcus` (per net)
    under `routing` (one of ROUTINGS; module docstring) and sum the bytes per link.

    Raises:
        RouteError: a site or AGCU is off the grid.
        ValueError: a net reaches an AGCU but has none assigned, or an unknown routing.
    """
    if routing not in ROUTINGS:
        raise ValueError(f"unknown routing {routing!r}; choose one of {', '.join(ROUTINGS)}")
    options = [_net_trees(grid, net, sites, agcus[i], i, routing == "balanced") for i, net in enumerate(problem.nets)]
    choice = _balance(grid, options) if routing == "balanced" else [0] * len(options)
    ids: list[int] = []
    weights: list[float] = []
    for opts, k in zip(options, choice, strict=True):
        links, loads = opts[k]
        ids += links
        weights += loads
    loads = np.bincount(np.asarray(ids, dtype=np.int64), weights=np.asarray(weights, dtype=np.float64), minlength=grid.num_links)
    top = int(loads.argmax()) if loads.size and loads.max() > 0 else -1
    return NetworkLoad(loads, float(loads.sum()), float(loads[top]) if top >= 0 else 0.0, top, tuple(k == 1 for k in choice))


Tree = tuple[list[int], list[float]]


def _net_trees(grid: Grid, net: Net, sites: Sequence[Site], agcu: int, i: int, both: bool) -> list[Tree]:
    """The net's multicast tree XY, and YX too when `both` and no end is an AGCU:
    (link ids, bytes per link), each link once with the largest bytes of its sinks."""
    src = _where(grid, net.source, sites, agcu, i)
    ends = [(_where(grid, unit, sites, agcu, i), b) for unit, b in net.sinks]
    out = []
    for rows_first in (False, True) if both and not net.has_agcu else (False,):
        tree: dict[int, float] = {}
        for dst, b in ends:
            for link in grid.route(src, dst, rows_first):
                if tree.get(link, 0.0) < b:
                    tree[link] = b
        out.append((list(tree), list(tree.values())))
    return out


def _balance(grid: Grid, options: list[list[Tree]]) -> list[int]:
    """The balanced routing's choice of tree per net (module docstring)."""
    load = np.zeros(grid.num_links)
    arrays = [[(np.asarray(ls, dtype=np.int64), np.asarray(bs)) for ls, bs in opts] for opts in options]
    choice = [0] * len(options)

    def add(i: int, sign: float) -> None:
        ls, bs = arrays[i][choice[i]]
        load[ls] += sign * bs

    def pick(i: int) -> int:
        best, best_key = choice[i], None
        for k, (ls, bs) in enumerate(arrays[i]):
            on = load[ls]
            key = (float((on + bs).max()) if ls.size else 0.0, float(on.sum()), k)
            if best_key is None or key < best_key:
                best, best_key = k, key
        return best

    order = sorted(range(len(options)), key=lambda i: (-max((max(bs) for _, bs in options[i] if bs), default=0.0), i))
    for i in order:
        choice[i] = pick(i) if len(arrays[i]) > 1 else 0
        add(i, 1.0)
    for _ in range(BALANCE_PASSES):
        changed = False
        for i in order:
            if len(arrays[i]) < 2:
                continue
            add(i, -1.0)
            k = pick(i)
            changed |= k != choice[i]
            choice[i] = k
            add(i, 1.0)
        if not changed:
            break
    return choice


def _where(grid: Grid, unit: int, sites: Sequence[Site], agcu: int, net: int) -> Site:
    if unit != AGCU:
        return sites[unit]
    if agcu < 0:
        raise ValueError(f"net {net} reaches an AGCU but has none assigned")
    return grid.agcus[agcu]


def traffic_hops(problem: Problem, sites: Sequence[Site], grid: Grid, agcus: Sequence[int]) -> float:
    """Sum over nets and sinks of bytes x hops (multicast counted per sink: an upper bound
    of `link_loads(...).traffic_hops`)."""
    total = 0.0
    for i, net in enumerate(problem.nets):
        src = _where(grid, net.source, sites, agcus[i], i)
        for unit, b in net.sinks:
            total += b * hops(src, _where(grid, unit, sites, agcus[i], i))
    return total
