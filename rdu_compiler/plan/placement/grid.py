"""The fabric's grid as plain data: sites, AGCUs, mesh links and minimal one-bend routes.

Coordinates are `(row, col)`. Site `(r, c)` with `0 <= r < rows`, `0 <= c < cols` is a
PCU when `(r + c)` is even, else a PMU (the checkerboard of `Fabric`). AGCUs sit on the
left edge (col -1) and the right edge (col `cols`), each attached to the site beside it
(`Fabric.agcu_sites`). The network is a 2-D mesh of directed links between 4-neighbours,
`link_bytes_per_cycle` each way (SN40L §II: RDN, a 2-D mesh with dimension-order routing).

Routes are minimal and bend once: columns first, then rows (XY, dimension order), or,
between two sites on the grid, rows first (YX) when the router asks for it
(`placement.network`'s balanced routing: SN40L's RDN takes dimension-order routes or
static compiler-chosen flows, sn40l.md). A route whose destination is an AGCU always
goes rows first, then columns, and one from an AGCU columns first, so no route ever runs
along an AGCU column; every route between sites on the grid (or AGCUs) stays on it.

A link is an int: `node * 4 + direction`, `node = r * (cols + 2) + (c + 1)` (AGCU
columns included), direction 0 = east (+col), 1 = west, 2 = south (+row), 3 = north.
"""

from __future__ import annotations

from dataclasses import dataclass

Site = tuple[int, int]

EAST, WEST, SOUTH, NORTH = 0, 1, 2, 3
_STEP = {EAST: (0, 1), WEST: (0, -1), SOUTH: (1, 0), NORTH: (-1, 0)}


class RouteError(ValueError):
    """A route would leave the grid: an endpoint is neither a site nor an AGCU."""


@dataclass(frozen=True)
class Grid:
    """A `rows x cols` checkerboard with AGCUs at `agcus` (edge coordinates)."""

    rows: int
    cols: int
    agcus: tuple[Site, ...]

    @staticmethod
    def from_fabric(fabric: object) -> Grid:
        """The grid of a `rdu_compiler.fabric.Fabric` (rows, cols, agcu_sites())."""
        return Grid(fabric.rows, fabric.cols, tuple(fabric.agcu_sites()))  # type: ignore[attr-defined]

    # ---------------------------------------------------------------- sites

    def is_pcu(self, site: Site) -> bool:
        return (site[0] + site[1]) % 2 == 0

    def on_grid(self, site: Site) -> bool:
        return 0 <= site[0] < self.rows and 0 <= site[1] < self.cols

    def is_agcu(self, site: Site) -> bool:
        return 0 <= site[0] < self.rows and site[1] in (-1, self.cols)

    def sites(self, kind: str) -> list[Site]:
        """Row-major sites of `kind` ("pcu" or "pmu")."""
        want = 0 if kind == "pcu" else 1
        return [(r, c) for r in range(self.rows) for c in range(self.cols) if (r + c) % 2 == want]

    # ---------------------------------------------------------------- links

    @property
    def width(self) -> int:
        """Nodes per row, AGCU columns included."""
        return self.cols + 2

    @property
    def num_links(self) -> int:
        """Size of a per-link array: every node x 4 directions (edge links never used)."""
        return self.rows * self.width * 4

    def node(self, site: Site) -> int:
        return site[0] * self.width + site[1] + 1

    def link(self, site: Site, direction: int) -> int:
        return self.node(site) * 4 + direction

    def link_ends(self, link: int) -> tuple[Site, Site]:
        """The (from, to) coordinates of a link id."""
        node, direction = divmod(link, 4)
        r, c = divmod(node, self.width)
        dr, dc = _STEP[direction]
        return (r, c - 1), (r + dr, c - 1 + dc)

    def route(self, src: Site, dst: Site, rows_first: bool = False) -> list[int]:
        """Links of the route from `src` to `dst`: XY (dimension order), or YX when
        `rows_first` and both ends are sites on the grid. Into an AGCU it is always YX,
        out of one always XY (module docstring).

        Raises:
            RouteError: an endpoint is off the grid (neither a site nor an AGCU).
        """
        for end in (src, dst):
            if not (self.on_grid(end) or self.is_agcu(end)):
                raise RouteError(f"route {src} -> {dst} leaves the {self.rows} x {self.cols} grid at {end}")
        if (self.is_agcu(dst) and not self.is_agcu(src)) or (rows_first and self.on_grid(src) and self.on_grid(dst)):
            mid = (dst[0], src[1])
            return self._straight(src, mid) + self._straight(mid, dst)
        mid = (src[0], dst[1])
        return self._straight(src, mid) + self._straight(mid, dst)

    def _straight(self, a: Site, b: Site) -> list[int]:
        (r, c), (r2, c2) = a, b
        if c != c2:
            direction, step = (EAST, 1) if c2 > c else (WEST, -1)
            base = r * self.width + 1
            return [(base + x) * 4 + direction for x in range(c, c2, step)]
        if r != r2:
            direction, step = (SOUTH, 1) if r2 > r else (NORTH, -1)
            return [((y * self.width) + c + 1) * 4 + direction for y in range(r, r2, step)]
        return []


def hops(a: Site, b: Site) -> int:
    """Links on a route between `a` and `b` (XY or YX): the Manhattan distance."""
    return abs(a[0] - b[0]) + abs(a[1] - b[1])


def gilbert_curve(rows: int, cols: int) -> list[Site]:
    """Every site of a `rows x cols` grid once, in the order of a generalized Hilbert
    curve (gilbert2d): sites close on the curve are close on the grid."""
    out: list[Site] = []
    if cols >= rows:
        _gilbert(out, 0, 0, cols, 0, 0, rows)
    else:
        _gilbert(out, 0, 0, 0, rows, cols, 0)
    return [(y, x) for x, y in out]


def _sgn(v: int) -> int:
    return (v > 0) - (v < 0)


def _gilbert(out: list[tuple[int, int]], x: int, y: int, ax: int, ay: int, bx: int, by: int) -> None:
    w, h = abs(ax + ay), abs(bx + by)
    dax, day, dbx, dby = _sgn(ax), _sgn(ay), _sgn(bx), _sgn(by)
    if h == 1 or w == 1:
        n, sx, sy = (w, dax, day) if h == 1 else (h, dbx, dby)
        for _ in range(n):
            out.append((x, y))
            x, y = x + sx, y + sy
        return
    ax2, ay2, bx2, by2 = ax // 2, ay // 2, bx // 2, by // 2
    w2, h2 = abs(ax2 + ay2), abs(bx2 + by2)
    if 2 * w > 3 * h:
        if w2 % 2 and w > 2:
            ax2, ay2 = ax2 + dax, ay2 + day
        _gilbert(out, x, y, ax2, ay2, bx, by)
        _gilbert(out, x + ax2, y + ay2, ax - ax2, ay - ay2, bx, by)
        return
    if h2 % 2 and h > 2:
        bx2, by2 = bx2 + dbx, by2 + dby
    _gilbert(out, x, y, bx2, by2, ax2, ay2)
    _gilbert(out, x + bx2, y + by2, ax, ay, bx - bx2, by - by2)
    _gilbert(out, x + (ax - dax) + (bx2 - dbx), y + (ay - day) + (by2 - dby), -bx2, -by2, -(ax - ax2), -(ay - ay2))
