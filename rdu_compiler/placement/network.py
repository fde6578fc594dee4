"""Routing a placed section: AGCUs for off-chip nets, link loads, traffic x hops.

Every net is routed dimension-order (`Grid.route`) from its source unit's site to each
sink's site. A link carries, per net, the largest byte count of the sinks whose routes
use it: a multicast tree sends shared segments once. Link loads are bytes per section
execution; the cost model divides the largest by the link bandwidth.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rdu_compiler.placement.grid import Grid, Site, hops
from rdu_compiler.placement.problem import AGCU, Net, Problem

#: An AGCU takes another net while its bytes stay within this factor of an even share.
AGCU_SLACK = 1.05


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


def link_loads(grid: Grid, problem: Problem, sites: Sequence[Site], agcus: Sequence[int]) -> NetworkLoad:
    """Route every net of `problem` with units at `sites` and AGCUs `agcus` (per net).

    Raises:
        RouteError: a site or AGCU is off the grid.
        ValueError: a net reaches an AGCU but has none assigned.
    """
    ids: list[int] = []
    weights: list[float] = []
    for i, net in enumerate(problem.nets):
        src = _where(grid, net.source, sites, agcus[i], i)
        if len(net.sinks) == 1:
            unit, b = net.sinks[0]
            route = grid.route(src, _where(grid, unit, sites, agcus[i], i))
            ids += route
            weights += [b] * len(route)
            continue
        tree: dict[int, float] = {}
        for unit, b in net.sinks:
            for link in grid.route(src, _where(grid, unit, sites, agcus[i], i)):
                if tree.get(link, 0.0) < b:
                    tree[link] = b
        ids += tree.keys()
        weights += tree.values()
    loads = np.bincount(np.asarray(ids, dtype=np.int64), weights=np.asarray(weights, dtype=np.float64), minlength=grid.num_links)
    top = int(loads.argmax()) if loads.size and loads.max() > 0 else -1
    return NetworkLoad(loads, float(loads.sum()), float(loads[top]) if top >= 0 else 0.0, top)


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
