"""A collisionless embedding table: raw 64-bit IDs to rows through a cuckoo hash map
(Monolith's table, ../shared/reference/workloads.md "Embedding tables" [P, code]).

Layout (what a lookup touches, for the cost model and the tiers):

- the **index**: `buckets` x 4 slots; a slot holds an ID (uint64) and its row number
  (int64, -1 = empty). An ID lives in one of two candidate buckets, `h1(id)` or `h2(id)`
  (SplitMix64 with two seeds), so a lookup probes at most 8 slots and a present ID is never
  confused with another: no collisions, unlike hashing IDs into a fixed number of rows.
- the **row store**: `rows` (capacity x dim float32), each row's last-write timestamp
  `stamps` (int64, the caller's clock) and optimizer state (`Adagrad`: one float per
  element). Rows never move; cuckoo displacement moves only index slots.

Semantics (Monolith's):
- `lookup(ids)`: rows of present IDs; a miss returns a zero row and inserts nothing.
- `apply_gradients(ids, grads, now)`: gradients of equal IDs are summed (HashReduce), present
  rows take one optimizer step; an absent ID is inserted only if the admission filter admits
  it (`CountingFilter`: at its threshold-th occurrence; `ProbabilisticFilter`), with its
  initial row (N(0, init_std^2), a pure function of (seed, id)), then takes the step. Every
  written row is stamped `now`.
- `assign(ids, rows, now)`: upsert given values (restores, serving sync); no admission.
- `expire(now)`: removes IDs whose last write is older than `expiry` (Monolith evicts rows
  older than a per-feature expiry).
- `save(path)` / `CollisionlessTable.load(path)`: a safetensors file, exact round trip.

Insertion: a free slot in either bucket, else a random walk of cuckoo displacements (up to
MAX_KICKS); when the walk fails the index doubles its buckets and rehashes (libcuckoo grows
the same way), up to `max_rows` rows, beyond which `TableFullError` is raised.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from rdu_compiler.embedding.admission import CountingFilter, ProbabilisticFilter
from rdu_compiler.embedding.hashing import as_ids, mix64, normal_rows
from rdu_compiler.embedding.optim import SGD, Adagrad
from rdu_compiler.errors import RduError

SLOTS = 4  # slots per bucket (Monolith / libcuckoo)
MAX_KICKS = 500  # cuckoo displacements tried before the index grows
_H1, _H2 = 0x51ED270B, 0x2545F491  # seeds of the two bucket hashes (any two distinct values)


class TableFullError(RduError):
    """The table holds `max_rows` IDs and cannot admit another."""


class CollisionlessTable:
    """A cuckoo-hash embedding table from raw 64-bit IDs to `dim`-wide float32 rows.

    Args:
        dim: row width (elements).
        capacity: rows to allocate up front (the index gets enough buckets for them at
            a load factor of at most 1/2; it grows on demand).
        max_rows: most IDs the table may hold (None: unbounded).
        expiry: seconds (in the caller's clock) after its last write that an ID is
            removed by `expire`; None: never.
        admission: a `CountingFilter`, a `ProbabilisticFilter`, or None (admit all).
        optimizer: `SGD` or `Adagrad` (state kept per row).
        init_std: standard deviation of initial rows.
        seed: seeds the initial rows and the cuckoo walk.

    Raises:
        ValueError: dim or capacity < 1.
    """

    def __init__(self, dim: int, capacity: int = 1024, *, max_rows: int | None = None, expiry: float | None = None,
                 admission: CountingFilter | ProbabilisticFilter | None = None, optimizer: SGD | Adagrad | None = None,
                 init_std: float = 0.01, seed: int = 0):
        if dim < 1 or capacity < 1:
            raise ValueError(f"CollisionlessTable needs dim >= 1 and capacity >= 1, got dim={dim}, capacity={capacity}")
        self.dim, self.max_rows, self.expiry, self.init_std, self.seed = dim, max_rows, expiry, init_std, seed
        self.admission = admission
        self.optimizer = optimizer or SGD()
        buckets = 1 << max(0, math.ceil(math.log2(max(1, 2 * capacity / SLOTS))))
        self._keys = np.zeros((buckets, SLOTS), dtype=np.uint64)
        self._slot_row = np.full((buckets, SLOTS), -1, dtype=np.int64)
        self.rows = np.zeros((capacity, dim), dtype=np.float32)
        self.stamps = np.zeros(capacity, dtype=np.int64)
        self.row_ids = np.zeros(capacity, dtype=np.uint64)
        self.state = np.zeros((capacity, dim), dtype=np.float32) if self.optimizer.state_per_row else None
        self._free: list[int] = list(range(capacity - 1, -1, -1))
        self._rng = np.random.default_rng(seed)
        self.grows = 0

    # ------------------------------------------------------------------ index
    def __len__(self) -> int:
        return int((self._slot_row >= 0).sum())

    @property
    def buckets(self) -> int:
        """Buckets of the index (each SLOTS slots)."""
        return len(self._keys)

    def _candidates(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mask = np.uint64(self.buckets - 1)
        b1 = (mix64(ids, _H1) & mask).astype(np.int64)
        b2 = (mix64(ids, _H2) & mask).astype(np.int64)
        return b1, np.where(b2 == b1, (b1 + 1) % self.buckets, b2)  # two distinct buckets

    def find(self, ids: Any) -> np.ndarray:
        """Row numbers of `ids` (any integer array), -1 where absent. Shape (n,)."""
        ids = as_ids(ids)
        b1, b2 = self._candidates(ids)
        out = np.full(len(ids), -1, dtype=np.int64)
        for b in (b2, b1):  # b1 last: it wins (an ID is in only one of them anyway)
            rows, keys = self._slot_row[b], self._keys[b]
            hit = (keys == ids[:, None]) & (rows >= 0)
            found = hit.any(axis=1)
            out[found] = rows[found, hit[found].argmax(axis=1)]
        return out

    def _place(self, key: np.uint64, row: int) -> tuple[np.uint64, int] | None:
        """Put (key, row) into the index; return a displaced entry if the walk failed."""
        b1, b2 = (int(b[0]) for b in self._candidates(np.array([key], dtype=np.uint64)))
        for b in (b1, b2):
            free = np.flatnonzero(self._slot_row[b] < 0)
            if len(free):
                self._keys[b, free[0]], self._slot_row[b, free[0]] = key, row
                return None
        b = b1 if self._rng.random() < 0.5 else b2
        for _ in range(MAX_KICKS):
            s = int(self._rng.integers(SLOTS))
            evicted = (self._keys[b, s], int(self._slot_row[b, s]))
            self._keys[b, s], self._slot_row[b, s] = key, row
            key, row = evicted
            c1, c2 = (int(x[0]) for x in self._candidates(np.array([key], dtype=np.uint64)))
            b = c2 if b == c1 else c1
            free = np.flatnonzero(self._slot_row[b] < 0)
            if len(free):
                self._keys[b, free[0]], self._slot_row[b, free[0]] = key, row
                return None
        return key, row

    def _grow_index(self, homeless: tuple[np.uint64, int]) -> None:
        entries: list[tuple[np.uint64, int]] = [
            (np.uint64(self._keys[b, s]), int(self._slot_row[b, s])) for b, s in zip(*np.nonzero(self._slot_row >= 0), strict=True)]
        entries.append(homeless)
        buckets = self.buckets * 2
        while True:
            self._keys = np.zeros((buckets, SLOTS), dtype=np.uint64)
            self._slot_row = np.full((buckets, SLOTS), -1, dtype=np.int64)
            self.grows += 1
            if all(self._place(k, r) is None for k, r in entries):
                return
            buckets *= 2

    def _new_row(self) -> int:
        if not self._free:  # `_insert` checked max_rows before writing anything
            old = len(self.rows)
            new = old * 2 if self.max_rows is None else min(old * 2, self.max_rows)
            self.rows = np.concatenate([self.rows, np.zeros((new - old, self.dim), np.float32)])
            self.stamps = np.concatenate([self.stamps, np.zeros(new - old, np.int64)])
            self.row_ids = np.concatenate([self.row_ids, np.zeros(new - old, np.uint64)])
            if self.state is not None:
                self.state = np.concatenate([self.state, np.zeros((new - old, self.dim), np.float32)])
            self._free = list(range(new - 1, old - 1, -1))
        return self._free.pop()

    def _insert(self, ids: np.ndarray) -> np.ndarray:
        """Insert absent `ids` (unique), with initial rows: their row numbers."""
        if self.max_rows is not None and len(self) + len(ids) > self.max_rows:  # refuse before writing
            raise TableFullError(
                f"embedding table full: {len(self)} IDs + {len(ids)} new > max_rows={self.max_rows}; raise max_rows, "
                "set an expiry and call expire(now), or admit fewer IDs (a CountingFilter threshold)")
        rows = np.empty(len(ids), dtype=np.int64)
        init = normal_rows(ids, self.dim, self.init_std, self.seed)
        for i, key in enumerate(ids):
            r = self._new_row()
            rows[i] = r
            self.rows[r], self.row_ids[r] = init[i], key
            if self.state is not None:
                self.state[r] = getattr(self.optimizer, "initial_accumulator_value", 0.0)
            homeless = self._place(key, r)
            if homeless is not None:
                self._grow_index(homeless)
        return rows

    # ------------------------------------------------------------------ public
    def lookup(self, ids: Any) -> np.ndarray:
        """Rows of `ids` (shape (n, dim) float32; any integer array, flattened); zeros for an
        absent ID, which is not inserted."""
        r = self.find(ids)
        out = np.zeros((len(r), self.dim), dtype=np.float32)
        out[r >= 0] = self.rows[r[r >= 0]]
        return out

    def apply_gradients(self, ids: Any, grads: np.ndarray, now: int) -> dict[str, int]:
        """One sparse training step: `grads` (n, dim) for the n occurrences in `ids`.

        Returns counts: `updated` (present IDs stepped), `admitted` (new IDs inserted and
        stepped), `rejected` (new IDs the filter kept out, their gradient dropped).

        Raises:
            ValueError: grads is not (len(ids), dim).
            TableFullError: an admitted ID does not fit in `max_rows`.
        """
        ids = as_ids(ids)
        grads = np.asarray(grads, dtype=np.float32).reshape(len(ids), -1) if len(ids) else np.zeros((0, self.dim), np.float32)
        if grads.shape != (len(ids), self.dim):
            raise ValueError(f"apply_gradients: grads must be ({len(ids)}, {self.dim}), got {grads.shape}")
        unique, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
        summed = np.zeros((len(unique), self.dim), dtype=np.float32)
        np.add.at(summed, inverse, grads)  # HashReduce: equal IDs combined
        rows = self.find(unique)
        absent = rows < 0
        admitted = np.zeros(len(unique), dtype=bool)
        if absent.any():
            if self.admission is None:
                admitted = absent.copy()
            else:  # every occurrence of an absent ID counts, in stream order
                occ = np.flatnonzero(absent[inverse])
                ok = self.admission.admit(ids[occ])
                admitted[np.unique(inverse[occ[ok]])] = True
                admitted &= absent
            rows[admitted] = self._insert(unique[admitted])
        step = rows >= 0
        r = rows[step]
        block, state = self.rows[r], (self.state[r] if self.state is not None else None)
        self.optimizer.step(block, summed[step], state)
        self.rows[r] = block
        if self.state is not None and state is not None:
            self.state[r] = state
        self.stamps[r] = now
        return {"updated": int((step & ~admitted).sum()), "admitted": int(admitted.sum()),
                "rejected": int((absent & ~admitted).sum())}

    def assign(self, ids: Any, rows: np.ndarray, now: int) -> None:
        """Upsert `rows` ((n, dim)) for unique `ids`, stamped `now`; no admission filter."""
        ids = as_ids(ids)
        rows = np.asarray(rows, dtype=np.float32).reshape(len(ids), self.dim)
        if len(np.unique(ids)) != len(ids):
            raise ValueError("assign: ids must be unique (which of two rows for one ID would win?)")
        where = self.find(ids)
        where[where < 0] = self._insert(ids[where < 0])
        self.rows[where], self.stamps[where] = rows, now

    def expire(self, now: int) -> int:
        """Remove IDs last written more than `expiry` before `now`; return how many."""
        if self.expiry is None:
            return 0
        b, s = np.nonzero(self._slot_row >= 0)
        r = self._slot_row[b, s]
        old = (now - self.stamps[r]) > self.expiry
        self._slot_row[b[old], s[old]] = -1
        self._free.extend(int(x) for x in r[old])
        return int(old.sum())

    def ids(self) -> np.ndarray:
        """The IDs present (uint64, index order)."""
        return self._keys[self._slot_row >= 0]

    def touched_since(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids, rows) written at or after time `t`: what a serving copy must receive."""
        r = self._slot_row[self._slot_row >= 0]
        r = r[self.stamps[r] >= t]
        return self.row_ids[r], self.rows[r]

    def memory_bytes(self) -> dict[str, int]:
        """Bytes by part: index (keys + row numbers), rows, stamps, optimizer state,
        admission filter, and their total."""
        parts = {"index": self._keys.nbytes + self._slot_row.nbytes, "rows": self.rows.nbytes,
                 "stamps": self.stamps.nbytes + self.row_ids.nbytes,
                 "optimizer": self.state.nbytes if self.state is not None else 0,
                 "filter": int(self.admission.nbytes) if self.admission is not None else 0}
        return {**parts, "total": sum(parts.values())}

    def live_bytes(self) -> int:
        """Bytes the present IDs need at full load: per ID a row (dim x 4 B), an index slot
        (16 B), a stamp and its ID (16 B), optimizer state; plus the admission filter. The
        allocated `memory_bytes` is larger by the free slots and rows kept for growth."""
        per_id = self.dim * 4 + 16 + 16 + (self.dim * 4 if self.state is not None else 0)
        return len(self) * per_id + (int(self.admission.nbytes) if self.admission is not None else 0)

    def save(self, path: str | Path) -> None:
        """Write the present IDs with their rows, stamps and optimizer state (safetensors)."""
        from safetensors.numpy import save_file

        r = self._slot_row[self._slot_row >= 0]
        tensors = {"ids": self.row_ids[r].view(np.int64), "rows": self.rows[r], "stamps": self.stamps[r]}
        if self.state is not None:
            tensors["state"] = self.state[r]
        opt = self.optimizer
        meta = {"dim": self.dim, "max_rows": self.max_rows, "expiry": self.expiry, "init_std": self.init_std,
                "seed": self.seed, "optimizer": type(opt).__name__, "optimizer_args": {k: v for k, v in vars(opt).items()}}
        save_file(tensors, str(path), metadata={"rdu_embedding_table": json.dumps(meta, sort_keys=True)})

    @classmethod
    def load(cls, path: str | Path, admission: CountingFilter | ProbabilisticFilter | None = None) -> CollisionlessTable:
        """A table read back from `save` (the admission filter is not saved: pass one).

        Raises:
            ValueError: the file was not written by `save`.
        """
        from safetensors import safe_open

        with safe_open(str(path), "np") as f:
            raw = (f.metadata() or {}).get("rdu_embedding_table")
            if raw is None:
                raise ValueError(f"{path}: not a saved CollisionlessTable (no rdu_embedding_table metadata)")
            t = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no __iter__
        meta = json.loads(raw)
        opt = {"SGD": SGD, "Adagrad": Adagrad}[meta["optimizer"]](**meta["optimizer_args"])
        table = cls(meta["dim"], max(1, len(t["ids"])), max_rows=meta["max_rows"], expiry=meta["expiry"],
                    admission=admission, optimizer=opt, init_std=meta["init_std"], seed=meta["seed"])
        ids = t["ids"].view(np.uint64)
        if len(ids):
            where = table._insert(ids)
            table.rows[where], table.stamps[where] = t["rows"], t["stamps"]
            if table.state is not None:
                table.state[where] = t["state"]
        return table
