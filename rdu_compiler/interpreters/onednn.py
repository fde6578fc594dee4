"""bf16 x bf16 -> f32 tile GEMMs through oneDNN's matmul primitive (ctypes).

A PCU multiplies bf16 operands and accumulates in f32 (reference/sn40l.md: "BF16 in, FP32
accumulate"). The product of two bf16 values is exact in f32, so the only freedom is the
order of the f32 sums. numpy has no bf16 GEMM: widening both tiles to f32 and calling
OpenBLAS's sgemm was the emulator's only way, and on one core it runs at 57-65 GFLOP/s on
the Llama-2-7B layer's tiles (128 x 1024 @ 1024 x 688, widening included), against
143-176 GFLOP/s for oneDNN's bf16 matmul with an f32 destination on the same tiles
(AMD EPYC with `avx512_bf16`, one thread, 2026-12-03; docs/benchmarks.md, emulator speed).
torch 2.13 bundles oneDNN but on the CPU returns a bf16 result only (`aten::mm.dtype` has
no CPU kernel), which would round every k-tile's partial sum to 8 bits.

`matmul(a, b)`: a (batch, m, k) and b (batch, k, n), both bf16 numpy arrays (any strides),
returns the (batch, m, n) f32 product, or None when oneDNN is not used (the caller widens
and multiplies in f32, `sgemm.matmul` or np.matmul). It is used when:

- the `onednn-cpu-gomp` wheel's `libdnnl.so.3` loads (or `RDU_ONEDNN_LIB` names one);
- oneDNN's effective ISA has native bf16 dot products (`avx512_core_bf16` or AMX); on other
  CPUs oneDNN converts to f32 itself and is no faster than sgemm;
- `RDU_BF16_GEMM` is not `numpy` (the switch back to the widened sgemm).

Numerics, as eager PyTorch's bf16 GEMMs on the same CPU: exact products, f32 sums in
oneDNN's order (for k = 1024, about 80 % of the elements differ from sgemm's in the last
bits; relative difference ~4e-7), and bf16 subnormal inputs read as zero (VDPBF16PS and
TDPBF16PS do not honour subnormals: Intel SDM vol. 2). oneDNN's kernel, and so the bits,
can depend on which inner dim of an operand has unit stride (b as (k, n) rows or as the
transpose of an (n, k) nn.Linear weight: measured, 128 x 768 @ 768 x 768 differs in the last
bits). A transposing copy to one layout costs more than the GEMM (1.4 ms against 0.8 ms
for a 768 x 768 bf16 tile), so it is not made: the two emulator executors hand over the
same layouts and get the same bits (`testsuite/unit/test_emulator_fast.py`,
`test_onednn.py`). On an AMX CPU, when b is (k, n) rows, a strided operand (a window of
a wider tensor) is first copied dense, its unit-stride dim kept (`_dense`: oneDNN's AMX
kernel takes dense operands only). With `avx512_core_bf16` kernels and with AMX ones (measured; oneDNN does
not promise it), neither the leading dimension (a row-major block of a wider tensor or a
contiguous copy) nor the number of rows in the tile changes a row's result, for products
of at least `MIN_MACS` (`testsuite/unit/test_onednn.py`).

Threads: oneDNN runs on OpenMP (the process's libgomp, torch's when torch is loaded) with
`OMP_NUM_THREADS` threads; a forked child uses one (`_one_openmp_thread`: libgomp hangs in
a forked child otherwise). 1 and 2 threads gave the same bytes on every shape tried
(`avx512_core_bf16`, `avx512_core_amx`).

Errors: a oneDNN call that fails after the primitive was made raises `RuntimeError`
naming the call and its status; a problem oneDNN has no fast kernel for (its reference
implementation) returns None instead.
"""

from __future__ import annotations

import ctypes
import os
import threading
from importlib import metadata
from typing import Any

import numpy as np

from rdu_compiler.interpreters.bf16 import BF16

F32 = np.dtype(np.float32)

#: Products below this many multiply-adds (m * n * k * batch) stay on np.matmul: oneDNN's
#: per-call cost (~20 us) makes it slower there [measured: 128 x 64 @ 64 x 64 ran at 47
#: GFLOP/s through oneDNN against 50 widened through sgemm; 128 x 128 @ 128 x 128 at 102
#: against 64].
MIN_MACS = 1 << 20

# oneDNN 3.x C API constants (oneapi/dnnl/dnnl_types.h, dnnl_common_types.h of v3.2).
_CPU_ENGINE = 1
_STREAM_IN_ORDER = 1
_DT_BF16, _DT_F32 = 2, 3
_ARG_SRC, _ARG_WEIGHTS, _ARG_DST = 1, 33, 17
_QUERY_IMPL_INFO_STR = 8
_ISA_AVX512_CORE_BF16 = 0xE7
_ISA_AVX512_CORE_AMX = 0xFEF  # dnnl_cpu_isa_avx512_core_amx: its bits are a superset of the above
_MAX_NDIMS = 12
_CACHE_LIMIT = 512

_vp = ctypes.c_void_p
_Dims = ctypes.c_int64 * _MAX_NDIMS


class _Arg(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_int), ("memory", _vp)]


def _library_path() -> str | None:
    path = os.environ.get("RDU_ONEDNN_LIB")
    if path:
        return path
    try:
        files = metadata.files("onednn-cpu-gomp") or []
    except metadata.PackageNotFoundError:
        return None
    for f in files:
        if f.name.startswith("libdnnl.so"):
            located = f.locate()
            if os.path.exists(located):
                return str(located)
    return None


class _OneDNN:
    """The loaded library, its CPU engine and stream, and the primitives made so far."""

    def __init__(self, lib: ctypes.CDLL):
        self.lib = lib
        lib.dnnl_get_effective_cpu_isa.restype = ctypes.c_int
        self.isa = int(lib.dnnl_get_effective_cpu_isa())
        self.amx = (self.isa & _ISA_AVX512_CORE_AMX) == _ISA_AVX512_CORE_AMX
        self.engine, self.stream = _vp(), _vp()
        self._check("dnnl_engine_create", lib.dnnl_engine_create(ctypes.byref(self.engine), _CPU_ENGINE, ctypes.c_size_t(0)))
        self._check("dnnl_stream_create", lib.dnnl_stream_create(ctypes.byref(self.stream), self.engine, ctypes.c_uint(_STREAM_IN_ORDER)))
        self.local = threading.local()

    @staticmethod
    def _check(call: str, status: int) -> None:
        if status != 0:
            raise RuntimeError(f"oneDNN: {call} failed with status {status} (dnnl_status_t); set RDU_BF16_GEMM=numpy to use the widened sgemm")

    def _md(self, shape: tuple[int, ...], strides: tuple[int, ...], dt: int) -> Any:
        """A memory descriptor, or None if oneDNN refuses these strides."""
        md = _vp()
        status = self.lib.dnnl_memory_desc_create_with_strides(ctypes.byref(md), len(shape), _Dims(*shape), dt, _Dims(*strides))
        return md if status == 0 else None

    def primitive(self, sa: tuple[int, ...], ta: tuple[int, ...], sb: tuple[int, ...], tb: tuple[int, ...]) -> Any:
        """(primitive, memories, args) for this problem in this thread, or False if oneDNN
        would run it on its reference implementation."""
        cache: dict[Any, Any] | None = getattr(self.local, "cache", None)
        if cache is None:
            cache = self.local.cache = {}
        key = (sa, ta, sb, tb)
        hit = cache.get(key)
        if hit is not None:
            return hit
        lib = self.lib
        if len(cache) >= _CACHE_LIMIT:  # this thread's: nothing else holds them
            for old in cache.values():
                if old is not False:
                    lib.dnnl_primitive_destroy(old[0])
                    for mem in old[1]:
                        lib.dnnl_memory_destroy(mem)
            cache.clear()
        sc = (sa[0], sa[1], sb[2])
        tc = (sc[1] * sc[2], sc[2], 1)
        mds = [self._md(sa, ta, _DT_BF16), self._md(sb, tb, _DT_BF16), self._md(sc, tc, _DT_F32)]
        entry: Any = False
        pd = _vp()
        status = -1
        if all(md is not None for md in mds):
            status = lib.dnnl_matmul_primitive_desc_create(ctypes.byref(pd), self.engine, mds[0], mds[1], None, mds[2], None)
        if status == 0:
            impl = ctypes.c_char_p()
            self._check("dnnl_primitive_desc_query", lib.dnnl_primitive_desc_query(pd, _QUERY_IMPL_INFO_STR, 0, ctypes.byref(impl)))
            if not (impl.value or b"ref").startswith(b"ref"):
                prim = _vp()
                self._check("dnnl_primitive_create", lib.dnnl_primitive_create(ctypes.byref(prim), pd))
                mems = []
                for md in mds:
                    mem = _vp()
                    self._check("dnnl_memory_create", lib.dnnl_memory_create(ctypes.byref(mem), md, self.engine, None))
                    mems.append(mem)
                args = (_Arg * 3)(_Arg(_ARG_SRC, mems[0]), _Arg(_ARG_WEIGHTS, mems[1]), _Arg(_ARG_DST, mems[2]))
                entry = (prim, mems, args)
            lib.dnnl_primitive_desc_destroy(pd)
        for md in mds:
            if md is not None:
                lib.dnnl_memory_desc_destroy(md)
        cache[key] = entry
        return entry

    def run(self, entry: Any, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> None:
        prim, mems, args = entry
        lib = self.lib
        for mem, x in zip(mems, (a, b, c), strict=True):
            self._check("dnnl_memory_set_data_handle", lib.dnnl_memory_set_data_handle(mem, _vp(x.ctypes.data)))
        self._check("dnnl_primitive_execute", lib.dnnl_primitive_execute(prim, self.stream, 3, args))
        self._check("dnnl_stream_wait", lib.dnnl_stream_wait(self.stream))


_STATE: dict[str, Any] = {}
_FORKED = [False]


def _after_fork_in_child() -> None:
    _FORKED[0] = True


os.register_at_fork(after_in_child=_after_fork_in_child)


def in_forked_child() -> bool:
    """Whether this process is a forked child (libgomp then needs one thread: `_one_openmp_thread`;
    `bf16_vec` sets torch to one thread for the same reason)."""
    return _FORKED[0]


def _one_openmp_thread() -> None:
    """libgomp is not fork-safe: a forked child whose parent ran an OpenMP parallel region
    (oneDNN here, or torch) hangs in its next one (measured: a `multiprocessing` fork pool
    running a bf16 GEMM after the parent ran one never returned; so does torch's own bf16 mm).
    A forked child therefore runs oneDNN on one thread. The bits did not change with it: the
    same products gave the same bytes on 1 and 2 threads for every shape tried (128 x 1024 @
    1024 x 688 ... 4 x 16384 @ 16384 x 256, `avx512_core_bf16`)."""
    try:
        ctypes.CDLL("libgomp.so.1").omp_set_num_threads(1)
    except (OSError, AttributeError):
        pass


def _onednn() -> _OneDNN | None:
    """The library, loaded once per process; None when it is absent, switched off or has no
    native bf16 on this CPU."""
    pid = os.getpid()
    if _STATE.get("pid") == pid:
        return _STATE["dnnl"]
    dnnl: _OneDNN | None = None
    if _FORKED[0]:
        _one_openmp_thread()
    if os.environ.get("RDU_BF16_GEMM", "onednn") != "numpy":
        path = _library_path()
        if path is not None:
            try:
                dnnl = _OneDNN(ctypes.CDLL(path))
            except (OSError, RuntimeError):
                dnnl = None
            if dnnl is not None and (dnnl.isa & _ISA_AVX512_CORE_BF16) != _ISA_AVX512_CORE_BF16:
                dnnl = None
    _STATE.update(pid=pid, dnnl=dnnl)
    return dnnl


def available() -> bool:
    """Whether bf16 tile GEMMs go through oneDNN in this process."""
    return _onednn() is not None


def backend() -> str:
    """What the emulator's bf16 GEMMs use: 'onednn bf16 (ISA 0x...)' or 'sgemm of
    widened operands'."""
    dnnl = _onednn()
    return f"onednn bf16 (ISA {dnnl.isa:#x})" if dnnl is not None else "sgemm of widened operands"


def _elem_strides(x: np.ndarray) -> tuple[int, ...]:
    """x's strides in elements, a size-1 dim given the dense stride (numpy may give it 0)."""
    st = [s // x.itemsize for s in x.strides]
    for i, n in enumerate(x.shape):
        if n == 1:
            st[i] = max([st[j] * x.shape[j] for j in range(x.ndim) if j != i] + [1])
    return tuple(st)


def _dense(x: np.ndarray, st: tuple[int, ...]) -> np.ndarray:
    """x with no gap between its rows: a window of a wider tensor (a 768-column tile of a
    768 x 3072 weight) copied, its unit-stride inner dim kept (no transposing copy).

    oneDNN 3.2 runs a matmul on its AMX kernel (`brg:avx512_core_amx`) only when both
    operands are dense; a strided window goes to `gemm:jit:bf16` (ONEDNN_VERBOSE=1). On an
    AMX CPU, with b as (k, n) rows (GPT-2's Conv1D weights), the copy and the AMX kernel
    were faster than the window (GPT-2 small bf16's forward in the emulator: 237 -> 221 ms);
    with b the transpose of an (n, k) nn.Linear weight the AMX kernel was slower than the
    window's (0.57 against 0.30 ms for 128 x 1024 @ 1024 x 688; the Llama-2-7B layer's
    forward 165 -> 193 ms), so `matmul` copies only in the first case. Same bits both ways
    on GPT-2 small, the Llama 2-layer example and the 7B layer (Intel Xeon, one thread,
    2026-12-04; docs/benchmarks.md)."""
    if st[2] == 1:
        return np.ascontiguousarray(x)
    t = x.transpose(0, 2, 1)  # (batch, k, n) read as the transpose of a dense (batch, n, k)
    return x if t.flags.c_contiguous else np.ascontiguousarray(t).transpose(0, 2, 1)


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray | None:
    """a (batch, m, k) bf16 @ b (batch, k, n) bf16 -> (batch, m, n) f32 through oneDNN, or
    None if it does not apply (too small, not bf16, no library: the caller widens)."""
    if a.dtype != BF16 or b.dtype != BF16 or a.ndim != 3 or b.ndim != 3:
        return None
    batch, m, k = a.shape
    n = b.shape[2]
    if batch * m * n * k < MIN_MACS or b.shape[0] != batch or b.shape[1] != k:
        return None
    dnnl = _onednn()
    if dnnl is None:
        return None
    # an operand with neither inner dim at unit stride (a strided window, a broadcast) is
    # copied (row-major); a transposing copy is not made: it costs more than the GEMM
    ta = _elem_strides(a)
    if (ta[1] != 1 and ta[2] != 1) or min(ta) <= 0:
        a = np.ascontiguousarray(a)
        ta = _elem_strides(a)
    tb = _elem_strides(b)
    if (tb[1] != 1 and tb[2] != 1) or min(tb) <= 0:
        b = np.ascontiguousarray(b)
        tb = _elem_strides(b)
    if dnnl.amx and tb[2] == 1:  # b as (k, n) rows: dense operands run on the AMX kernel (`_dense`)
        a, b = _dense(a, ta), _dense(b, tb)
        ta, tb = _elem_strides(a), _elem_strides(b)
    entry = dnnl.primitive(a.shape, ta, b.shape, tb)
    if entry is False:
        return None
    c = np.empty((batch, m, n), dtype=F32)
    dnnl.run(entry, a, b, c)
    return c
