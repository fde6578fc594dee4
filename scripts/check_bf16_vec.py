"""Exhaustive check of `interpreters/bf16_vec.py` against ml_dtypes (minutes, not a test).

Every pair of bf16 values for add, subtract, multiply and divide, once with both operands
arrays (torch's vector loop) and once with the second a 0-d scalar (torch's scalar-operand
loop); and every f32 bit pattern rounded to bf16. Each result must have ml_dtypes' bits
exactly, NaN payloads included. Prints the number of differing elements per case and
exits 1 if any differ; `testsuite/unit/test_bf16_vec.py` checks a sample of the same
cases in CI.

    OMP_NUM_THREADS=1 python scripts/check_bf16_vec.py [--ops add,subtract,multiply,divide] [--no-cast]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from rdu_compiler.interpreters import bf16_vec
from rdu_compiler.interpreters.bf16 import BF16, all_values

OPS = {"add": np.add, "subtract": np.subtract, "multiply": np.multiply, "divide": np.divide}


def check_op(uf: np.ufunc, block: int = 512) -> tuple[int, int]:
    """(differences with array operands, differences with a scalar second operand)."""
    x = all_values()[:, None]
    bad_array = bad_scalar = 0
    with np.errstate(all="ignore"):
        for start in range(0, 1 << 16, block):
            y = all_values()[None, start:start + block]
            got = bf16_vec.binary(uf, x, y)
            assert got is not None
            bad_array += int(np.count_nonzero(got.view(np.uint16) != uf(x, y).view(np.uint16)))
        xs = all_values()
        for v in all_values():
            got = bf16_vec.binary(uf, xs, v)
            assert got is not None
            bad_scalar += int(np.count_nonzero(got.view(np.uint16) != uf(xs, v).view(np.uint16)))
    return bad_array, bad_scalar


def check_cast(chunk: int = 1 << 24) -> int:
    bad = 0
    for start in range(0, 1 << 32, chunk):
        x = np.arange(start, start + chunk, dtype=np.uint64).astype(np.uint32).view(np.float32)
        got = bf16_vec.to_bf16(x)
        assert got is not None
        with np.errstate(all="ignore"):
            bad += int(np.count_nonzero(got.view(np.uint16) != x.astype(BF16).view(np.uint16)))
    return bad


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ops", default=",".join(OPS))
    ap.add_argument("--no-cast", action="store_true")
    args = ap.parse_args()
    if not bf16_vec.available():
        print("bf16_vec is switched off (RDU_BF16_ELEMENTWISE=numpy): nothing to check")
        return 1
    failed = False
    for name in args.ops.split(","):
        t = time.perf_counter()
        arr, sca = check_op(OPS[name])
        print(f"{name}: 2^32 pairs, array operands {arr} differ, scalar operand {sca} differ ({time.perf_counter() - t:.0f} s)")
        failed |= bool(arr or sca)
    if not args.no_cast:
        t = time.perf_counter()
        bad = check_cast()
        print(f"f32 -> bf16: 2^32 bit patterns, {bad} differ ({time.perf_counter() - t:.0f} s)")
        failed |= bool(bad)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
