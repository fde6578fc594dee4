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

from rdu_compiler.plan.placement.grid import EAST, NORTH, SOUTH, WEST, Grid, Site, hops
from rdu_compiler.plan.placement.problem import AGCU, Net, Problem

#: An AGCU takes another net while its bytes stay within this factor of an even share.
AGCU_SLACK = 1.05

#: The routings `link_loads` knows (module docstring).
ROUTINGS = ("balanced", "dimension-order")

#: Rip-up-and-reroute passes of the balanced routing after its greedy start.
BALANCE_PASSES = 3

#: Unit roundoff of float64 (bounds the rounding of a sum, `_balance`).
_ULP = 2.0**-53


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
    pnet, src, dst, pb, has_agcu = net_pairs(problem)
    out = [-1] * len(has_agcu)
    if not has_agcu.any():
        return out
    # per off-chip net: the unit at the other end, the bytes through the AGCU, whether it reads
    starts = np.searchsorted(pnet, np.arange(len(has_agcu)))
    reads_all = src[starts] == AGCU
    big = np.zeros(len(has_agcu))
    np.maximum.at(big, pnet, pb)
    into = dst == AGCU
    store_b = np.zeros(len(has_agcu))
    store_b[pnet[into]] = pb[into]
    nets = np.flatnonzero(has_agcu)
    reads = reads_all[nets]
    b_all = np.where(reads, big[nets], store_b[nets])
    unit_all = np.where(reads, dst[starts[nets]], src[starts[nets]])
    totals = {True: 0.0, False: 0.0}
    for r, b in zip(reads.tolist(), b_all.tolist(), strict=True):
        totals[r] += b
    rank = np.lexsort((nets, -b_all))
    todo = list(zip((-b_all[rank]).tolist(), nets[rank].tolist(), unit_all[rank].tolist(), b_all[rank].tolist(), reads[rank].tolist(), strict=True))
    n = len(grid.agcus)
    agcu_rc = np.asarray(grid.agcus, dtype=np.int64).reshape(-1, 2)
    ends = np.asarray([sites[unit] if unit != AGCU else grid.agcus[0] for _, _, unit, _, _ in todo], dtype=np.int64).reshape(-1, 2)
    dist = np.abs(ends[:, None, 0] - agcu_rc[None, :, 0]) + np.abs(ends[:, None, 1] - agcu_rc[None, :, 1])
    prefs = np.argsort(dist, axis=1, kind="stable").tolist()  # nearest first, ties: lower index
    dists = dist.tolist()
    load = {True: [0.0] * n, False: [0.0] * n}
    share = {reads: totals[reads] / n * AGCU_SLACK for reads in (True, False)}
    for (_, i, _, b, reads), pref, hop in zip(todo, prefs, dists, strict=True):
        used = load[reads]
        limit = share[reads]
        for a in pref:
            if used[a] + b <= limit:
                best = a
                break
        else:
            best = min(range(n), key=lambda a: (used[a], hop[a], a))
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

    All nets' routes are built at once with numpy (`_trees`); the balanced routing's
    choices are `_balance`'s. Link bytes are summed per link in net order.

    Raises:
        RouteError: a site or AGCU is off the grid.
        ValueError: a net reaches an AGCU but has none assigned, or an unknown routing.
    """
    if routing not in ROUTINGS:
        raise ValueError(f"unknown routing {routing!r}; choose one of {', '.join(ROUTINGS)}")
    trees = _trees(grid, problem, sites, agcus, routing == "balanced")
    if routing == "balanced":
        choice = _balance(grid.num_links, trees)
    else:
        choice = np.zeros(trees.num_nets, dtype=np.int64)
    chosen = trees.option == choice[trees.net]
    loads = np.bincount(trees.link[chosen], weights=trees.bytes[chosen], minlength=grid.num_links)
    top = int(loads.argmax()) if loads.size and loads.max() > 0 else -1
    return NetworkLoad(loads, float(loads.sum()), float(loads[top]) if top >= 0 else 0.0, top, tuple((choice == 1).tolist()))


@dataclass(frozen=True)
class _Trees:
    """Every net's multicast tree XY (option 0) and, for nets in `two`, YX (option 1),
    as flat arrays sorted by (net, option), each tree's links in route order (sink by
    sink, each link once, where it first appears) with the largest bytes of its sinks.
    Links whose bytes are 0 are left out (as `Grid.route`'s callers always did)."""

    num_nets: int
    net: np.ndarray  # int64 per element
    option: np.ndarray  # int64 per element: 0 (XY) or 1 (YX)
    link: np.ndarray  # int64 per element
    bytes: np.ndarray  # float64 per element
    two: np.ndarray  # bool per net: has a YX option


def _trees(grid: Grid, problem: Problem, sites: Sequence[Site], agcus: Sequence[int], both: bool) -> _Trees:
    """The nets' trees (`_Trees`), both orientations when `both` (nets without an AGCU).

    Raises:
        RouteError, ValueError: as `link_loads`, for the first net (in order) at fault.
    """
    pnet, pair_src, pair_dst, pair_b, has_agcu = net_pairs(problem)
    num = len(has_agcu)
    site_arr = np.asarray(sites, dtype=np.int64).reshape(-1, 2)
    agcu_arr = np.asarray(grid.agcus, dtype=np.int64).reshape(-1, 2)
    net_agcu = np.asarray(agcus, dtype=np.int64).reshape(-1)[:num] if num else np.zeros(0, dtype=np.int64)
    ends = []
    for units in (pair_src, pair_dst):
        off = units == AGCU
        a = net_agcu[pnet]
        if (off & (a < 0)).any() or (a[off] >= len(agcu_arr)).any() or (units[~off] >= len(site_arr)).any():
            _raise_first(grid, problem, sites, agcus)
        rc = np.empty((len(units), 2), dtype=np.int64)
        rc[~off] = site_arr[units[~off]]
        rc[off] = agcu_arr[a[off]]
        ends.append((rc[:, 0], rc[:, 1]))
    (r0, c0), (r1, c1) = ends
    rows, cols = grid.rows, grid.cols

    def on_grid(r: np.ndarray, c: np.ndarray) -> np.ndarray:
        return (r >= 0) & (r < rows) & (c >= 0) & (c < cols)

    def is_agcu(r: np.ndarray, c: np.ndarray) -> np.ndarray:
        return (r >= 0) & (r < rows) & ((c == -1) | (c == cols))

    src_on, dst_on, src_ag, dst_ag = on_grid(r0, c0), on_grid(r1, c1), is_agcu(r0, c0), is_agcu(r1, c1)
    if not ((src_on | src_ag) & (dst_on | dst_ag)).all():
        _raise_first(grid, problem, sites, agcus)
    two = np.zeros(num, dtype=bool)
    if both:
        two = ~has_agcu
    pb = pair_b
    into_agcu = dst_ag & ~src_ag
    width = grid.width
    parts = []
    for option in (0, 1):
        use = np.ones(len(pnet), dtype=bool) if option == 0 else two[pnet]
        use &= pb > 0.0
        idx = np.flatnonzero(use)
        yx = into_agcu[idx] | ((option == 1) & src_on[idx] & dst_on[idx])
        a_r, a_c, b_r, b_c = r0[idx], c0[idx], r1[idx], c1[idx]
        # leg 1 and leg 2 per pair: (start row, start col, node step, count, direction)
        dcol, drow = b_c - a_c, b_r - a_r
        h_dir = np.where(dcol > 0, EAST, WEST)
        v_dir = np.where(drow > 0, SOUTH, NORTH)
        h_step = np.where(dcol > 0, 1, -1)
        v_step = np.where(drow > 0, width, -width)
        h_row = np.where(yx, b_r, a_r)  # the horizontal leg runs on this row from a_c
        v_col = np.where(yx, a_c, b_c)  # the vertical leg runs on this column from a_r
        h_base = h_row * width + a_c + 1
        v_base = a_r * width + v_col + 1
        h_n, v_n = np.abs(dcol), np.abs(drow)
        first_base = np.where(yx, v_base, h_base)
        first_step = np.where(yx, v_step, h_step)
        first_n = np.where(yx, v_n, h_n)
        first_dir = np.where(yx, v_dir, h_dir)
        second_base = np.where(yx, h_base, v_base)
        second_step = np.where(yx, h_step, v_step)
        second_n = np.where(yx, h_n, v_n)
        second_dir = np.where(yx, h_dir, v_dir)
        # legs interleaved pair by pair: leg 2k = pair k's first leg, 2k + 1 its second
        base = np.stack([first_base, second_base], axis=1).reshape(-1)
        step = np.stack([first_step, second_step], axis=1).reshape(-1)
        count = np.stack([first_n, second_n], axis=1).reshape(-1)
        direction = np.stack([first_dir, second_dir], axis=1).reshape(-1)
        leg = np.repeat(np.arange(len(count)), count)
        j = np.arange(len(leg)) - np.repeat(np.cumsum(count) - count, count)
        link = (base[leg] + j * step[leg]) * 4 + direction[leg]
        pair = idx[leg // 2]
        net, b = pnet[pair], pb[pair]
        if len(idx) and np.bincount(pnet[idx]).max() > 1:  # multicast: shared segments once
            net, link, b = _dedupe(net, link, b, grid.num_links)
        parts.append((net, np.full(len(net), option, dtype=np.int64), link, b))
    net = np.concatenate([p[0] for p in parts])
    order = np.argsort(net, kind="stable")  # by net, option 0 before option 1
    return _Trees(
        num,
        net[order],
        np.concatenate([p[1] for p in parts])[order],
        np.concatenate([p[2] for p in parts])[order],
        np.concatenate([p[3] for p in parts])[order],
        two,
    )


def net_pairs(problem: Problem) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every (net, sink) of `problem.nets` in order, built from the flows without the
    nets: (net index, source unit, sink unit, bytes) per pair (units AGCU for off chip),
    and per net whether it reaches an AGCU."""
    nets, srcs, dsts, nbytes, agcu = [], [], [], [], []
    first = 0
    for f in problem.flows:
        ends = (f.source, *(g for g, _ in f.sinks))
        n = max(1 if g == AGCU else problem.groups[g].size for g in ends)
        k = np.arange(n)

        def units(g: int, k: np.ndarray = k) -> np.ndarray:
            if g == AGCU:
                return np.full(len(k), AGCU, dtype=np.int64)
            return problem.offsets[g] + k % problem.groups[g].size

        m = len(f.sinks)
        nets.append(np.repeat(first + k, m))
        srcs.append(np.repeat(units(f.source), m))
        dsts.append(np.stack([units(g) for g, _ in f.sinks], axis=1).reshape(-1))
        nbytes.append(np.tile(np.array([b / n for _, b in f.sinks], dtype=np.float64), n))
        agcu.append(np.full(n, AGCU in ends, dtype=bool))
        first += n
    if not nets:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty, np.zeros(0), np.zeros(0, dtype=bool)
    return np.concatenate(nets), np.concatenate(srcs), np.concatenate(dsts), np.concatenate(nbytes), np.concatenate(agcu)


def _dedupe(net: np.ndarray, link: np.ndarray, b: np.ndarray, num_links: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each (net, link) once, where it first appears, with its largest bytes."""
    key = net * num_links + link
    order = np.argsort(key, kind="stable")
    sk = key[order]
    starts = np.flatnonzero(np.concatenate([[True], sk[1:] != sk[:-1]]))
    first = order[starts]
    big = np.maximum.reduceat(b[order], starts)
    keep = np.argsort(first, kind="stable")
    return net[first[keep]], link[first[keep]], big[keep]


def _raise_first(grid: Grid, problem: Problem, sites: Sequence[Site], agcus: Sequence[int]) -> None:
    """Raise the error of the first net (in order) whose ends or routes are bad."""
    for i, net in enumerate(problem.nets):
        src = _where(grid, net.source, sites, agcus[i], i)
        ends = [_where(grid, unit, sites, agcus[i], i) for unit, _ in net.sinks]
        for dst in ends:
            grid.route(src, dst)
    raise AssertionError("no net at fault")  # pragma: no cover


def _balance(num_links: int, trees: _Trees) -> np.ndarray:
    """The balanced routing's choice of tree per net (module docstring): 0 (XY) or 1 (YX).

    The same decisions and loads as taking the nets one by one in the docstring's order
    (the reference in testsuite/unit/test_placement_speed.py): nets are processed in
    *levels* of that order (`_Schedule`), a level being nets whose links (both options) are
    disjoint and all of whose earlier link-sharing nets sit in earlier levels, so each net
    sees the loads it would one by one and every link's additions keep their order. The
    max key is exact; the sum key is summed per level, and where the two options' sums are
    too close for the summation order's rounding to be ruled out (each within
    (n - 1) x 2^-53 x sum|x| of the exact sum, however it is ordered) the net is re-decided
    with the reference's `load[links].sum()`.
    """
    num = trees.num_nets
    choice = np.zeros(num, dtype=np.int64)
    if not len(trees.net):
        return choice
    top = np.zeros(num)
    first = trees.option == 0
    np.maximum.at(top, trees.net[first], trees.bytes[first])
    active = np.zeros(num, dtype=bool)
    active[trees.net] = True
    order = np.argsort(-top, kind="stable")
    order = order[active[order]]
    starts = np.searchsorted(trees.net, np.arange(num + 1))
    s0, e1 = starts[:-1], starts[1:]
    e0 = s0 + np.bincount(trees.net[first], minlength=num)
    ranges = (s0, e0, e1)
    two = trees.two & ~_same_trees(trees, s0, e0, e1)  # XY == YX (straight routes): keys tie, XY wins
    load = np.zeros(num_links)
    _Schedule(trees, order, ranges, two, num_links).sweep(load, choice, rip_up=False)
    ripped = order[trees.two[order]]
    if len(ripped):
        passes = _Schedule(trees, ripped, ranges, two, num_links)
        for _ in range(BALANCE_PASSES):
            if not passes.sweep(load, choice, rip_up=True):
                break
    return choice


class _Schedule:
    """A sequence of nets in levels (`_balance`), laid out flat: level by level, the
    option-0 trees of its nets, then their option-1 trees (a net without a YX option
    repeats its XY tree and always keeps 0)."""

    def __init__(self, trees: _Trees, seq: np.ndarray, ranges: tuple[np.ndarray, ...], two: np.ndarray, num_links: int):
        s0, e0, e1 = ranges
        self.trees, self.ranges = trees, ranges
        level = np.asarray(self._levels(seq.tolist(), s0.tolist(), e1.tolist(), trees.link.tolist(), num_links), dtype=np.int64)
        by_level = np.argsort(level, kind="stable")
        nets, level = seq[by_level], level[by_level]
        n = len(nets)
        bounds = np.flatnonzero(np.concatenate([[True], level[1:] != level[:-1], [True]]))
        # segments: level, then option, then position
        pos = np.concatenate([np.arange(n), np.arange(n)])
        opt = np.repeat(np.array([0, 1]), n)
        seg = np.lexsort((pos, opt, level[pos]))
        pos, opt = pos[seg], opt[seg]
        net = nets[pos]
        has_yx = two[net]
        seg_s = np.where((opt == 1) & has_yx, e0[net], s0[net])
        seg_e = np.where((opt == 1) & has_yx, e1[net], e0[net])
        lens = seg_e - seg_s
        ends = np.cumsum(lens)
        el = np.repeat(seg_s - (ends - lens), lens) + np.arange(int(ends[-1]) if n else 0)
        self.link = trees.link[el]
        self.bytes = trees.bytes[el]
        self.elem_opt = np.repeat(opt, lens)
        self.elem_net = np.repeat(pos, lens)  # position in `nets`
        self.nets, self.two, self.lens = nets, two[nets], lens
        seg_first = ends - lens
        self.levels = []
        for a, z in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
            sa, sz = 2 * a, 2 * z
            ea, ez = int(seg_first[sa]), int(ends[sz - 1])
            self.levels.append((a, z, ea, ez, seg_first[sa:sz] - ea))

    @staticmethod
    def _levels(seq: list[int], s0: list[int], e1: list[int], link: list[int], num_links: int) -> list[int]:
        last = [0] * num_links
        out = []
        for i in seq:
            links = link[s0[i] : e1[i]]
            v = 1 + max(map(last.__getitem__, links))
            for x in links:
                last[x] = v
            out.append(v)
        return out

    def sweep(self, load: np.ndarray, choice: np.ndarray, rip_up: bool) -> bool:
        """One pass over the sequence; returns whether any choice changed."""
        changed = False
        for a, z, ea, ez, rel in self.levels:
            k = z - a
            nets = self.nets[a:z]
            links, nbytes = self.link[ea:ez], self.bytes[ea:ez]
            eopt, enet = self.elem_opt[ea:ez], self.elem_net[ea:ez] - a
            if rip_up:
                old = eopt == choice[nets][enet]
                load[links[old]] += -1.0 * nbytes[old]
            on = load[links]
            top = np.maximum.reduceat(on + nbytes, rel)
            m0, m1 = top[:k], top[k:]
            two = self.two[a:z]
            pick = two & (m1 < m0)
            tie = two & (m1 == m0)
            if tie.any():
                total = np.add.reduceat(on, rel)
                size = np.add.reduceat(np.abs(on), rel)
                lens = self.lens[2 * a : 2 * z]
                t0, t1 = total[:k], total[k:]
                tol = 4.0 * _ULP * (lens[:k] * size[:k] + lens[k:] * size[k:])
                sure = (np.abs(t1 - t0) > tol) | (tol == 0.0)
                pick |= tie & sure & (t1 < t0)
                for q in np.flatnonzero(tie & ~sure).tolist():
                    pick[q] = self._exact(int(nets[q]), load)
            new = pick.astype(np.int64)
            if rip_up and not changed:
                changed = bool((new != choice[nets]).any())
            choice[nets] = new
            sel = eopt == new[enet]
            load[links[sel]] += nbytes[sel]
        return changed

    def _exact(self, i: int, load: np.ndarray) -> bool:
        """Whether net i takes YX, with the reference's arithmetic."""
        s0, e0, e1 = self.ranges
        keys = []
        for a, z in ((s0[i], e0[i]), (e0[i], e1[i])):
            on = load[self.trees.link[a:z]]
            keys.append((float((on + self.trees.bytes[a:z]).max()), float(on.sum())))
        return keys[1] < keys[0]


def _same_trees(trees: _Trees, s0: np.ndarray, e0: np.ndarray, e1: np.ndarray) -> np.ndarray:
    """Per net: its YX tree is its XY tree (same links in the same order, same bytes)."""
    n0, n1 = e0 - s0, e1 - e0
    same = trees.two & (n0 == n1)
    idx = np.flatnonzero(same)
    if len(idx):
        lens = n0[idx]
        el = np.repeat(s0[idx] - (np.cumsum(lens) - lens), lens) + np.arange(int(lens.sum()))
        shift = np.repeat(lens, lens)
        diff = (trees.link[el] != trees.link[el + shift]) | (trees.bytes[el] != trees.bytes[el + shift])
        bad = np.zeros(len(same), dtype=bool)
        bad[trees.net[el[diff]]] = True
        same &= ~bad
    return same


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
