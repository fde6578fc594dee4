"""f32 tile GEMMs through MKL (the copy torch bundles), each on one thread.

`kernel.tile_matmul` multiplies an f32 tile pair with a library sgemm. numpy's `matmul`
calls OpenBLAS (the scipy-openblas 0.3.31 wheel: its SkylakeX kernels on an AVX-512 Xeon).
On an Intel Xeon with AVX-512 (2 cores, one thread, 2026-12-04), GPT-2 small's tile
shapes ran at 137-151 GFLOP/s with OpenBLAS and 168-188 with torch's MKL on hot operands;
in the emulator, where the weights come cold from memory, the tiles ran at 105-132
GFLOP/s with OpenBLAS. GPT-2 small's fp32 forward took 394 ms with OpenBLAS and 305-340 ms
with MKL (docs/benchmarks.md, emulator speed). torch is a dependency already, and
`torch.mm` on an f32 CPU tensor is MKL's `cblas_sgemm` (seen with `MKL_VERBOSE=1`). This
module calls it on zero-copy views of the tile operands (`torch.from_numpy`). It never
sees the model's graph: only the two tiles of one product.

`matmul(a, b)`: a (1, m, k) and b (1, k, n), both f32 numpy arrays (any non-negative
strides; other layouts are copied), returns the (1, m, n) f32 product, or None when MKL
is not used (the caller calls `numpy_matmul`). Batched tiles (the attention's 12 heads)
and products of fewer than `MIN_MACS` multiply-adds stay on OpenBLAS. MKL is used when:

- `RDU_F32_GEMM` is `mkl`, or it is unset and the CPU is an Intel one (`GenuineIntel` in
  /proc/cpuinfo). MKL was not measured on other CPUs, so they keep OpenBLAS.
- torch was built with MKL (`torch.backends.mkl.is_available()`) and exports
  `MKL_Set_Num_Threads_Local`.

`RDU_F32_GEMM=numpy` is the switch back to OpenBLAS.

Numerics: f32 products and sums in MKL's order, as OpenBLAS's are in its own. Both
libraries' bits depend on the tile's shape and on which dim has unit stride (measured on
this CPU; `kernel.tile_matmul` documents the small-k case it handles itself). The two
emulator executors hand over the same layouts, so they get the same bits
(`testsuite/unit/test_emulator_fast.py`). A window of (k, n) rows 4 KiB-multiples apart
(`_aliasing`: a 384-column tile of a 768 x 3072 weight) is copied dense first, a rule on
the layout alone (its tiles ran at 112 GFLOP/s against 149-160 for the other windows;
the forward went from 317-335 to 305-320 ms). MKL's bits did not depend on the operands'
alignment (offsets of 0-16 elements, 294 shapes). They do depend on its thread count: with
2 threads, 26 of 144 shapes differed (k = 3072, or m = 1). So each call runs on one thread
(`MKL_Set_Num_Threads_Local(1)`, restored after the call) and the bits are the same
whatever `OMP_NUM_THREADS` or `torch.set_num_threads` say (`testsuite/unit/test_sgemm.py`).
OpenBLAS's bits did not depend on its thread count either on that Xeon (0 of 144 shapes);
on an AMD EPYC (AVX2, 2026-12-06) a batched (12, 128, 64) @ (12, 64, 128) product differed
between 1 and 2 threads, so there the f32 bits follow `OPENBLAS_NUM_THREADS`.

Threads: with `torch.get_num_threads()` > 1 the prepared executor computes the next tiles'
products on `pool()`'s threads (one MKL thread each) and sums them in tile order. While
MKL is in use the rest of the tile products run on one OpenBLAS thread (`numpy_matmul`):
OpenBLAS's idle threads spin, and took the pool's core (GPT-2 small fp32, 2 threads: 327
ms a forward with OpenBLAS on 2 threads, 237 ms on one; OpenBLAS alone on 2 threads: 262
ms). One thread per call also keeps a forked child safe: a forked child's multi-threaded
`torch.mm` hangs in libgomp once the parent ran one (measured).

Errors: none of its own. A tile operand torch cannot view (negative strides) is copied
first.
"""

from __future__ import annotations

import ctypes
import glob
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

F32 = np.dtype(np.float32)

#: Products below this many multiply-adds (m * n * k) stay on np.matmul: MKL's call through
#: torch costs ~8 us more [measured, one thread: 64 x 128 @ 128 x 128 took 16.2 us with
#: OpenBLAS and 17.6 with MKL; 64 x 256 @ 256 x 256 took 51.8 and 47.9 us].
MIN_MACS = 1 << 22

#: OpenBLAS runs a GEMM of fewer multiply-adds than this on one thread by itself
#: (interface/gemm.c: 65536 * GEMM_MULTITHREAD_THRESHOLD, 4 by default).
OPENBLAS_ONE_THREAD = 1 << 18

_STATE: dict[str, Any] = {}


def _intel_cpu() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("vendor_id"):
                    return "GenuineIntel" in line
    except OSError:
        pass
    return False


def _load() -> tuple[Any, Any] | None:
    """(torch, MKL_Set_Num_Threads_Local) when MKL is used, else None."""
    choice = os.environ.get("RDU_F32_GEMM", "")
    if choice == "numpy" or (choice != "mkl" and not _intel_cpu()):
        return None
    try:
        import torch
    except ImportError:
        return None
    if not torch.backends.mkl.is_available():
        return None
    try:
        lib = ctypes.CDLL(os.path.join(os.path.dirname(torch.__file__), "lib", "libtorch_cpu.so"))
        local = lib.MKL_Set_Num_Threads_Local
    except (OSError, AttributeError):
        return None
    local.restype, local.argtypes = ctypes.c_int, [ctypes.c_int]
    return torch, local


def _mkl() -> tuple[Any, Any] | None:
    if "mkl" not in _STATE:
        _STATE["mkl"] = _load()
    return _STATE["mkl"]


def _openblas_local() -> Any:
    """numpy's OpenBLAS `openblas_set_num_threads_local` (0.3.27+), or None."""
    if "openblas" not in _STATE:
        fn = None
        libs = os.path.join(os.path.dirname(np.__file__), "..", "numpy.libs")
        for path in sorted(glob.glob(os.path.join(libs, "libscipy_openblas*.so"))):
            try:
                fn = ctypes.CDLL(path).openblas_set_num_threads_local
            except (OSError, AttributeError):
                continue
            fn.restype, fn.argtypes = ctypes.c_int, [ctypes.c_int]
            break
        _STATE["openblas"] = fn
    return _STATE["openblas"]


def numpy_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """np.matmul(a, b); on one OpenBLAS thread when MKL takes the large products, so that
    every tile product runs on one thread and OpenBLAS's idle threads do not spin on the
    cores `pool()` uses (the module's docstring has the figures). `kernel.tile_matmul` calls
    np.matmul itself for products OpenBLAS runs on one thread anyway (`OPENBLAS_ONE_THREAD`)."""
    local = _openblas_local() if _mkl() is not None else None
    if local is None:
        return np.matmul(a, b)
    before = local(1)
    try:
        return np.matmul(a, b)
    finally:
        local(before)


def available() -> bool:
    """Whether f32 tile GEMMs go through MKL in this process."""
    return _mkl() is not None


def backend() -> str:
    """What the emulator's f32 GEMMs use: 'mkl sgemm (torch's, one thread)' or 'numpy
    (OpenBLAS) sgemm'."""
    return "mkl sgemm (torch's, one thread)" if available() else "numpy (OpenBLAS) sgemm"


def pool() -> tuple[ThreadPoolExecutor, int] | None:
    """(pool, threads): threads for several tiles' products at once, `torch.get_num_threads()`
    of them, or None when that is 1 or MKL is not used. Each product still runs on one
    thread, so the bits do not depend on how many there are (a new pool per process and
    thread count)."""
    mkl = _mkl()
    if mkl is None:
        return None
    n = mkl[0].get_num_threads()
    if n <= 1:
        return None
    key = (os.getpid(), n)
    if _STATE.get("pool_key") != key:
        _STATE.update(pool_key=key, pool=ThreadPoolExecutor(n, thread_name_prefix="rdu-sgemm"))
    return _STATE["pool"], n


def _tensor(torch: Any, x: np.ndarray) -> Any:
    if min(x.strides, default=0) < 0 or any(s % x.itemsize for s in x.strides):
        x = np.ascontiguousarray(x)
    if x.flags.writeable:
        return torch.from_numpy(x)
    with warnings.catch_warnings():  # a broadcast or mmap'd view: torch warns, and only reads it
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(x)


def takes(batch: int, macs: int) -> bool:
    """Whether a product of `batch` (m, k) @ (k, n) pairs and `macs` = m * k * n
    multiply-adds each is MKL's (one pair, at least `MIN_MACS`), when MKL is used at all."""
    return batch == 1 and macs >= MIN_MACS


def _aliasing(b: np.ndarray) -> bool:
    """Whether b is a (1, k, n) window of rows whose stride is a multiple of 4 KiB."""
    return b.strides[2] == b.itemsize and b.strides[1] % 4096 == 0 and b.strides[1] != b.shape[2] * b.itemsize


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray | None:
    """a (1, m, k) f32 @ b (1, k, n) f32 -> (1, m, n) f32 through MKL on one thread, or
    None if it does not apply (not f32, not one (m, k) @ (k, n) pair, fewer than
    `MIN_MACS` multiply-adds, no MKL: the caller calls `numpy_matmul`)."""
    if a.dtype != F32 or b.dtype != F32 or a.ndim != 3 or b.ndim != 3 or a.shape[0] != b.shape[0] or a.shape[2] != b.shape[1]:
        return None
    if not takes(a.shape[0], a.shape[1] * a.shape[2] * b.shape[2]):
        return None
    mkl = _mkl()
    if mkl is None:
        return None
    torch, local = mkl
    if _aliasing(b):
        b = np.ascontiguousarray(b)
    ta, tb = _tensor(torch, a[0]), _tensor(torch, b[0])
    before = local(1)
    try:
        c = torch.mm(ta, tb)
    finally:
        local(before)
    return c.numpy()[None]
