"""DLRM at the Criteo-Kaggle shape: 13 dense features, 26 sparse features, embedding dim 16.

Bottom MLP 13-512-256-64-16 (ReLU), 26 ``nn.EmbeddingBag`` tables (one bag of ``BAG``
indices per sample and feature, sum by default, optional per-sample weights), DLRM's
pairwise-dot interaction of the 27 vectors (the 351 dots above the diagonal, concatenated
with the bottom output: 367 features), top MLP 367-512-256-1 (ReLU) and a sigmoid.

Table sizes: the Criteo Kaggle cardinalities DLRM uses (facebookresearch/dlrm
``--arch-embedding-size`` for Kaggle; 4 tables over 5 M rows), capped at ``MAX_IND_RANGE``
rows as DLRM's ``--max-ind-range`` does (IDs hashed into the cap: the collision baseline a
collisionless table replaces, ../shared/reference/workloads.md). The cap keeps the runnable
example at 57,706 rows (3.5 MiB of fp32 tables); `get_model(max_ind_range=None)` under
``with torch.device("meta")`` describes the full model: 33.8 M rows, 2.0 GiB of fp32 tables.

`get_model(collisionless=True)` puts every table behind a ``CollisionlessTable`` (Monolith's
cuckoo hash map over raw 64-bit IDs, rdu_compiler.embedding) through
``CollisionlessEmbeddingBag``: the IDs are then random 64-bit values, not row numbers, each
table holds ``rows`` of them, and a share ``miss_rate`` of the batch's IDs is absent (a zero
row, nothing inserted). It compiles to a hash_probe kernel per table (rdu-hash-lookup).

Inputs: ``dense`` (B, 13) float32; ``indices`` (26, B * BAG) int64 (feature f's bags are
row f); ``offsets`` (B,) int64, the start of each sample's bag (shared by all features).
Output: click probabilities (B, 1) float32. B = 16 here.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

CRITEO_KAGGLE_ROWS = [1460, 583, 10131227, 2202608, 305, 24, 12517, 633, 3, 93145, 5683, 8351593, 3194,
                      27, 14992, 5461306, 10, 5652, 2173, 4, 7046547, 18, 15, 286181, 105, 142572]
MAX_IND_RANGE = 4096
BAG = 2  # indices per sample and feature


def _mlp(sizes: tuple[int, ...], last_relu: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if last_relu or i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class DLRM(nn.Module):
    """Bottom MLP, 26 embedding bags, pairwise-dot interaction, top MLP, sigmoid."""

    def __init__(self, rows: list[int], dim: int = 16, bottom: tuple[int, ...] = (13, 512, 256, 64, 16),
                 top: tuple[int, ...] = (512, 256, 1), mode: str = "sum", per_sample_weights: bool = False,
                 tables: list[nn.Module] | None = None) -> None:
        super().__init__()
        self.bottom = _mlp(bottom)
        self.tables = nn.ModuleList(tables if tables is not None else [nn.EmbeddingBag(n, dim, mode=mode) for n in rows])
        self.per_sample_weights = per_sample_weights
        n = len(rows) + 1
        li, lj = torch.triu_indices(n, n, offset=1)
        self.register_buffer("li", li, persistent=False)
        self.register_buffer("lj", lj, persistent=False)
        self.top = _mlp((n * (n - 1) // 2 + dim, *top), last_relu=False)

    def forward(self, dense: torch.Tensor, indices: torch.Tensor, offsets: torch.Tensor,
                weights: torch.Tensor | None = None) -> torch.Tensor:
        """dense (B, 13), indices (26, B*BAG) int64, offsets (B,) int64[, weights (26, B*BAG)] -> (B, 1)."""
        x = self.bottom(dense)
        embs = [t(indices[f], offsets, per_sample_weights=None if weights is None else weights[f])
                for f, t in enumerate(self.tables)]
        t = torch.stack([x, *embs], dim=1)  # (B, 27, dim)
        z = torch.bmm(t, t.transpose(1, 2))  # (B, 27, 27)
        dots = z[:, self.li, self.lj]  # (B, 351)
        return torch.sigmoid(self.top(torch.cat([x, dots], dim=1)))


def collisionless_tables(rows: list[int], dim: int = 16, seed: int = 0) -> list[Any]:
    """One CollisionlessTable per feature holding rows[f] random raw 64-bit IDs (any bit
    pattern: negative int64 and IDs above 2^32 included) with N(0, 1) rows."""
    from rdu_compiler.embedding import CollisionlessTable

    rng = np.random.default_rng(seed)
    out = []
    for f, n in enumerate(rows):
        table = CollisionlessTable(dim, capacity=n, seed=f)
        ids = np.unique(rng.integers(-(1 << 63), (1 << 63) - 1, size=n, dtype=np.int64, endpoint=True))
        table.assign(ids, rng.standard_normal((len(ids), dim)).astype(np.float32), now=0)
        out.append(table)
    return out


def get_model(batch: int = 16, max_ind_range: int | None = MAX_IND_RANGE, mode: str = "sum",
              per_sample_weights: bool = False, collisionless: bool = False,
              miss_rate: float = 0.25) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """The model (seeded random weights) and a batch of `batch` samples with random IDs.

    `collisionless`: every table is a CollisionlessEmbeddingBag (see the module docstring);
    under ``torch.device("meta")`` the tables are shape-only (capacity rows[f], empty index).
    """
    torch.manual_seed(0)
    rows = [min(n, max_ind_range) if max_ind_range else n for n in CRITEO_KAGGLE_ROWS]
    tables: list[nn.Module] | None = None
    stores: list[Any] = []
    if collisionless:
        from rdu_compiler.frontend.torch.collisionless import CollisionlessEmbeddingBag

        if torch.empty(0).is_meta:
            tables = [CollisionlessEmbeddingBag(mode=mode, dim=16, capacity=n) for n in rows]
        else:
            stores = collisionless_tables(rows)
            tables = [CollisionlessEmbeddingBag(t, mode=mode) for t in stores]
    model = DLRM(rows, mode=mode, per_sample_weights=per_sample_weights, tables=tables).eval()
    g = torch.Generator().manual_seed(1)
    dense = torch.randn(batch, 13, generator=g)
    if stores:  # present IDs, and a share miss_rate of fresh ones (absent: zero rows)
        rng = np.random.default_rng(2)
        cols = []
        for t in stores:
            present = t.ids().view(np.int64)
            pick = present[rng.integers(0, len(present), batch * BAG)]
            fresh = rng.integers(-(1 << 63), (1 << 63) - 1, size=batch * BAG, dtype=np.int64, endpoint=True)
            cols.append(np.where(rng.random(batch * BAG) < miss_rate, fresh, pick))
        indices = torch.from_numpy(np.stack(cols))
    elif collisionless:  # shape-only
        indices = torch.zeros(len(rows), batch * BAG, dtype=torch.int64)
    else:
        indices = torch.stack([torch.randint(0, n, (batch * BAG,), generator=g) for n in rows])
    offsets = torch.arange(0, batch * BAG, BAG)
    inputs: tuple[torch.Tensor, ...] = (dense, indices, offsets)
    if per_sample_weights:
        inputs += (torch.rand(len(rows), batch * BAG, generator=g),)
    return model, inputs
