"""Does ID identity matter? AUC of a collisionless table against IDs hashed into a fixed
table, after the same online training (issue 16; Monolith's claim: collisionless is better
in AUC from the first epoch [S]).

The task: each raw ID has a hidden preference b_id ~ N(0, 1); an impression of ID i is a
click with probability sigmoid(2 b_i - 1). The model is one embedding row per ID (dim
`--dim`), a shared linear layer and a sigmoid, trained online with Adagrad on a Zipf(`--zipf`)
stream of impressions, one pass in stream order; AUC is measured on the next `--eval`
impressions of the same stream (IDs seen and unseen, as in production). The hashed tables
get the same memory as the collisionless table's live bytes, and a quarter of it.

    python benchmarks/embedding_auc.py [--vocab 200000] [--train 400000] [--eval 100000]
        [--zipf 1.1] [--dim 8] [--batch 1024] [--lr 0.2] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from rdu_compiler.embedding import Adagrad, CollisionlessTable, HashedTable
from rdu_compiler.embedding.hashed import collision_rate


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties)."""
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):  # average ranks over ties
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    pos = labels.astype(bool)
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def train_and_eval(table: CollisionlessTable | HashedTable, ids: np.ndarray, clicks: np.ndarray, n_train: int,
                   dim: int, batch: int, lr: float, seed: int) -> float:
    """One online pass over the first n_train impressions, then the AUC on the rest."""
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal(dim) * 0.1).astype(np.float32)
    c = np.float32(0.0)
    acc_w, acc_c = np.full(dim, 0.1, np.float32), np.float32(0.1)
    for start in range(0, n_train, batch):
        end = min(start + batch, n_train)
        b_ids, y = ids[start:end], clicks[start:end]
        rows = table.lookup(b_ids)
        p = 1 / (1 + np.exp(-(rows @ w + c)))
        g = (p - y).astype(np.float32)  # d BCE / d logit per impression (loss summed over the batch)
        table.apply_gradients(b_ids, g[:, None] * w[None, :], now=start)
        gw, gc = rows.T @ g, g.sum()
        acc_w += gw * gw
        acc_c += gc * gc
        w -= lr * gw / (np.sqrt(acc_w) + 1e-10)
        c -= lr * gc / (np.sqrt(acc_c) + 1e-10)
    rows = table.lookup(ids[n_train:])
    return auc(rows @ w + c, clicks[n_train:])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--vocab", type=int, default=200_000)
    p.add_argument("--train", type=int, default=400_000)
    p.add_argument("--eval", type=int, default=100_000)
    p.add_argument("--zipf", type=float, default=1.1)
    p.add_argument("--dim", type=int, default=8)
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--lr", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    rng = np.random.default_rng(a.seed)
    raw = rng.integers(-(2**63), 2**63 - 1, a.vocab, dtype=np.int64)
    pref = rng.standard_normal(a.vocab)
    n = a.train + a.eval
    ranks = rng.zipf(a.zipf, n * 3)
    ranks = ranks[ranks <= a.vocab][:n] - 1
    ids = raw[ranks]
    clicks = (rng.random(n) < 1 / (1 + np.exp(-(2 * pref[ranks] - 1)))).astype(np.float32)
    results = []
    t0 = time.perf_counter()
    opt = Adagrad(lr=a.lr, initial_accumulator_value=0.1)
    table = CollisionlessTable(a.dim, capacity=1 << 14, optimizer=opt, init_std=0.01, seed=a.seed)
    results.append({"table": "collisionless", "auc": train_and_eval(table, ids, clicks, a.train, a.dim, a.batch, a.lr, a.seed),
                    "ids": len(table), "live_bytes": table.live_bytes(), "seconds": round(time.perf_counter() - t0, 1)})
    live = table.live_bytes()
    for share in (1.0, 0.25):
        rows = int(live * share) // (8 * a.dim)  # fp32 row + fp32 Adagrad state per element
        t0 = time.perf_counter()
        hashed = HashedTable(a.dim, rows, optimizer=opt, init_std=0.01, seed=a.seed)
        results.append({"table": f"hashed, {share:g} x memory", "rows": rows,
                        "auc": train_and_eval(hashed, ids, clicks, a.train, a.dim, a.batch, a.lr, a.seed),
                        "collision_rate_distinct_ids": collision_rate(ids[:a.train], rows),
                        "memory_bytes": hashed.memory_bytes()["total"], "seconds": round(time.perf_counter() - t0, 1)})
    oracle = auc(pref[ranks[a.train:]], clicks[a.train:])  # scoring by the true preference
    print(json.dumps({"args": vars(a), "distinct_ids_train": int(len(np.unique(ids[:a.train]))),
                      "oracle_auc": oracle, "results": results}, indent=2))


if __name__ == "__main__":
    main()
