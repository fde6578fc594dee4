"""Online training, Monolith-style, on the emulator (issue 16).

A small DLRM-shaped click model (bottom MLP on D dense features, F sparse features looked up
in one `CollisionlessTable`, DLRM's pairwise-dot interaction, top MLP, a logit) trained on a
synthetic Zipf stream: each step's forward, loss (BCE), backward and dense Adagrad run as one
program compiled from PyTorch; the table takes the sparse Adagrad update, admits IDs at their
second occurrence and expires IDs not written for `--expiry` steps; a serving copy gets the
touched rows every `--sync-every` steps. At the end the numbers are compared with eager
PyTorch doing the same steps.

    python examples/online_training.py [--steps 20] [--batch 64] [--optimizer adagrad|sgd]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from torch import nn

from rdu_compiler.embedding import SGD, Adagrad, CollisionlessTable, CountingFilter
from rdu_compiler.embedding.hashing import normal_rows
from rdu_compiler.train import EagerOnlineTrainer, OnlineTrainer
from rdu_compiler.train.stream import zipf_stream

FEATURES, DIM, DENSE = 4, 8, 4


class SmallDLRM(nn.Module):
    """bottom D-16-DIM, F rows of DIM, pairwise dots of the F + 1 vectors, top -32-1."""

    def __init__(self, features: int = FEATURES, dim: int = DIM, dense: int = DENSE) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.bottom = nn.Sequential(nn.Linear(dense, 16), nn.ReLU(), nn.Linear(16, dim), nn.ReLU())
        n = features + 1
        li, lj = torch.triu_indices(n, n, offset=1)
        self.register_buffer("li", li, persistent=False)
        self.register_buffer("lj", lj, persistent=False)
        self.top = nn.Sequential(nn.Linear(dim + n * (n - 1) // 2, 32), nn.ReLU(), nn.Linear(32, 1))

    def forward(self, rows: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        """rows (B, F, dim), dense (B, D) -> logits (B,)."""
        x = self.bottom(dense)
        t = torch.cat([x[:, None, :], rows], 1)  # (B, F + 1, dim)
        z = torch.bmm(t, t.transpose(1, 2))
        li, lj = self.get_buffer("li"), self.get_buffer("lj")
        return self.top(torch.cat([x, z[:, li, lj]], 1)).squeeze(1)


def make_table(optimizer: SGD | Adagrad, expiry: int | None, threshold: int) -> CollisionlessTable:
    """The table: dim DIM, Monolith's counting filter (threshold) and expiry (steps)."""
    admission = CountingFilter(1 << 14, threshold=threshold) if threshold > 1 else None
    return CollisionlessTable(DIM, capacity=1024, expiry=expiry, admission=admission, optimizer=optimizer,
                              init_std=0.05, seed=0)


def rel(a: object, b: object) -> float:
    """Relative L2 distance |a - b| / |b| (float64)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def compare(trainer: OnlineTrainer, eager: EagerOnlineTrainer) -> dict[str, float]:
    """Rel L2 of the dense parameters, the table rows (same IDs), the rows' change since
    their initial values (what training wrote), and the losses."""
    ids = eager.ids()
    same_ids = np.array_equal(np.sort(trainer.table.ids()), ids)
    init = normal_rows(ids, trainer.table.dim, trainer.table.init_std, trainer.table.seed)
    got, want = trainer.table.lookup(ids), eager.rows_of(ids)
    return {"same_ids": float(same_ids),
            "dense_rel_l2": max(rel(p, q) for p, q in zip(trainer.params, eager.params(), strict=True)),
            "rows_rel_l2": rel(got, want) if same_ids else float("nan"),
            "row_updates_rel_l2": rel(got - init, want - init) if same_ids else float("nan"),
            "loss_rel_l2": rel([r.loss for r in trainer.history], eager.losses)}


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--optimizer", choices=["adagrad", "sgd"], default="adagrad")
    p.add_argument("--sync-every", type=int, default=5)
    p.add_argument("--expiry", type=int, default=8)
    p.add_argument("--threshold", type=int, default=2)
    a = p.parse_args()
    opt = Adagrad(lr=0.1, initial_accumulator_value=0.1) if a.optimizer == "adagrad" else SGD(lr=0.2)
    table = make_table(opt, a.expiry, a.threshold)
    eager = EagerOnlineTrainer(SmallDLRM(), table, capacity=8192)
    trainer = OnlineTrainer(SmallDLRM(), table, sync_every=a.sync_every)
    for batch in zipf_stream(a.steps, a.batch, FEATURES, DENSE, vocab=5000, seed=1):
        rec = trainer.step(batch)
        eager.step(batch.ids, batch.dense, batch.labels, batch.now)
        print(f"step {rec.step:3d} loss {rec.loss:.5f} (eager {eager.losses[-1]:.5f}) admitted {rec.admitted:3d} "
              f"rejected {rec.rejected:3d} expired {rec.expired:3d} ids {len(table):5d}"
              + (f"  sync {trainer.syncs[-1].rows} rows" if rec.synced else ""))
    syncs = trainer.syncs
    print(json.dumps({"vs_eager": compare(trainer, eager),
                      "sync_row_bytes": [s.row_bytes for s in syncs], "full_copy_row_bytes": [s.full_row_bytes for s in syncs],
                      "dense_bytes_per_sync": syncs[0].dense_bytes if syncs else 0}, indent=1))


if __name__ == "__main__":
    main()
