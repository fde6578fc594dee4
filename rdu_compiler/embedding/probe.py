"""The cuckoo probe of a `CollisionlessTable` over its index laid out as the fabric holds it.

`index_array(table)` is the table's index as one (buckets, SLOTS, 2) int64 array: for each
slot, the ID's 64-bit pattern (as int64) then its row number (-1: an empty slot). A bucket
is SLOTS x 16 B = 64 B contiguous, one burst of HBM/DDR or one PMU line, so a probe of a
bucket is one access (`cost.tiering.BUCKET_BYTES`). `probe(index, ids)` is what the
compiled program's `hash_probe` kernel computes (the emulator runs it): for each ID its
two candidate buckets (SplitMix64 with the table's two seeds, masked to the power-of-two
bucket count; equal candidates move the second to the next bucket), all 2 x SLOTS slots
compared, and the row of the matching, non-empty slot, else -1. Both buckets are read for
every ID (a dataflow pipeline does not branch on the first bucket's outcome), which is
what the cost model charges.

This is the same map as `CollisionlessTable.find` (the eager reference); tests compare
the two on tables grown by cuckoo displacements and rehashes.
"""

from __future__ import annotations

import numpy as np

from rdu_compiler.embedding.hashing import as_ids, mix64
from rdu_compiler.embedding.table import _H1, _H2, SLOTS, CollisionlessTable

#: The two bucket-hash seeds of every `CollisionlessTable` (the kernel's `hash_seeds`).
SEEDS = (_H1, _H2)
#: Probes (buckets read) per ID.
BUCKETS_PER_LOOKUP = 2
#: Bytes of one bucket: SLOTS slots of (ID, row number), 8 B each.
BUCKET_BYTES = SLOTS * 16

# Integer operations per probed ID, counted from the code below (the cost model charges
# them as PCU work, `kernel.traffic.kernel_int_ops`; `test_probe_int_ops_count_the_code`
# counts them by running the code on an op-counting array):
#: `hashing.mix64` per element: 2 adds (`x + seed * GOLDEN + GOLDEN` adds twice; the
#: product is a per-seed constant), 3 shifts, 3 xors, 2 multiplies.
MIX64_OPS = 10
#: `candidates`: BUCKETS_PER_LOOKUP hashes, each masked to the bucket count, then the
#: equal-candidate fix: a compare, an add, a modulo (a mask: B is a power of two), a select.
CANDIDATE_OPS = BUCKETS_PER_LOOKUP * (MIX64_OPS + 1) + 4
#: `probe`'s compares: per slot of both buckets the ID compare, the row >= 0 compare, their
#: and, and a select of the row number (a chain of selects from the miss row).
COMPARE_OPS = BUCKETS_PER_LOOKUP * SLOTS * 4
#: All integer operations of one ID's probe (58).
PROBE_INT_OPS = CANDIDATE_OPS + COMPARE_OPS


def index_array(table: CollisionlessTable) -> np.ndarray:
    """The table's index as a (buckets, SLOTS, 2) int64 array: [..., 0] the ID bits, [..., 1]
    the row number (-1 = empty). A copy: later writes to the table do not change it."""
    out = np.empty((table.buckets, SLOTS, 2), dtype=np.int64)
    out[..., 0] = table._keys.view(np.int64)
    out[..., 1] = table._slot_row
    return out


def candidates(ids: np.ndarray, buckets: int, seeds: tuple[int, int] = SEEDS) -> tuple[np.ndarray, np.ndarray]:
    """The two candidate buckets (int64 arrays) of uint64 `ids` in an index of `buckets`
    (a power of two) buckets."""
    mask = np.uint64(buckets - 1)
    b1 = (mix64(ids, seeds[0]) & mask).astype(np.int64)
    b2 = (mix64(ids, seeds[1]) & mask).astype(np.int64)
    return b1, np.where(b2 == b1, (b1 + 1) % buckets, b2)


def probe(index: np.ndarray, ids: object, seeds: tuple[int, int] = SEEDS) -> np.ndarray:
    """Row numbers (int64, shape (n,)) of the n `ids` (int64 or uint64 bit patterns) in
    `index` ((buckets, SLOTS, 2) int64, as `index_array`), -1 for an absent ID.

    Raises:
        ValueError: `index` is not (buckets, SLOTS, 2) with a power-of-two bucket count.
    """
    index = np.asarray(index)
    b = index.shape[0] if index.ndim == 3 else 0
    if index.ndim != 3 or index.shape[1:] != (SLOTS, 2) or b < 1 or b & (b - 1):
        raise ValueError(f"a cuckoo index is (buckets, {SLOTS}, 2) with a power-of-two bucket count, got {index.shape}")
    keys = as_ids(ids)
    b1, b2 = candidates(keys, b, seeds)
    want = keys.view(np.int64)[:, None]
    out = np.full(len(keys), -1, dtype=np.int64)
    for cand in (b2, b1):  # b1 last: it wins, as in `CollisionlessTable.find`
        slots = index[cand]  # (n, SLOTS, 2)
        hit = (slots[..., 0] == want) & (slots[..., 1] >= 0)
        found = hit.any(axis=1)
        out[found] = slots[found, hit[found].argmax(axis=1), 1]
    return out
