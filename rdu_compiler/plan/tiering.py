"""Which rows of which embedding tables go to which memory tier (issue 16): plain data in,
rows per tier out, no IR and no costs. Used by `cost.tiering` (the cost model's placement
and its per-tier costs) and by the `rdu-tier-rows` pass (hot rows of each gathered table in
HBM, the rest in DDR).

Placement is greedy by access density, the rule a cache with perfect knowledge of the
access profile would follow: every row's value is its expected lookups per batch divided by
its bytes; the densest rows fill the first tier's budget, the next ones the second's, and so
on. Within a table the rows are ranked by frequency, so each table's hot prefix lands in the
faster tiers. Profiles are either the user's per-row access counts (any order; they are
sorted) or a stated Zipf law: row of rank r (1-based) is looked up with probability
r^-s / H(n, s), H the generalised harmonic number.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np

from rdu_compiler.errors import RduError

__all__ = ["TableProfile", "TieringError", "fill_densest", "harmonic", "place_rows", "zipf_hit_fraction"]


class TieringError(RduError):
    """A table profile or budget the tiering model cannot use."""


@functools.lru_cache(maxsize=4096)
def harmonic(n: int, s: float) -> float:
    """H(n, s) = sum_{k=1..n} k^-s: exact up to 10^6 terms, then Euler-Maclaurin for the tail
    (error below 1e-12 relative for s > 0)."""
    if n <= 0:
        return 0.0
    head = min(n, 1_000_000)
    total = float(np.sum(np.arange(1, head + 1, dtype=np.float64) ** -s))
    if n > head:
        a, b = float(head), float(n)
        integral = math.log(b / a) if s == 1 else (b ** (1 - s) - a ** (1 - s)) / (1 - s)
        total += integral + (b**-s - a**-s) / 2 - s * (b ** (-s - 1) - a ** (-s - 1)) / 12
    return total


def zipf_hit_fraction(k: int, n: int, s: float) -> float:
    """Share of lookups that hit the k most frequent of n rows under Zipf(s): H(k, s) / H(n, s)."""
    return harmonic(min(k, n), s) / harmonic(n, s) if k > 0 else 0.0


@dataclass(frozen=True)
class TableProfile:
    """One embedding table: `rows` rows of `row_bytes` bytes, `lookups` rows read per batch,
    and its access profile: `zipf_s` (a Zipf exponent > 0) or `counts` (per-row access
    counts, any order, length `rows`)."""

    name: str
    rows: int
    row_bytes: int
    lookups: float
    zipf_s: float | None = None
    counts: tuple[float, ...] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.rows < 1 or self.row_bytes < 1 or self.lookups < 0:
            raise TieringError(f"table '{self.name}': rows, row_bytes must be >= 1 and lookups >= 0 (got {self.rows}, {self.row_bytes}, {self.lookups})")
        if (self.zipf_s is None) == (self.counts is None):
            raise TieringError(f"table '{self.name}': give exactly one access profile, zipf_s or counts")
        if self.zipf_s is not None and not self.zipf_s > 0:
            raise TieringError(f"table '{self.name}': zipf_s must be > 0, got {self.zipf_s}")
        if self.counts is not None and (len(self.counts) != self.rows or min(self.counts) < 0 or sum(self.counts) <= 0):
            raise TieringError(f"table '{self.name}': counts must give one non-negative count per row ({self.rows}), not all zero")

    def hit_fraction(self, k: int) -> float:
        """Share of this table's lookups that read its k most frequent rows."""
        if k <= 0:
            return 0.0
        if self.counts is not None:
            c = np.sort(np.asarray(self.counts, dtype=np.float64))[::-1]
            return float(c[: min(k, self.rows)].sum() / c.sum())
        assert self.zipf_s is not None
        return zipf_hit_fraction(k, self.rows, self.zipf_s)

    def rows_at_density(self, theta: float) -> int:
        """How many of its rows have lookups-per-batch per byte >= theta."""
        if self.lookups == 0:
            return 0
        if self.counts is not None:
            c = np.sort(np.asarray(self.counts, dtype=np.float64))[::-1]
            dens = self.lookups * c / c.sum() / self.row_bytes
            return int(np.searchsorted(-dens, -theta * (1 - 1e-9), side="right"))  # ties at theta count
        assert self.zipf_s is not None
        top = self.lookups / harmonic(self.rows, self.zipf_s) / self.row_bytes  # rank 1's density
        if theta <= 0:
            return self.rows
        return min(self.rows, int(math.floor((top / (theta * (1 - 1e-9))) ** (1 / self.zipf_s))))


def fill_densest(tables: list[TableProfile], taken: dict[str, int], budget: int) -> dict[str, int]:
    """Rows per table (beyond `taken`) of the densest rows whose bytes fit `budget`: the
    largest density threshold theta whose rows fit, by bisection on log(theta)."""
    def rows_at(theta: float) -> dict[str, int]:
        return {t.name: max(0, t.rows_at_density(theta) - taken[t.name]) for t in tables}

    def nbytes(sel: dict[str, int]) -> int:
        return sum(sel[t.name] * t.row_bytes for t in tables)

    rest = {t.name: t.rows - taken[t.name] for t in tables}
    if nbytes(rest) <= budget:
        return rest
    lo, hi = 1e-300, max((t.lookups / t.row_bytes for t in tables), default=1.0) * 2  # nbytes(rows_at(hi)) = 0
    for _ in range(200):
        mid = math.sqrt(lo * hi)
        if nbytes(rows_at(mid)) <= budget:
            hi = mid
        else:
            lo = mid
    return rows_at(hi)


def place_rows(tables: list[TableProfile], budgets: list[tuple[str, int]]) -> dict[str, dict[str, int]]:
    """Rows of each table per tier: densest first into each (tier, bytes) budget in order.

    Returns table -> tier -> rows (every tier of `budgets` present); rows that fit no
    budget are left out (the caller checks `sum(rows) == table.rows`)."""
    taken = {t.name: 0 for t in tables}
    rows: dict[str, dict[str, int]] = {t.name: {} for t in tables}
    for tier, budget in budgets:
        sel = fill_densest(tables, taken, budget)
        for t in tables:
            rows[t.name][tier] = sel[t.name]
            taken[t.name] += sel[t.name]
    return rows
