"""Memory of a collisionless embedding table on a Zipf ID stream, with and without
Monolith's frequency filter and expiry, and the collisions of hashing the same IDs into a
fixed table of the same memory (issue 16).

The stream: `--days` days of `--per-day` lookups each; IDs are drawn from a Zipf(`--zipf`)
law over `--vocab` ranks, and each day a share `--drift` of the ranks is remapped to new
raw IDs (new items appear, old ones go stale), so expiry has something to remove. Every
lookup is also a training write (the ID's row is updated), as in online training.

    python benchmarks/embedding_table.py [--days 8] [--per-day 50000] [--vocab 1000000]
        [--zipf 1.1] [--drift 0.05] [--threshold 3] [--expiry-days 3] [--dim 16] [--filter-cells N] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from rdu_compiler.embedding import CollisionlessTable, CountingFilter
from rdu_compiler.embedding.hashed import collision_rate, lookup_collision_rate

DAY = 86_400  # seconds


def stream(days: int, per_day: int, vocab: int, zipf: float, drift: float, seed: int) -> list[np.ndarray]:
    """Per day, the raw int64 IDs looked up (Zipf ranks mapped through a drifting ID map)."""
    rng = np.random.default_rng(seed)
    id_of_rank = rng.integers(-(2**63), 2**63 - 1, vocab, dtype=np.int64)
    out = []
    for _ in range(days):
        ranks = rng.zipf(zipf, per_day * 2)
        ranks = ranks[ranks <= vocab][:per_day] - 1
        out.append(id_of_rank[ranks])
        moved = rng.random(vocab) < drift
        id_of_rank[moved] = rng.integers(-(2**63), 2**63 - 1, int(moved.sum()), dtype=np.int64)
    return out


def run_table(days: list[np.ndarray], dim: int, threshold: int | None, expiry_days: float | None, cells: int) -> dict:
    admission = CountingFilter(cells, threshold) if threshold else None
    table = CollisionlessTable(dim, capacity=1 << 14, expiry=None if expiry_days is None else expiry_days * DAY,
                               admission=admission)
    t0 = time.perf_counter()
    for d, ids in enumerate(days):
        now = (d + 1) * DAY
        for batch in np.array_split(ids, max(1, len(ids) // 4096)):
            table.apply_gradients(batch, np.zeros((len(batch), dim), np.float32), now)
        table.expire(now)
    mem = table.memory_bytes()
    return {"threshold": threshold, "expiry_days": expiry_days, "ids_stored": len(table), "row_capacity": len(table.rows),
            "live_bytes": table.live_bytes(), "allocated_bytes": mem["total"], "seconds": round(time.perf_counter() - t0, 1),
            "filter_overflows": admission.overflows if admission else 0}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--days", type=int, default=8)
    p.add_argument("--per-day", type=int, default=50_000)
    p.add_argument("--vocab", type=int, default=1_000_000)
    p.add_argument("--zipf", type=float, default=1.1)
    p.add_argument("--drift", type=float, default=0.05)
    p.add_argument("--threshold", type=int, default=3)
    p.add_argument("--expiry-days", type=float, default=3.0)
    p.add_argument("--dim", type=int, default=16)
    p.add_argument("--filter-cells", type=int, default=1 << 18, help="cells of the counting filter (2 B each)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    days = stream(args.days, args.per_day, args.vocab, args.zipf, args.drift, args.seed)
    distinct = len(np.unique(np.concatenate(days)))
    configs = [(None, None), (args.threshold, None), (None, args.expiry_days), (args.threshold, args.expiry_days)]
    results = [run_table(days, args.dim, t, e, args.filter_cells) for t, e in configs]
    base = results[0]
    # a fixed-row table of the same memory as the plain collisionless table needs (live bytes)
    same_memory_rows = base["live_bytes"] // (4 * args.dim)
    everything = np.concatenate(days)
    hashed = {"rows": same_memory_rows, "collision_rate_distinct_ids": collision_rate(everything, same_memory_rows),
              "collision_rate_lookups": lookup_collision_rate(everything, same_memory_rows),
              "rows_for_1pct_collisions": int(distinct / 0.01)}
    print(json.dumps({"stream": {**vars(args), "lookups": sum(map(len, days)), "distinct_ids": distinct},
                      "collisionless": results, "hashed_same_memory": hashed}, indent=2))


if __name__ == "__main__":
    main()
