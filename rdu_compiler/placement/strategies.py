"""Placement strategies: where each unit of a section sits on the grid.

A strategy is an object with a `name` and `place(problem, grid) -> list[Site]` (one
site per unit, PCU units on PCU sites, PMU units on PMU sites, no site twice). `place()`
runs one, checks the result, and picks the AGCU of every off-chip net.

- `RowMajor`: kernels in program order take the next PCU and PMU sites in row-major
  order (the old `rdu-place`). The baseline.
- `RandomPlacement`: a seeded random legal placement. The floor.
- `Anneal`: the placer. A greedy start lays kernels in program order along a
  generalized Hilbert curve (each kernel a contiguous stretch of the curve, so a
  kernel's PCUs and buffers sit together and pipeline neighbours sit side by side),
  then simulated annealing swaps units to lower sum(bytes x hops).

  Limits: it minimises total bytes x hops of the unicast approximation (each sink of a
  multicast counted separately) plus each off-chip unit's bytes x hops to its nearest
  AGCU; it does not model link congestion directly (the cost model checks the most
  loaded link afterwards) nor the AGCU balance (`network.assign_agcus` does that after
  placement). Its budget is `effort` moves per unit (default 20: ~0.4 s for a full
  `sn40l` section in CPython); the schedule is geometric cooling with a shrinking move
  window. Same problem, grid, seed and effort give the same placement.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from dataclasses import dataclass
from typing import Protocol

from rdu_compiler.placement.grid import Grid, Site, gilbert_curve
from rdu_compiler.placement.network import assign_agcus
from rdu_compiler.placement.problem import AGCU, PCU, PMU, Problem


class PlacementError(ValueError):
    """The section does not fit the grid, or a strategy returned an illegal placement."""


class Strategy(Protocol):
    name: str

    def place(self, problem: Problem, grid: Grid) -> list[Site]: ...


@dataclass(frozen=True)
class Placement:
    """Sites per unit and the AGCU (index into `grid.agcus`, -1: on chip) per net."""

    sites: tuple[Site, ...]
    agcus: tuple[int, ...]


def place(problem: Problem, grid: Grid, strategy: Strategy) -> Placement:
    """Place `problem` on `grid` with `strategy`, check it, and assign AGCUs.

    Raises:
        PlacementError: more units of a kind than the grid has sites, or an illegal result.
    """
    for kind in (PCU, PMU):
        have = len(grid.sites(kind))
        if problem.count(kind) > have:
            raise PlacementError(f"{problem.count(kind)} {kind.upper()}s do not fit the grid's {have} {kind.upper()} sites")
    sites = strategy.place(problem, grid)
    check(problem, grid, sites)
    return Placement(tuple(sites), tuple(assign_agcus(grid, problem, sites)))


def check(problem: Problem, grid: Grid, sites: list[Site]) -> None:
    """Raises PlacementError unless every unit has its own on-grid site of its kind."""
    if len(sites) != problem.num_units:
        raise PlacementError(f"{len(sites)} sites for {problem.num_units} units")
    seen: set[Site] = set()
    for u, s in enumerate(sites):
        kind = problem.unit_kind(u)
        if not grid.on_grid(s) or grid.is_pcu(s) != (kind == PCU) or s in seen:
            raise PlacementError(f"unit {u} ({kind}) on {s}: off the grid, wrong kind or taken")
        seen.add(s)


def _kernel_units(problem: Problem) -> list[dict[str, list[int]]]:
    """Per kernel, its PCU units and its PMU units (buffer after buffer)."""
    out: list[dict[str, list[int]]] = [{PCU: [], PMU: []} for _ in problem.kernels]
    for g, (group, first) in enumerate(zip(problem.groups, problem.offsets, strict=True)):
        out[group.kernel][group.kind] += range(first, first + problem.groups[g].size)
    return out


@dataclass(frozen=True)
class RowMajor:
    """Kernels in program order, each a run of the next row-major PCU and PMU sites."""

    name: str = "row-major"

    def place(self, problem: Problem, grid: Grid) -> list[Site]:
        free = {PCU: iter(grid.sites(PCU)), PMU: iter(grid.sites(PMU))}
        sites: list[Site] = [(0, 0)] * problem.num_units
        for units in _kernel_units(problem):
            for kind in (PCU, PMU):
                for u in units[kind]:
                    sites[u] = next(free[kind])
        return sites


@dataclass(frozen=True)
class RandomPlacement:
    """Every unit on a random free site of its kind (seeded)."""

    seed: int = 0
    name: str = "random"

    def place(self, problem: Problem, grid: Grid) -> list[Site]:
        rng = random.Random(self.seed)
        pools = {kind: rng.sample(grid.sites(kind), len(grid.sites(kind))) for kind in (PCU, PMU)}
        sites: list[Site] = []
        taken = {PCU: 0, PMU: 0}
        for u in range(problem.num_units):
            kind = problem.unit_kind(u)
            sites.append(pools[kind][taken[kind]])
            taken[kind] += 1
        return sites


def curve_start(problem: Problem, grid: Grid) -> list[Site]:
    """The greedy start: kernels in program order along a generalized Hilbert curve.

    Kernel i gets a stretch of the curve proportional to its units and takes the sites
    of each kind in it; a kernel short of a kind then takes the free sites of that kind
    nearest its stretch's centre (ties: curve order).
    """
    curve = gilbert_curve(grid.rows, grid.cols)
    order = {s: i for i, s in enumerate(curve)}
    per_kernel = _kernel_units(problem)
    need = [len(k[PCU]) + len(k[PMU]) for k in per_kernel]
    total = max(1, sum(need))
    sites: list[Site | None] = [None] * problem.num_units
    used: set[Site] = set()
    short: list[tuple[int, str, list[int], tuple[float, float]]] = []
    acc = 0
    for ki, units in enumerate(per_kernel):
        start = acc * len(curve) // total
        acc += need[ki]
        stretch = curve[start : acc * len(curve) // total]
        centre = (sum(r for r, _ in stretch) / max(1, len(stretch)), sum(c for _, c in stretch) / max(1, len(stretch)))
        for kind in (PCU, PMU):
            mine = [s for s in stretch if grid.is_pcu(s) == (kind == PCU)]
            todo = units[kind]
            for u, s in zip(todo, mine, strict=False):
                sites[u] = s
                used.add(s)
            if len(todo) > len(mine):
                short.append((ki, kind, todo[len(mine) :], centre))
    for _, kind, todo, (cr, cc) in short:
        free = [s for s in grid.sites(kind) if s not in used]
        free.sort(key=lambda s: (abs(s[0] - cr) + abs(s[1] - cc), order[s]))
        for u, s in zip(todo, free, strict=False):
            sites[u] = s
            used.add(s)
    return [s for s in sites if s is not None]


@dataclass(frozen=True)
class Anneal:
    """Greedy curve start, then simulated annealing of sum(bytes x hops) (module docstring)."""

    seed: int = 0
    effort: float = 20.0
    name: str = "anneal"

    def place(self, problem: Problem, grid: Grid) -> list[Site]:
        sites = curve_start(problem, grid)
        if self.effort <= 0 or problem.num_units < 2:
            return sites
        return _Annealer(problem, grid, sites, random.Random(self.seed)).run(int(self.effort * problem.num_units))


class _Annealer:
    """Swap/move annealing over unit coordinates, with incremental cost deltas."""

    def __init__(self, problem: Problem, grid: Grid, sites: list[Site], rng: random.Random):
        self.grid, self.rng = grid, rng
        n = problem.num_units
        self.row = [s[0] for s in sites]
        self.col = [s[1] for s in sites]
        self.pcu = [problem.unit_kind(u) == PCU for u in range(n)]
        self.occ: dict[Site, int] = {s: u for u, s in enumerate(sites)}
        pairs: dict[tuple[int, int], float] = defaultdict(float)
        self.agcu_w = [0.0] * n
        for net in problem.nets:
            for unit, b in net.sinks:
                a, z = net.source, unit
                if a == AGCU and z == AGCU:
                    continue
                if AGCU in (a, z):
                    self.agcu_w[z if a == AGCU else a] += b
                elif a != z:
                    pairs[(min(a, z), max(a, z))] += b
        self.adj: list[list[tuple[int, float]]] = [[] for _ in range(n)]
        for (a, z), w in pairs.items():
            self.adj[a].append((z, w))
            self.adj[z].append((a, w))
        left = [r for r, c in grid.agcus if c < 0]
        right = [r for r, c in grid.agcus if c >= 0]
        self.agcu_dist = {
            (r, c): min([abs(r - ra) + c + 1 for ra in left] + [abs(r - ra) + grid.cols - c for ra in right])
            for r in range(grid.rows)
            for c in range(grid.cols)
        }
        self.movable = [u for u in range(n) if self.adj[u] or self.agcu_w[u]]

    def _unit_delta(self, u: int, r0: int, c0: int, r1: int, c1: int, skip: int) -> float:
        d = 0.0
        row, col = self.row, self.col
        for x, w in self.adj[u]:
            if x != skip:
                rx, cx = row[x], col[x]
                d += w * (abs(r1 - rx) + abs(c1 - cx) - abs(r0 - rx) - abs(c0 - cx))
        if self.agcu_w[u]:
            d += self.agcu_w[u] * (self.agcu_dist[(r1, c1)] - self.agcu_dist[(r0, c0)])
        return d

    def _propose(self, u: int, radius: int) -> Site:
        g, rng = self.grid, self.rng
        r = min(g.rows - 1, max(0, self.row[u] + rng.randint(-radius, radius)))
        c = min(g.cols - 1, max(0, self.col[u] + rng.randint(-radius, radius)))
        if ((r + c) % 2 == 0) != self.pcu[u]:
            c = c + 1 if c + 1 < g.cols else c - 1
        return r, c

    def _try(self, u: int, radius: int, temp: float) -> None:
        r1, c1 = self._propose(u, radius)
        r0, c0 = self.row[u], self.col[u]
        if (r1, c1) == (r0, c0):
            return
        v = self.occ.get((r1, c1), -1)
        d = self._unit_delta(u, r0, c0, r1, c1, v)
        if v >= 0:
            d += self._unit_delta(v, r1, c1, r0, c0, u)
        if d > 0 and (temp <= 0 or self.rng.random() >= math.exp(-d / temp)):
            return
        self.row[u], self.col[u] = r1, c1
        self.occ[(r1, c1)] = u
        if v >= 0:
            self.row[v], self.col[v] = r0, c0
            self.occ[(r0, c0)] = v
        else:
            del self.occ[(r0, c0)]

    def _start_temperature(self, radius: int) -> float:
        """A fraction of the mean uphill delta of random moves: the greedy start is good,
        so annealing refines it rather than melting it."""
        ups = []
        for _ in range(min(200, 4 * len(self.movable))):
            u = self.rng.choice(self.movable)
            r1, c1 = self._propose(u, radius)
            v = self.occ.get((r1, c1), -1)
            d = self._unit_delta(u, self.row[u], self.col[u], r1, c1, v)
            if v >= 0:
                d += self._unit_delta(v, r1, c1, self.row[u], self.col[u], u)
            if d > 0:
                ups.append(d)
        return 0.1 * sum(ups) / len(ups) if ups else 0.0

    def run(self, moves: int) -> list[Site]:
        if not self.movable:
            return list(zip(self.row, self.col, strict=True))
        r_max = max(2, min(self.grid.rows, self.grid.cols) // 4)
        t0 = self._start_temperature(r_max)
        steps = 50
        per_step = max(1, moves // steps)
        choice = self.rng.choice
        for step in range(steps):
            frac = step / (steps - 1)
            temp = t0 * (1e-3**frac) if step < steps - 1 else 0.0
            radius = max(1, round(r_max * (1 - frac) + 1 * frac))
            for _ in range(per_step):
                self._try(choice(self.movable), radius, temp)
        return list(zip(self.row, self.col, strict=True))


STRATEGIES = ("anneal", "row-major", "random")


def make_strategy(name: str, seed: int = 0, effort: float = 20.0) -> Strategy:
    """The strategy called `name` (one of STRATEGIES).

    Raises:
        ValueError: an unknown name.
    """
    if name == "anneal":
        return Anneal(seed=seed, effort=effort)
    if name == "row-major":
        return RowMajor()
    if name == "random":
        return RandomPlacement(seed=seed)
    raise ValueError(f"unknown placement strategy {name!r}; choose one of {', '.join(STRATEGIES)}")
