"""Admission of new IDs into a collisionless table: memory goes to IDs that matter.

Two filters, as Monolith has them (../shared/reference/workloads.md, "Embedding tables"):

- `CountingFilter`: an ID is admitted at its `threshold`-th occurrence. Counts live in a
  counting hash filter of uint16 cells (a 12-bit signature and a 4-bit count, saturating at
  15), found by linear probing over at most `max_probe` (64) cells from the ID's hash. Two IDs
  with the same home cell and signature share a count (the filter's false positives: such an
  ID may be admitted early; never late). An ID that finds neither its cell nor a free one in
  `max_probe` cells is admitted (the filter fails open, and counts it in `overflows`).
- `ProbabilisticFilter`: each occurrence of a not-yet-admitted ID admits it with probability
  `q`, so an ID seen `c` times is in with probability 1 - (1 - q)^c. Seeded, deterministic for
  the same stream.
"""

from __future__ import annotations

import numpy as np

from rdu_compiler.embedding.hashing import mix64

_SIG_BITS = 12
_COUNT_MASK = 0xF


class CountingFilter:
    """Admit an ID at its `threshold`-th occurrence (1 <= threshold <= 15).

    Args:
        cells: number of uint16 cells (memory: 2 bytes each).
        threshold: occurrences needed (Monolith's per-feature occurrence threshold).
        max_probe: cells searched from the home cell (Monolith: 64).
        seed: hash seed.

    Raises:
        ValueError: threshold outside 1..15 (a 4-bit count), or cells < 1.
    """

    def __init__(self, cells: int, threshold: int, max_probe: int = 64, seed: int = 0):
        if not 1 <= threshold <= _COUNT_MASK:
            raise ValueError(f"CountingFilter threshold must be 1..15 (a 4-bit count), got {threshold}")
        if cells < 1:
            raise ValueError(f"CountingFilter needs at least one cell, got {cells}")
        self.cells = np.zeros(cells, dtype=np.uint16)  # 0 = empty; else (signature << 4) | count
        self.threshold, self.max_probe, self.seed = threshold, max_probe, seed
        self.overflows = 0

    @property
    def nbytes(self) -> int:
        """Memory of the filter in bytes."""
        return int(self.cells.nbytes)

    def admit(self, ids: np.ndarray) -> np.ndarray:
        """Count one occurrence of each element of the uint64 array `ids` (in order; repeats
        count each time) and return a bool array: True where that occurrence reaches the
        threshold or the ID was already past it."""
        h = mix64(ids, self.seed)
        home = (h % np.uint64(len(self.cells))).astype(np.int64)
        sig = ((h >> np.uint64(64 - _SIG_BITS)).astype(np.int64) | 1)  # never 0: 0 marks empty
        out = np.zeros(len(ids), dtype=bool)
        n = len(self.cells)
        for i in range(len(ids)):
            for step in range(min(self.max_probe, n)):
                j = (home[i] + step) % n
                cell = int(self.cells[j])
                if cell == 0:
                    self.cells[j] = (sig[i] << 4) | 1
                    out[i] = self.threshold <= 1
                    break
                if cell >> 4 == sig[i]:
                    count = min((cell & _COUNT_MASK) + 1, _COUNT_MASK)
                    self.cells[j] = (sig[i] << 4) | count
                    out[i] = count >= self.threshold
                    break
            else:
                self.overflows += 1
                out[i] = True
        return out


class ProbabilisticFilter:
    """Admit each occurrence of a new ID with probability `q` (0 < q <= 1). Keeps no state
    per ID: memory 0 bytes.

    Raises:
        ValueError: q outside (0, 1].
    """

    def __init__(self, q: float, seed: int = 0):
        if not 0.0 < q <= 1.0:
            raise ValueError(f"ProbabilisticFilter q must be in (0, 1], got {q}")
        self.q = q
        self.rng = np.random.default_rng(seed)
        self.overflows = 0

    nbytes = 0

    def admit(self, ids: np.ndarray) -> np.ndarray:
        """One Bernoulli(q) draw per occurrence in `ids`."""
        return self.rng.random(len(ids)) < self.q
