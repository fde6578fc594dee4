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
  placement). Its budget is `effort` moves per unit (default 20); the schedule is
  geometric cooling with a shrinking move window (`anneal_schedule`), the random numbers
  a seeded numpy stream (`anneal_draws`), and proposals are evaluated in numpy batches
  with the result of taking them one by one (`_Annealer`; ~0.1 s for a full `sn40l`
  section). Same problem, grid, seed and effort give the same placement.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from rdu_compiler.plan.placement.grid import Grid, Site, gilbert_curve
from rdu_compiler.plan.placement.network import assign_agcus, net_pairs
from rdu_compiler.plan.placement.problem import AGCU, PCU, PMU, Problem


class PlacementError(ValueError):
    """The section does not fit the grid, or a strategy returned an illegal placement."""


class Strategy(Protocol):
    @property
    def name(self) -> str: ...

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
        return _Annealer(problem, grid, sites, self.seed).run(int(self.effort * problem.num_units))


#: Annealing steps (temperature and window change between steps).
ANNEAL_STEPS = 50


def anneal_draws(rng: np.random.Generator, movable: int, count: int, radius: int) -> tuple[np.ndarray, ...]:
    """The random numbers of `count` proposals: (index into the movable units, row offset,
    column offset in [-radius, radius], a standard exponential for the Metropolis test:
    an uphill move by `d` is taken when `d < temperature x e`, probability exp(-d / T))."""
    which = rng.integers(0, movable, count)
    dr = rng.integers(-radius, radius + 1, count)
    dc = rng.integers(-radius, radius + 1, count)
    return which, dr, dc, rng.standard_exponential(count)


def anneal_schedule(moves: int, r_max: int) -> list[tuple[float, int, int]]:
    """Per step: (fraction of t0, window radius, proposals): geometric cooling from t0 to
    t0 / 1000, then a last step at 0 (downhill only); the window shrinks from r_max to 1."""
    per_step = max(1, moves // ANNEAL_STEPS)
    out = []
    for step in range(ANNEAL_STEPS):
        frac = step / (ANNEAL_STEPS - 1)
        scale = 1e-3**frac if step < ANNEAL_STEPS - 1 else 0.0
        out.append((scale, max(1, round(r_max * (1 - frac) + 1 * frac)), per_step))
    return out


@functools.lru_cache(maxsize=8)
def _agcu_dist(grid: Grid) -> list[int]:
    """Per site (row-major): links to the nearest AGCU."""
    r = np.arange(grid.rows)[:, None, None]
    c = np.arange(grid.cols)[None, :, None]
    left = np.array([ra for ra, ca in grid.agcus if ca < 0], dtype=np.int64)
    right = np.array([ra for ra, ca in grid.agcus if ca >= 0], dtype=np.int64)
    dist = np.concatenate([np.abs(r - left) + c + 1, np.abs(r - right) + grid.cols - c], axis=2)
    return dist.min(axis=2).reshape(-1).tolist()


class _Annealer:
    """Swap/move annealing over unit coordinates, with incremental cost deltas.

    Proposals come in batches: their deltas are computed with numpy against the state at
    the start of the batch, then taken in order; a proposal whose unit, swap partner or
    target site was touched by a move taken earlier in the batch (a moved unit taints
    itself, its partner and their neighbours) is re-evaluated from the current state. So
    the result is exactly that of taking the proposals one by one (the reference in
    testsuite/unit/test_placement_speed.py), only faster.
    """

    def __init__(self, problem: Problem, grid: Grid, sites: list[Site], seed: int):
        self.grid, self.seed = grid, seed
        n = problem.num_units
        self.row = [s[0] for s in sites]
        self.col = [s[1] for s in sites]
        self.pcu = [problem.unit_kind(u) == PCU for u in range(n)]
        cols = grid.cols
        self.occ = [-1] * (grid.rows * cols)
        for u, (r, c) in enumerate(sites):
            self.occ[r * cols + c] = u
        src, dst, nbytes = net_pairs(problem)[1:4]
        off_chip = (src == AGCU) | (dst == AGCU)
        both = (src == AGCU) & (dst == AGCU)
        mine = np.where(src == AGCU, dst, src)
        one = off_chip & ~both
        self.agcu_w = np.bincount(mine[one], weights=nbytes[one], minlength=n).tolist() if n else []
        on = ~off_chip & (src != dst)
        lo, hi, w = np.minimum(src[on], dst[on]), np.maximum(src[on], dst[on]), nbytes[on]
        keys, first, inverse = np.unique(lo * n + hi, return_index=True, return_inverse=True)
        sums = np.bincount(inverse.reshape(-1), weights=w, minlength=len(keys))  # in net order, as a dict would
        by_first = np.argsort(first, kind="stable")
        self.adj_x: list[list[int]] = [[] for _ in range(n)]
        self.adj_w: list[list[float]] = [[] for _ in range(n)]
        for key, wt in zip(keys[by_first].tolist(), sums[by_first].tolist(), strict=True):
            a, z = divmod(key, n)
            self.adj_x[a].append(z)
            self.adj_w[a].append(wt)
            self.adj_x[z].append(a)
            self.adj_w[z].append(wt)
        self.agcu_dist = _agcu_dist(grid)
        self.movable = [u for u in range(n) if self.adj_x[u] or self.agcu_w[u]]

    def delta(self, u: int, r0: int, c0: int, r1: int, c1: int, skip: int) -> float:
        """Change of the cost when unit `u` moves from (r0, c0) to (r1, c1), ignoring its
        link to `skip` (the unit it swaps with)."""
        d = 0.0
        row, col = self.row, self.col
        for x, w in zip(self.adj_x[u], self.adj_w[u], strict=True):
            if x != skip:
                rx, cx = row[x], col[x]
                d += w * (abs(r1 - rx) + abs(c1 - cx) - abs(r0 - rx) - abs(c0 - cx))
        cols = self.grid.cols
        return d + self.agcu_w[u] * (self.agcu_dist[r1 * cols + c1] - self.agcu_dist[r0 * cols + c0])

    def target(self, u: int, dr: int, dc: int) -> tuple[int, int]:
        """Where a proposal of `u` with offsets (dr, dc) goes: clamped to the grid, then one
        column over to a site of u's kind (-1 column when there is none)."""
        g = self.grid
        r = min(g.rows - 1, max(0, self.row[u] + dr))
        c = min(g.cols - 1, max(0, self.col[u] + dc))
        if ((r + c) % 2 == 0) != self.pcu[u]:
            c = c + 1 if c + 1 < g.cols else c - 1
        return r, c

    def _arrays(self) -> None:
        n = len(self.row)
        deg = np.array([len(x) for x in self.adj_x], dtype=np.int64)
        self.np_off = np.concatenate([[0], np.cumsum(deg)])
        self.np_deg = deg
        self.np_x = np.array([x for xs in self.adj_x for x in xs], dtype=np.int64)
        self.np_w = np.array([w for ws in self.adj_w for w in ws], dtype=np.float64)
        self.np_aw = np.array(self.agcu_w, dtype=np.float64)
        self.np_ad = np.array(self.agcu_dist, dtype=np.float64)
        self.np_pcu = np.array(self.pcu, dtype=bool)
        self.R = np.array(self.row, dtype=np.int64)
        self.C = np.array(self.col, dtype=np.int64)
        self.OCC = np.array(self.occ, dtype=np.int64)
        assert len(self.R) == n

    def _targets(self, u: np.ndarray, dr: np.ndarray, dc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        g = self.grid
        r = np.clip(self.R[u] + dr, 0, g.rows - 1)
        c = np.clip(self.C[u] + dc, 0, g.cols - 1)
        wrong = ((r + c) % 2 == 0) != self.np_pcu[u]
        c = np.where(wrong, np.where(c + 1 < g.cols, c + 1, c - 1), c)
        return r, c

    def _deltas(self, u: np.ndarray, r0: np.ndarray, c0: np.ndarray, r1: np.ndarray, c1: np.ndarray, skip: np.ndarray) -> np.ndarray:
        """`delta` of many proposals against the current state (u < 0: 0)."""
        k = len(u)
        ok = u >= 0
        uu = np.where(ok, u, 0)
        lens = np.where(ok, self.np_deg[uu], 0)
        total = int(lens.sum())
        owner = np.repeat(np.arange(k), lens)
        el = np.repeat(self.np_off[uu] - (np.cumsum(lens) - lens), lens) + np.arange(total)
        x = self.np_x[el]
        rx, cx = self.R[x], self.C[x]
        ro, co, rn, cn = r0[owner], c0[owner], r1[owner], c1[owner]
        term = self.np_w[el] * (np.abs(rn - rx) + np.abs(cn - cx) - np.abs(ro - rx) - np.abs(co - cx))
        keep = x != skip[owner]
        d = np.bincount(owner[keep], weights=term[keep], minlength=k)
        cols = self.grid.cols
        d = d + self.np_aw[uu] * (self.np_ad[r1 * cols + c1] - self.np_ad[r0 * cols + c0])
        return np.where(ok, d, 0.0)

    def _evaluate(self, u: np.ndarray, dr: np.ndarray, dc: np.ndarray) -> tuple[np.ndarray, ...]:
        """(target row, target col, partner or -1, delta, no-op) of proposals, all at once."""
        r0, c0 = self.R[u], self.C[u]
        r1, c1 = self._targets(u, dr, dc)
        cols = self.grid.cols
        inside = (c1 >= 0) & (c1 < cols)
        v = np.where(inside, self.OCC[np.clip(r1, 0, self.grid.rows - 1) * cols + np.clip(c1, 0, cols - 1)], -1)
        noop = ((r1 == r0) & (c1 == c0)) | ~inside
        k = len(u)
        cat = np.concatenate
        both = self._deltas(cat([u, v]), cat([r0, r1]), cat([c0, c1]), cat([r1, r0]), cat([c1, c0]), cat([v, u]))
        d = both[:k] + both[k:]
        return r1, c1, v, d, noop

    def _start_temperature(self, rng: np.random.Generator, radius: int) -> float:
        """A fraction of the mean uphill delta of random moves: the greedy start is good,
        so annealing refines it rather than melting it."""
        which, dr, dc, _ = anneal_draws(rng, len(self.movable), min(200, 4 * len(self.movable)), radius)
        _, _, _, d, noop = self._evaluate(self.np_movable[which], dr, dc)
        ups = d[(d > 0) & ~noop]
        return 0.1 * float(ups.sum()) / len(ups) if len(ups) else 0.0

    def run(self, moves: int, batch: int = 0) -> list[Site]:
        """Anneal with `moves` proposals (ANNEAL_STEPS steps of `anneal_schedule`), in
        batches of `batch` (default: a function of the unit count)."""
        if not self.movable:
            return list(zip(self.row, self.col, strict=True))
        self._arrays()
        self.np_movable = np.array(self.movable, dtype=np.int64)
        rng = np.random.default_rng(self.seed)
        r_max = max(2, min(self.grid.rows, self.grid.cols) // 4)
        t0 = self._start_temperature(rng, r_max)
        batch = batch or max(8, min(256, len(self.row) // 8))
        taint = [0] * len(self.row)
        dirty = [0] * len(self.occ)
        stamp = 0
        for scale, radius, count in anneal_schedule(moves, r_max):
            which, drs, dcs, es = anneal_draws(rng, len(self.movable), count, radius)
            us = self.np_movable[which]
            limit = (t0 * scale) * es
            for b0 in range(0, count, batch):
                stamp += 1
                sl = slice(b0, b0 + batch)
                r1s, c1s, vs, ds, noops = self._evaluate(us[sl], drs[sl], dcs[sl])
                self._take(
                    us[sl].tolist(), drs[sl].tolist(), dcs[sl].tolist(), limit[sl].tolist(),
                    r1s.tolist(), c1s.tolist(), vs.tolist(), ds.tolist(), noops.tolist(), taint, dirty, stamp,
                )
        return list(zip(self.row, self.col, strict=True))

    def _take(self, us, drs, dcs, limits, r1s, c1s, vs, ds, noops, taint, dirty, stamp) -> None:  # noqa: ANN001
        """Take a batch's proposals in order (class docstring)."""
        row, col, occ, cols = self.row, self.col, self.occ, self.grid.cols
        adj_x, adj_w, agcu_w, agcu_dist, pcu, rows = self.adj_x, self.adj_w, self.agcu_w, self.agcu_dist, self.pcu, self.grid.rows
        R, C, OCC = self.R, self.C, self.OCC
        for u, dr, dc, limit, r1, c1, v, d, noop in zip(us, drs, dcs, limits, r1s, c1s, vs, ds, noops, strict=True):
            if taint[u] == stamp or (not noop and dirty[r1 * cols + c1] == stamp) or (v >= 0 and taint[v] == stamp):
                # stale: `target` and `delta` from the current state, inlined
                r0, c0 = row[u], col[u]
                r1 = min(rows - 1, max(0, r0 + dr))
                c1 = min(cols - 1, max(0, c0 + dc))
                if ((r1 + c1) % 2 == 0) != pcu[u]:
                    c1 = c1 + 1 if c1 + 1 < cols else c1 - 1
                if not 0 <= c1 < cols or (r1 == r0 and c1 == c0):
                    continue
                v = occ[r1 * cols + c1]
                d = 0.0
                for x, w in zip(adj_x[u], adj_w[u]):  # noqa: B905
                    if x != v:
                        rx, cx = row[x], col[x]
                        d += w * (abs(r1 - rx) + abs(c1 - cx) - abs(r0 - rx) - abs(c0 - cx))
                d = d + agcu_w[u] * (agcu_dist[r1 * cols + c1] - agcu_dist[r0 * cols + c0])
                if v >= 0:
                    dv = 0.0
                    for x, w in zip(adj_x[v], adj_w[v]):  # noqa: B905
                        if x != u:
                            rx, cx = row[x], col[x]
                            dv += w * (abs(r0 - rx) + abs(c0 - cx) - abs(r1 - rx) - abs(c1 - cx))
                    d += dv + agcu_w[v] * (agcu_dist[r0 * cols + c0] - agcu_dist[r1 * cols + c1])
            elif noop:
                continue
            if not (d <= 0 or d < limit):
                continue
            r0, c0 = row[u], col[u]
            s0, s1 = r0 * cols + c0, r1 * cols + c1
            row[u], col[u] = r1, c1
            R[u], C[u] = r1, c1
            occ[s1] = u
            OCC[s1] = u
            taint[u] = stamp
            for x in adj_x[u]:
                taint[x] = stamp
            if v >= 0:
                row[v], col[v] = r0, c0
                R[v], C[v] = r0, c0
                occ[s0] = v
                OCC[s0] = v
                taint[v] = stamp
                for x in adj_x[v]:
                    taint[x] = stamp
            else:
                occ[s0] = -1
                OCC[s0] = -1
            dirty[s0] = dirty[s1] = stamp


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
