"""64-bit ID hashing shared by the embedding tables: seeded, vectorised, order-independent.

`mix64` is SplitMix64's finaliser (Steele, Lea and Flood, "Fast splittable pseudorandom
number generators", OOPSLA 2014), applied to whole numpy arrays with wrapping uint64
arithmetic. Raw IDs are any 64-bit integers (int64 or uint64 arrays; negative int64 IDs are
their two's-complement bit patterns).
"""

from __future__ import annotations

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def as_ids(ids: object) -> np.ndarray:
    """`ids` as a 1-D uint64 array of raw 64-bit IDs (bit patterns kept).

    Raises:
        TypeError: `ids` is not an integer array (float IDs would be silently truncated).
    """
    arr = np.asarray(ids)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"embedding IDs must be integers, got dtype {arr.dtype}; pass int64 or uint64 IDs")
    return arr.reshape(-1).astype(np.int64, copy=False).view(np.uint64) if arr.dtype.kind == "i" else arr.reshape(-1).astype(np.uint64)


def mix64(x: np.ndarray, seed: int = 0) -> np.ndarray:
    """SplitMix64 of each element of the uint64 array `x`, with `seed` added first."""
    with np.errstate(over="ignore"):
        z = x + np.uint64(seed) * _GOLDEN + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        return z ^ (z >> np.uint64(31))


def uniform01(ids: np.ndarray, seed: int, k: int) -> np.ndarray:
    """A uniform (0, 1) float64 per ID and stream `k`, a pure function of (seed, id, k)."""
    bits = mix64(mix64(ids, seed) ^ np.uint64(k), seed + 1)
    return ((bits >> np.uint64(11)).astype(np.float64) + 0.5) / float(1 << 53)


def normal_rows(ids: np.ndarray, dim: int, std: float, seed: int) -> np.ndarray:
    """(len(ids), dim) float32 rows of N(0, std^2), each row a pure function of (seed, id):
    the same ID gets the same initial row whatever order or batch it arrives in (Box-Muller
    over `uniform01` streams)."""
    n = len(ids)
    out = np.empty((n, dim), dtype=np.float64)
    for j in range(0, dim, 2):
        u1, u2 = uniform01(ids, seed, j), uniform01(ids, seed, j + 1)
        r = np.sqrt(-2.0 * np.log(u1))
        out[:, j] = r * np.cos(2 * np.pi * u2)
        if j + 1 < dim:
            out[:, j + 1] = r * np.sin(2 * np.pi * u2)
    return (out * std).astype(np.float32)
