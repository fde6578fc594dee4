"""The baseline a collisionless table replaces: IDs hashed into a fixed number of rows
(DLRM/MLPerf's `--max-ind-range`, Monolith's MD5 baseline), where distinct IDs may share a
row."""

from __future__ import annotations

from typing import Any

import numpy as np

from rdu_compiler.embedding.hashing import as_ids, mix64, normal_rows
from rdu_compiler.embedding.optim import SGD, Adagrad


class HashedTable:
    """`rows` x `dim` float32 rows; an ID uses row `mix64(id, seed) % rows`.

    Args:
        dim, rows: table shape. optimizer: `SGD` or `Adagrad`. init_std, seed: initial rows
            (N(0, init_std^2), row i a function of (seed, i)).
    """

    def __init__(self, dim: int, rows: int, *, optimizer: SGD | Adagrad | None = None, init_std: float = 0.01, seed: int = 0):
        self.dim, self.seed = dim, seed
        self.optimizer = optimizer or SGD()
        self.rows = normal_rows(np.arange(rows, dtype=np.uint64), dim, init_std, seed)
        self.state = np.full((rows, dim), getattr(self.optimizer, "initial_accumulator_value", 0.0), np.float32) \
            if self.optimizer.state_per_row else None

    def row_of(self, ids: Any) -> np.ndarray:
        """Row numbers (int64) of `ids`."""
        return (mix64(as_ids(ids), self.seed) % np.uint64(len(self.rows))).astype(np.int64)

    def lookup(self, ids: Any) -> np.ndarray:
        """(n, dim) rows: every ID hits some row (a never-seen ID reads another ID's row)."""
        return self.rows[self.row_of(ids)]

    def apply_gradients(self, ids: Any, grads: np.ndarray, now: int = 0) -> None:
        """Sum the gradients per row (colliding IDs add up) and step the touched rows."""
        r = self.row_of(ids)
        unique, inverse = np.unique(r, return_inverse=True)
        summed = np.zeros((len(unique), self.dim), np.float32)
        np.add.at(summed, inverse, np.asarray(grads, np.float32).reshape(len(r), self.dim))
        block = self.rows[unique]
        state = self.state[unique] if self.state is not None else None
        self.optimizer.step(block, summed, state)
        self.rows[unique] = block
        if self.state is not None and state is not None:
            self.state[unique] = state

    def memory_bytes(self) -> dict[str, int]:
        """Bytes: rows, optimizer state, total."""
        parts = {"rows": self.rows.nbytes, "optimizer": self.state.nbytes if self.state is not None else 0}
        return {**parts, "total": sum(parts.values())}


def collision_rate(ids: Any, rows: int, seed: int = 0) -> float:
    """Share of the distinct `ids` that share their row with another distinct ID when
    hashed into `rows` rows (Monolith's collision figure)."""
    unique = np.unique(as_ids(ids))
    r = (mix64(unique, seed) % np.uint64(rows)).astype(np.int64)
    _, inverse, counts = np.unique(r, return_inverse=True, return_counts=True)
    return float((counts[inverse] > 1).mean()) if len(unique) else 0.0


def lookup_collision_rate(ids: Any, rows: int, seed: int = 0) -> float:
    """Share of the lookups in the stream `ids` (repeats count) whose ID shares its row with
    another distinct ID of the stream: how often a read gets a row mixed with another ID's."""
    all_ids = as_ids(ids)
    unique, inverse = np.unique(all_ids, return_inverse=True)
    r = (mix64(unique, seed) % np.uint64(rows)).astype(np.int64)
    _, row_inverse, counts = np.unique(r, return_inverse=True, return_counts=True)
    shared = counts[row_inverse] > 1  # per distinct ID
    return float(shared[inverse].mean()) if len(all_ids) else 0.0
