"""The fast placement and routing code (numpy routes, the balanced routing's one-by-one
choices over lists, batched annealing, AGCU assignment) against straightforward reference
implementations kept here: same link loads, same choices, same placements."""

from __future__ import annotations

import random

import numpy as np
import pytest

from rdu_compiler.plan.placement import (
    AGCU,
    PCU,
    PMU,
    Flow,
    Grid,
    Group,
    Problem,
    RandomPlacement,
    RouteError,
    assign_agcus,
    hops,
    link_loads,
    strategies,
)
from rdu_compiler.plan.placement.network import AGCU_SLACK, BALANCE_PASSES

# ------------------------------------------------------------------ reference implementations


def ref_trees(grid: Grid, problem: Problem, sites, agcus, both: bool) -> list[list[tuple[list[int], list[float]]]]:
    out = []
    for i, net in enumerate(problem.nets):

        def where(unit: int, i: int = i) -> tuple[int, int]:
            if unit != AGCU:
                return sites[unit]
            if agcus[i] < 0:
                raise ValueError(f"net {i} reaches an AGCU but has none assigned")
            return grid.agcus[agcus[i]]

        src = where(net.source)
        ends = [(where(u), b) for u, b in net.sinks]
        opts = []
        for rows_first in (False, True) if both and not net.has_agcu else (False,):
            tree: dict[int, float] = {}
            for dst, b in ends:
                for link in grid.route(src, dst, rows_first):
                    if tree.get(link, 0.0) < b:
                        tree[link] = b
            opts.append((list(tree), list(tree.values())))
        out.append(opts)
    return out


def ref_balance(num_links: int, options) -> list[int]:
    load = np.zeros(num_links)
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


def ref_link_loads(grid: Grid, problem: Problem, sites, agcus, routing: str):
    options = ref_trees(grid, problem, sites, agcus, routing == "balanced")
    choice = ref_balance(grid.num_links, options) if routing == "balanced" else [0] * len(options)
    ids: list[int] = []
    weights: list[float] = []
    for opts, k in zip(options, choice, strict=True):
        ids += opts[k][0]
        weights += opts[k][1]
    loads = np.bincount(np.asarray(ids, dtype=np.int64), weights=np.asarray(weights, dtype=np.float64), minlength=grid.num_links)
    top = int(loads.argmax()) if loads.size and loads.max() > 0 else -1
    return loads, float(loads.sum()), float(loads[top]) if top >= 0 else 0.0, top, tuple(k == 1 for k in choice)


def ref_assign_agcus(grid: Grid, problem: Problem, sites) -> list[int]:
    out = [-1] * len(problem.nets)
    todo = []
    totals = {True: 0.0, False: 0.0}
    for i, net in enumerate(problem.nets):
        if not net.has_agcu:
            continue
        if net.source == AGCU:
            units = [u for u, _ in net.sinks if u != AGCU]
            unit, b, reads = (units[0] if units else AGCU), max(b for _, b in net.sinks), True
        else:
            unit, b, reads = net.source, next(b for u, b in net.sinks if u == AGCU), False
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


def ref_anneal(problem: Problem, grid: Grid, seed: int, effort: float) -> list[tuple[int, int]]:
    """The annealer one proposal at a time, with the same random numbers."""
    sites = strategies.curve_start(problem, grid)
    a = strategies._Annealer(problem, grid, sites, seed)
    if not a.movable:
        return sites
    row, col, occ, cols = a.row, a.col, a.occ, grid.cols
    rng = np.random.default_rng(seed)
    r_max = max(2, min(grid.rows, grid.cols) // 4)
    which, drs, dcs, _ = strategies.anneal_draws(rng, len(a.movable), min(200, 4 * len(a.movable)), r_max)
    ups = []
    for w, dr, dc in zip(which.tolist(), drs.tolist(), dcs.tolist(), strict=True):
        u = a.movable[w]
        r1, c1 = a.target(u, dr, dc)
        if not 0 <= c1 < cols or (r1, c1) == (row[u], col[u]):
            continue
        v = occ[r1 * cols + c1]
        d = a.delta(u, row[u], col[u], r1, c1, v)
        if v >= 0:
            d += a.delta(v, r1, c1, row[u], col[u], u)
        if d > 0:
            ups.append(d)
    t0 = 0.1 * float(np.sum(ups)) / len(ups) if ups else 0.0
    for scale, radius, count in strategies.anneal_schedule(int(effort * problem.num_units), r_max):
        which, drs, dcs, es = strategies.anneal_draws(rng, len(a.movable), count, radius)
        limits = ((t0 * scale) * es).tolist()
        for w, dr, dc, limit in zip(which.tolist(), drs.tolist(), dcs.tolist(), limits, strict=True):
            u = a.movable[w]
            r0, c0 = row[u], col[u]
            r1, c1 = a.target(u, dr, dc)
            if not 0 <= c1 < cols or (r1, c1) == (r0, c0):
                continue
            v = occ[r1 * cols + c1]
            d = a.delta(u, r0, c0, r1, c1, v)
            if v >= 0:
                d += a.delta(v, r1, c1, r0, c0, u)
            if not (d <= 0 or d < limit):
                continue
            row[u], col[u] = r1, c1
            occ[r1 * cols + c1] = u
            if v >= 0:
                row[v], col[v] = r0, c0
                occ[r0 * cols + c0] = v
            else:
                occ[r0 * cols + c0] = -1
    return list(zip(row, col, strict=True))


# ------------------------------------------------------------------ random problems


def random_grid(rng: random.Random) -> Grid:
    rows, cols = rng.randint(2, 9), rng.randint(2, 9)
    left = rng.sample(range(rows), rng.randint(0, rows))
    right = rng.sample(range(rows), rng.randint(1 if not left else 0, rows))
    return Grid(rows, cols, tuple((r, -1) for r in left) + tuple((r, cols) for r in right))


def random_problem(rng: random.Random, grid: Grid) -> Problem:
    pcus = (grid.rows * grid.cols + 1) // 2
    pmus = grid.rows * grid.cols // 2
    kernels = rng.randint(1, 4)
    groups: list[Group] = []
    free = {PCU: pcus, PMU: pmus}
    for k in range(kernels):
        for kind in (PCU, PMU, PMU):
            if free[kind] > 0 and rng.random() < 0.8:
                size = rng.randint(1, max(1, min(free[kind], 4)))
                free[kind] -= size
                groups.append(Group(k, kind, size))
    if not groups:
        groups.append(Group(0, PCU, 1))
    flows = []
    ends = [AGCU, *range(len(groups))]
    for _ in range(rng.randint(1, 8)):
        src = rng.choice(ends)
        sinks = rng.sample([e for e in ends if e != src and not (src == AGCU and e == AGCU)], k=1)
        for e in ends:
            if e not in sinks and e != src and (e != AGCU or src != AGCU) and rng.random() < 0.3:
                sinks.append(e)
        if sum(1 for e in (src, *sinks) if e == AGCU) > 1:
            sinks = [e for e in sinks if e != AGCU] or [0 if src != 0 else len(groups) - 1]
            if src == sinks[0]:
                continue
        choice = rng.random()
        flows.append(Flow(src, tuple((s, rng.choice([0.0, 1.0, 64.0, rng.random() * 1e6, 1 / 3]) if choice < 0.2 else rng.random() * 1e6) for s in sinks)))
    return Problem(tuple(f"k{k}" for k in range(kernels)), tuple(groups), tuple(flows))


@pytest.mark.parametrize("seed", range(40))
def test_link_loads_match_the_reference_on_random_problems(seed: int) -> None:
    rng = random.Random(seed)
    grid = random_grid(rng)
    problem = random_problem(rng, grid)
    sites = RandomPlacement(seed=seed).place(problem, grid)
    agcus = assign_agcus(grid, problem, sites)
    assert agcus == ref_assign_agcus(grid, problem, sites)
    for routing in ("balanced", "dimension-order"):
        got = link_loads(grid, problem, sites, agcus, routing)
        loads, total, top_bytes, top, rows_first = ref_link_loads(grid, problem, sites, agcus, routing)
        assert np.array_equal(got.link_bytes, loads)
        assert (got.traffic_hops, got.max_link_bytes, got.max_link, got.rows_first) == (total, top_bytes, top, rows_first)


def test_balanced_choices_match_the_reference_on_a_crowded_grid() -> None:
    """Many long nets sharing links, with fractional bytes: the sum key's near ties."""
    grid = Grid(6, 8, ((0, -1), (3, -1), (2, 8), (5, 8)))
    groups = (Group(0, PCU, 24), Group(0, PMU, 24))
    rng = random.Random(7)
    sources = [rng.choice((0, 1)) for _ in range(30)]
    flows = tuple(Flow(s, ((1 - s, rng.choice((1 / 3, 1.0, 0.1, 7.0))),)) for s in sources)
    flows += (Flow(0, ((1, 1 / 7), (AGCU, 2.0))), Flow(AGCU, ((0, 5.0), (1, 0.0))))
    problem = Problem(("k",), groups, flows)
    for seed in range(5):
        sites = RandomPlacement(seed=seed).place(problem, grid)
        agcus = assign_agcus(grid, problem, sites)
        got = link_loads(grid, problem, sites, agcus, "balanced")
        loads, _, _, _, rows_first = ref_link_loads(grid, problem, sites, agcus, "balanced")
        assert got.rows_first == rows_first and np.array_equal(got.link_bytes, loads)


def test_link_loads_raise_as_the_reference() -> None:
    grid = Grid(3, 3, ((1, -1),))
    problem = Problem(("k",), (Group(0, PCU, 1), Group(0, PMU, 1)), (Flow(0, ((1, 1.0),)), Flow(AGCU, ((0, 2.0),))))
    with pytest.raises(ValueError, match="net 1 reaches an AGCU but has none assigned"):
        link_loads(grid, problem, [(0, 0), (0, 1)], [-1, -1])
    with pytest.raises(RouteError, match="leaves the 3 x 3 grid at \\(0, 5\\)"):
        link_loads(grid, problem, [(0, 0), (0, 5)], [-1, 0])


@pytest.mark.parametrize("seed", range(12))
def test_batched_annealing_is_the_one_by_one_annealing(seed: int) -> None:
    rng = random.Random(100 + seed)
    grid = random_grid(rng)
    problem = random_problem(rng, grid)
    want = ref_anneal(problem, grid, seed, 20.0)
    for batch in (0, 1, 3, 64):
        sites = strategies.curve_start(problem, grid)
        got = strategies._Annealer(problem, grid, sites, seed).run(int(20.0 * problem.num_units), batch=batch)
        assert got == want, batch


def test_annealing_a_full_sn40l_section_is_the_one_by_one_annealing() -> None:
    """A single kernel spread over the 40 x 52 grid, as at -O0 (few neighbours per unit)."""
    from rdu_compiler.fabric import load_fabric

    grid = Grid.from_fabric(load_fabric("sn40l"))
    groups = (Group(0, PCU, 1040), Group(0, PMU, 520), Group(0, PMU, 520))
    flows = (Flow(AGCU, ((1, 4e6),)), Flow(AGCU, ((2, 4e6),)), Flow(1, ((0, 8e6),)), Flow(2, ((0, 8e6),)), Flow(0, ((AGCU, 2e6),)))
    problem = Problem(("k",), groups, flows)
    want = ref_anneal(problem, grid, 3, 2.0)
    sites = strategies.curve_start(problem, grid)
    assert strategies._Annealer(problem, grid, sites, 3).run(int(2.0 * problem.num_units)) == want
    strategies.check(problem, grid, want)


def test_read_placement_agcus_are_the_placed_ones() -> None:
    """read_placement takes the recorded AGCUs without re-assigning them, and re-assigns
    when a transfer has none recorded."""
    import torch

    import rdu_compiler
    from rdu_compiler.dialects import rdu
    from rdu_compiler.fabric import load_fabric
    from rdu_compiler.passes.placement_ir import read_placement, section_problem
    from rdu_compiler.plan.placement import make_strategy, place

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.ReLU())
    program = rdu_compiler.compile(model, (torch.randn(4, 16),), fabric="tiny", opt_level=0)
    grid = Grid.from_fabric(load_fabric("tiny"))
    sections = [op for op in program.module.walk() if isinstance(op, rdu.SectionOp)]
    for section in sections:
        sp = section_problem(section)
        placed = place(sp.problem, grid, make_strategy("anneal"))
        assert read_placement(sp, grid) == placed
    sp = section_problem(sections[0])
    op, _ = sp.transfers[0]
    del op.properties["agcu_sites"]
    got = read_placement(sp, grid)
    assert got is not None and got.agcus == tuple(assign_agcus(grid, sp.problem, got.sites))


def test_balanced_sum_key_rounding_is_decided_as_the_reference() -> None:
    """A net whose two routes cross the same loads in another order: the sums are equal
    but for rounding, and summed in another order they compare the other way. The choice
    must still be the reference's (numpy's `.sum()` of each route's loads)."""
    rng = np.random.default_rng(0)
    for _ in range(1000):
        xy = rng.random(4) * 10 + 1
        yx = xy[rng.permutation(4)]
        seq = np.add.reduceat(np.concatenate([xy, yx]), [0, 4])
        if (seq[1] < seq[0]) != (yx.sum() < xy.sum()):
            break
    else:
        pytest.skip("this numpy sums 4 values in order")
    grid = Grid(3, 3, ((1, -1),))
    cells = [(r, c) for r in range(3) for c in range(3)]
    groups = tuple(Group(0, PCU if (r + c) % 2 == 0 else PMU, 1) for r, c in cells)
    at = {s: i for i, s in enumerate(cells)}
    # (0,0) -> (2,2): XY east, east, south, south; YX south, south, east, east
    xy_hops = [((0, 0), (0, 1)), ((0, 1), (0, 2)), ((0, 2), (1, 2)), ((1, 2), (2, 2))]
    yx_hops = [((0, 0), (1, 0)), ((1, 0), (2, 0)), ((2, 0), (2, 1)), ((2, 1), (2, 2))]
    flows = [Flow(at[a], ((at[b], float(w)),)) for (a, b), w in zip(xy_hops + yx_hops, [*xy, *yx], strict=True)]
    flows.append(Flow(at[(0, 0)], ((at[(2, 2)], 0.5),)))
    problem = Problem(("k",), groups, tuple(flows))
    got = link_loads(grid, problem, cells, [-1] * len(flows), "balanced")
    loads, _, _, _, rows_first = ref_link_loads(grid, problem, cells, [-1] * len(flows), "balanced")
    assert got.rows_first == rows_first and np.array_equal(got.link_bytes, loads)
