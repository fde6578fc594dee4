"""A synthetic click stream with Zipf-distributed raw IDs (benchmarks/embedding_auc.py's
task, with F sparse features and D dense ones), for online training.

Each feature f has `vocab` raw 64-bit IDs (random, with f in the top byte, as Monolith's
FIDs carry their slot) and a hidden preference per ID, b ~ N(0, 1); a sample draws one ID
per feature by Zipf(`zipf`) rank and D dense features ~ N(0, 1), and clicks with probability
sigmoid(sum_f b_f / sqrt(F) + 0.5 dense_0 - 1).
"""

from __future__ import annotations

import numpy as np

from rdu_compiler.train.online import Batch


def zipf_stream(steps: int, batch: int, features: int = 2, dense: int = 4, vocab: int = 1000, zipf: float = 1.1,
                seed: int = 0) -> list[Batch]:
    """`steps` mini-batches of `batch` samples: ids (batch, features) int64, dense
    (batch, dense) float32, labels (batch,) float32 0/1, clock now = step index.

    Raises:
        ValueError: steps, batch, features, dense or vocab < 1, or zipf <= 1.
    """
    if min(steps, batch, features, dense, vocab) < 1 or zipf <= 1:
        raise ValueError(f"zipf_stream needs steps, batch, features, dense, vocab >= 1 and zipf > 1; got "
                         f"{steps}, {batch}, {features}, {dense}, {vocab}, {zipf}")
    rng = np.random.default_rng(seed)
    raw = rng.integers(0, 2**56, (features, vocab), dtype=np.int64) | (np.arange(features, dtype=np.int64)[:, None] << 56)
    pref = rng.standard_normal((features, vocab))
    n = steps * batch
    ranks = np.empty((n, features), np.int64)
    for f in range(features):
        r = rng.zipf(zipf, 4 * n + 64)
        r = r[r <= vocab]
        while len(r) < n:  # a heavy tail: draw until enough ranks fall in the vocabulary
            more = rng.zipf(zipf, 4 * n)
            r = np.concatenate([r, more[more <= vocab]])
        ranks[:, f] = r[:n] - 1
    ids = raw[np.arange(features)[None, :], ranks]
    x = rng.standard_normal((n, dense)).astype(np.float32)
    logit = pref[np.arange(features)[None, :], ranks].sum(1) / np.sqrt(features) + 0.5 * x[:, 0] - 1.0
    clicks = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    return [Batch(ids[s * batch:(s + 1) * batch], x[s * batch:(s + 1) * batch], clicks[s * batch:(s + 1) * batch], now=s)
            for s in range(steps)]
