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

Inputs: ``dense`` (B, 13) float32; ``indices`` (26, B * BAG) int64 (feature f's bags are
row f); ``offsets`` (B,) int64, the start of each sample's bag (shared by all features).
Output: click probabilities (B, 1) float32. B = 16 here.
"""

from __future__ import annotations

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
                 top: tuple[int, ...] = (512, 256, 1), mode: str = "sum", per_sample_weights: bool = False) -> None:
        super().__init__()
        self.bottom = _mlp(bottom)
        self.tables = nn.ModuleList(nn.EmbeddingBag(n, dim, mode=mode) for n in rows)
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


def get_model(batch: int = 16, max_ind_range: int | None = MAX_IND_RANGE, mode: str = "sum",
              per_sample_weights: bool = False) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """The model (seeded random weights) and a batch of `batch` samples with random IDs."""
    torch.manual_seed(0)
    rows = [min(n, max_ind_range) if max_ind_range else n for n in CRITEO_KAGGLE_ROWS]
    model = DLRM(rows, mode=mode, per_sample_weights=per_sample_weights).eval()
    g = torch.Generator().manual_seed(1)
    dense = torch.randn(batch, 13, generator=g)
    indices = torch.stack([torch.randint(0, n, (batch * BAG,), generator=g) for n in rows])
    offsets = torch.arange(0, batch * BAG, BAG)
    inputs: tuple[torch.Tensor, ...] = (dense, indices, offsets)
    if per_sample_weights:
        inputs += (torch.rand(len(rows), batch * BAG, generator=g),)
    return model, inputs
