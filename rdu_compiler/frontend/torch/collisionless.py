"""PyTorch modules over a `CollisionlessTable` that compile to the fabric (issue 16).

```python
from rdu_compiler.embedding import CollisionlessTable
from rdu_compiler.frontend.torch.collisionless import CollisionlessEmbeddingBag

table = CollisionlessTable(dim=16, capacity=4096)          # filled by training, or loaded
bag = CollisionlessEmbeddingBag(table, mode="sum")         # a snapshot of its index and rows
out = bag(ids, offsets)                                    # (bags, 16): misses are zero rows
```

The lookup is the custom op `torch.ops.rdu.hash_find(ids, index, miss_row)` (`torch.library`): raw
int64 IDs (any 64-bit pattern; never narrowed) and the table's cuckoo index as a
(buckets, 4, 2) int64 buffer (`embedding.probe.index_array`) give each ID's row number, -1
when absent, or the given `miss_row`. Eagerly it runs `embedding.probe.probe` (the same map
as `CollisionlessTable.find`). The module sends misses to a zero row appended after the
table's rows (`miss_row`) and reads the rows with `F.embedding_bag` / `F.embedding`, so a miss reads
zeros and inserts nothing, exactly `table.lookup`, and sum / mean / max and per-sample
weights of a bag treat a miss as a zero row, as a bag over `table.lookup(ids)` does.

Compiling: torch.export keeps the custom op as a node; torch-mlir's FX importer makes it
an opaque `torch.operator`, which torch-mlir cannot lower to linalg. `custom_ops.carry`
rewrites it into a call of an external function before torch-mlir's pipelines (a
`func.call` of builtin tensors passes them untouched), and `rdu-hash-lookup` lowers that
call to a `hash_probe` kernel (`dialects/rdu/ops.py`). The rows are gathered by the
ordinary gather / EmbeddingBag kernels, from the tier `rdu-allocate` gives the table.

The modules hold a snapshot: after the table changes (training writes, `expire`), call
`refresh()` before compiling or running again.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - PyTorch's own spelling
from torch import nn

from rdu_compiler.embedding.probe import index_array, probe
from rdu_compiler.embedding.table import SLOTS, CollisionlessTable
from rdu_compiler.frontend.errors import FrontendError

__all__ = ["CollisionlessEmbedding", "CollisionlessEmbeddingBag", "hash_find"]


@torch.library.custom_op("rdu::hash_find", mutates_args=())
def hash_find(ids: torch.Tensor, index: torch.Tensor, miss_row: int = -1) -> torch.Tensor:
    """Row numbers (int64, ids' shape) of raw int64 `ids` in a cuckoo `index`
    ((buckets, 4, 2) int64), `miss_row` where absent (`embedding.probe.probe`; -1 by
    default, as `CollisionlessTable.find`). `miss_row` must be a constant of the model."""
    rows = probe(index.detach().cpu().numpy(), ids.detach().cpu().numpy().reshape(-1))
    rows[rows < 0] = miss_row
    return torch.from_numpy(rows.reshape(tuple(ids.shape))).to(ids.device)


@hash_find.register_fake
def _hash_find_fake(ids: torch.Tensor, index: torch.Tensor, miss_row: int = -1) -> torch.Tensor:
    return torch.empty_like(ids)


def _check_ids(ids: torch.Tensor, where: str) -> None:
    if ids.dtype != torch.int64:
        raise FrontendError(
            f"{where}: IDs must be int64 tensors (raw 64-bit IDs), got {ids.dtype}; a narrower dtype would have "
            "truncated them before the model saw them, so cast the raw IDs with .long() where they are read"
        )


class _Snapshot(nn.Module):
    """The buffers both modules share: `index` (buckets, 4, 2) int64 and `weight`
    (capacity + 1, dim) float32, whose last row is zeros (what a miss reads)."""

    def __init__(self, table: CollisionlessTable | None, dim: int | None, capacity: int | None, buckets: int | None,
                 hot_first: tuple[Any, Any] | None = None):
        super().__init__()
        self.table = table
        self.hot_first = hot_first
        if table is not None:
            index = index_array(table)
            rows = table.rows
            if hot_first is not None:
                order = hot_first_order(table, *hot_first)
                new_of_old = np.empty_like(order)
                new_of_old[order] = np.arange(len(order))
                index[..., 1] = np.where(index[..., 1] >= 0, new_of_old[np.maximum(index[..., 1], 0)], -1)
                rows = rows[order]
            index = torch.from_numpy(index)
            weight = torch.from_numpy(np.concatenate([rows, np.zeros((1, table.dim), np.float32)]))
        else:
            if dim is None or capacity is None:
                raise ValueError("give a CollisionlessTable, or dim and capacity for a shape-only module")
            b = buckets or 1 << max(0, int(np.ceil(np.log2(max(1, 2 * capacity / SLOTS)))))
            index = torch.full((b, SLOTS, 2), -1, dtype=torch.int64)
            weight = torch.zeros(capacity + 1, dim)
        self.register_buffer("index", index)
        self.register_buffer("weight", weight)

    @property
    def miss_row(self) -> int:
        return int(self.weight.shape[0]) - 1

    def refresh(self) -> None:
        """Copy the table's current index and rows into the buffers (after it changed)."""
        if self.table is None:
            raise ValueError("a shape-only module has no table to refresh from")
        fresh = _Snapshot(self.table, None, None, None, self.hot_first)
        self.index, self.weight = fresh.index, fresh.weight

    def rows_of(self, ids: torch.Tensor) -> torch.Tensor:
        _check_ids(ids, type(self).__name__)
        return hash_find(ids.reshape(-1), self.index, self.miss_row).reshape(ids.shape)


def hot_first_order(table: CollisionlessTable, ids: Any, counts: Any) -> np.ndarray:
    """The snapshot's row order for a hot-first numbering: order[new_row] = the table's row
    number, rows sorted by the access count of their ID (most first; `ids` (n,) int64 and
    `counts` (n,) of an access profile; IDs absent from the table are ignored, rows with no
    count keep their order after the counted ones), so that rows [0, H) of the snapshot are
    its H most frequent IDs (what `rdu-tier-rows` keeps in HBM).

    Raises:
        ValueError: ids and counts of different lengths, or negative counts.
    """
    ids, counts = np.asarray(ids, dtype=np.int64).reshape(-1), np.asarray(counts, dtype=np.float64).reshape(-1)
    if ids.shape != counts.shape or (counts < 0).any():
        raise ValueError(f"hot_first: give one non-negative count per ID ({ids.size} IDs, {counts.size} counts)")
    per_row = np.zeros(len(table.rows), dtype=np.float64)
    rows = table.find(ids)
    np.add.at(per_row, rows[rows >= 0], counts[rows >= 0])
    return np.argsort(-per_row, kind="stable")


class CollisionlessEmbedding(_Snapshot):
    """`nn.Embedding` over a CollisionlessTable: ids (any shape, int64) -> (*ids.shape, dim),
    zeros for absent IDs.

    Args:
        table: the table (snapshot taken now; `refresh()` after it changes), or None with
            `dim` and `capacity` (and optionally `buckets`) for a shape-only module (an empty
            table; build it under `torch.device("meta")` for cost-model compiles).
        hot_first: (ids, counts), an access profile: the snapshot numbers its rows by count,
            most frequent first (`hot_first_order`), so that `rdu-tier-rows` finds the hot
            rows at [0, H); lookups return the same rows either way.
    """

    def __init__(self, table: CollisionlessTable | None = None, *, dim: int | None = None, capacity: int | None = None,
                 buckets: int | None = None, hot_first: tuple[Any, Any] | None = None):
        super().__init__(table, dim, capacity, buckets, hot_first)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(self.rows_of(ids), self.weight)


class CollisionlessEmbeddingBag(_Snapshot):
    """`nn.EmbeddingBag` over a CollisionlessTable: `forward(ids, offsets,
    per_sample_weights=None)` with 1-d int64 `ids` (N,) and `offsets` (B,) -> (B, dim);
    `mode` "sum", "mean" or "max"; an absent ID is a zero row of its bag.

    Args: as `CollisionlessEmbedding`, plus `mode`.
    """

    def __init__(self, table: CollisionlessTable | None = None, *, mode: str = "sum", dim: int | None = None,
                 capacity: int | None = None, buckets: int | None = None, hot_first: tuple[Any, Any] | None = None):
        super().__init__(table, dim, capacity, buckets, hot_first)
        self.mode = mode

    def forward(self, ids: torch.Tensor, offsets: torch.Tensor, per_sample_weights: Any = None) -> torch.Tensor:
        return F.embedding_bag(self.rows_of(ids), self.weight, offsets, mode=self.mode, per_sample_weights=per_sample_weights)
