"""f32 tile GEMMs through MKL (`interpreters.sgemm`): the same bits whatever the thread
count, the operands' alignment or their writeability; a forked child still multiplies;
`RDU_F32_GEMM=numpy` switches back to OpenBLAS."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from typing import Any

import numpy as np
import pytest
import torch

from rdu_compiler.interpreters import kernel, sgemm


@pytest.fixture
def mkl(monkeypatch: pytest.MonkeyPatch) -> None:
    """MKL forced on (whatever the CPU's vendor) for products of any size, or the test
    skipped where torch lacks it."""
    monkeypatch.setenv("RDU_F32_GEMM", "mkl")
    monkeypatch.setattr(sgemm, "_STATE", {})
    monkeypatch.setattr(sgemm, "MIN_MACS", 0)
    if not sgemm.available():
        pytest.skip("torch has no MKL with MKL_Set_Num_Threads_Local here")


def _f32(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32)


def test_products_are_f32_sums_of_the_tiles(mkl: None) -> None:
    rng = np.random.default_rng(0)
    for m, k, n in [(128, 768, 384), (1, 3072, 17), (17, 100, 5)]:
        a, b = _f32(rng, 1, m, k), _f32(rng, 1, k, n)
        c = sgemm.matmul(a, b)
        assert c is not None and c.dtype == np.float32 and c.shape == (1, m, n)
        np.testing.assert_allclose(c, a.astype(np.float64) @ b.astype(np.float64), rtol=1e-4, atol=1e-3)
    # not one batch element, not f32, not a (batch, m, k) @ (batch, k, n) pair: np.matmul's
    assert sgemm.matmul(_f32(rng, 2, 8, 16), _f32(rng, 2, 16, 8)) is None
    assert sgemm.matmul(_f32(rng, 1, 8, 16).astype(np.float64), _f32(rng, 1, 16, 8).astype(np.float64)) is None
    assert sgemm.matmul(_f32(rng, 8, 16), _f32(rng, 16, 8)) is None


def test_the_bits_do_not_depend_on_the_thread_count(mkl: None) -> None:
    """MKL's sgemm splits k over threads: plain `torch.mm` on 2 threads changed the bits of
    26 of these 144 shapes on an Intel Xeon (k = 3072, or m = 1). `sgemm.matmul` runs each
    call on one thread."""
    rng = np.random.default_rng(3)
    threads = torch.get_num_threads()
    plain_differs = 0
    try:
        for m, k, n in itertools.product([1, 2, 8, 17, 128, 512], [17, 100, 768, 3072], [1, 5, 17, 64, 384, 3072]):
            a, b = _f32(rng, 1, m, k), _f32(rng, 1, k, n)
            got = []
            for t in (1, 2):
                torch.set_num_threads(t)
                c = sgemm.matmul(a, b)
                assert c is not None
                got.append(c.tobytes())
                plain = torch.mm(torch.from_numpy(a[0]), torch.from_numpy(b[0])).numpy().tobytes()
                if t == 2:
                    plain_differs += plain != got[0]
            assert got[0] == got[1], (m, k, n)
    finally:
        torch.set_num_threads(threads)
    print(f"torch.mm on 2 threads changed {plain_differs} of 144 products")


def test_alignment_writeability_and_negative_strides_keep_the_bits(mkl: None) -> None:
    rng = np.random.default_rng(4)
    a, b = _f32(rng, 1, 17, 3072), _f32(rng, 1, 3072, 64)
    want = sgemm.matmul(a, b)
    assert want is not None
    for off in (1, 3, 8, 16):  # the operands at other offsets from a 64-byte line
        buf_a, buf_b = np.empty(a.size + 64, np.float32), np.empty(b.size + 64, np.float32)
        ao, bo = buf_a[off:off + a.size].reshape(a.shape), buf_b[off:off + b.size].reshape(b.shape)
        ao[...], bo[...] = a, b
        got = sgemm.matmul(ao, bo)
        assert got is not None and got.tobytes() == want.tobytes()
    ro = b.copy()
    ro.flags.writeable = False
    got = sgemm.matmul(a, ro)
    assert got is not None and got.tobytes() == want.tobytes()
    flipped = np.ascontiguousarray(b[:, :, ::-1])[:, :, ::-1]  # the same values, a negative stride
    got = sgemm.matmul(a, flipped)
    assert got is not None and got.tobytes() == want.tobytes()


def test_a_window_with_4k_aliasing_rows_is_multiplied_dense(mkl: None) -> None:
    rng = np.random.default_rng(5)
    w = _f32(rng, 768, 3072)
    window = w[None, :, 384:768]  # rows 12 KiB apart: copied
    assert sgemm._aliasing(window) and not sgemm._aliasing(np.ascontiguousarray(window))
    assert not sgemm._aliasing(_f32(rng, 2304, 768)[None, :, :576])  # 3 KiB apart: read as it is
    a = _f32(rng, 1, 128, 768)
    got, dense = sgemm.matmul(a, window), sgemm.matmul(a, np.ascontiguousarray(window))
    assert got is not None and dense is not None and got.tobytes() == dense.tobytes()


def test_tile_matmul_uses_it_for_f32_tiles_past_small_k(mkl: None) -> None:
    rng = np.random.default_rng(6)
    a, b = _f32(rng, 1, 64, 256), _f32(rng, 1, 256, 96)
    assert kernel.tile_matmul(a, b).tobytes() == sgemm.matmul(a, b).tobytes()  # type: ignore[union-attr]
    small_a, small_b = _f32(rng, 1, 64, kernel.SMALL_K), _f32(rng, 1, kernel.SMALL_K, 96)
    ordered = small_a[..., :, 0:1] * small_b[..., 0:1, :]
    for i in range(1, kernel.SMALL_K):
        ordered = ordered + small_a[..., :, i:i + 1] * small_b[..., i:i + 1, :]
    assert kernel.tile_matmul(small_a, small_b).tobytes() == ordered.tobytes()


def test_small_products_stay_on_numpy(mkl: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sgemm, "MIN_MACS", 1 << 22)
    rng = np.random.default_rng(8)
    assert sgemm.matmul(_f32(rng, 1, 64, 128), _f32(rng, 1, 128, 128)) is None
    assert sgemm.matmul(_f32(rng, 1, 64, 256), _f32(rng, 1, 256, 256)) is not None


def test_openblas_runs_the_rest_on_one_thread_and_restores_its_setting(mkl: None) -> None:
    local = sgemm._openblas_local()
    if local is None:
        pytest.skip("numpy's BLAS here is not scipy-openblas with openblas_set_num_threads_local")
    rng = np.random.default_rng(9)
    a, b = _f32(rng, 12, 128, 64), _f32(rng, 12, 64, 128)  # batched: OpenBLAS's
    before = local(2)
    try:
        got = sgemm.numpy_matmul(a, b)
        assert local(1) == 2  # numpy_matmul put back the 2 threads it found
        one = np.matmul(a, b)  # the product on one OpenBLAS thread (on an AMD EPYC, 2 threads give other bits)
    finally:
        local(before)
    assert got.tobytes() == one.tobytes()


def test_chosen_by_the_cpu_vendor_unless_the_environment_says(monkeypatch: pytest.MonkeyPatch) -> None:
    """MKL was measured on Intel CPUs only: elsewhere OpenBLAS stays, unless RDU_F32_GEMM=mkl."""
    monkeypatch.delenv("RDU_F32_GEMM", raising=False)
    monkeypatch.setattr(sgemm, "_intel_cpu", lambda: False)
    monkeypatch.setattr(sgemm, "_STATE", {})
    assert not sgemm.available()
    monkeypatch.setenv("RDU_F32_GEMM", "mkl")
    monkeypatch.setattr(sgemm, "_STATE", {})
    assert sgemm.available() == torch.backends.mkl.is_available()


def test_switched_off_by_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RDU_F32_GEMM", "numpy")
    monkeypatch.setattr(sgemm, "_STATE", {})
    assert not sgemm.available() and sgemm.backend() == "numpy (OpenBLAS) sgemm"
    rng = np.random.default_rng(7)
    a, b = _f32(rng, 1, 64, 256), _f32(rng, 1, 256, 96)
    assert sgemm.matmul(a, b) is None
    assert kernel.tile_matmul(a, b).tobytes() == np.matmul(a, b).tobytes()


_CHILD = """
import hashlib, multiprocessing as mp
import numpy as np, torch
from rdu_compiler.interpreters import sgemm

def product(seed):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((1, 512, 3072)).astype(np.float32)
    b = rng.standard_normal((1, 3072, 512)).astype(np.float32)
    return hashlib.sha256(sgemm.matmul(a, b).tobytes()).hexdigest()

if __name__ == "__main__":
    torch.set_num_threads(2)
    a = torch.randn(512, 512)
    torch.mm(a, a)  # the parent's own two-thread MKL call: its OpenMP pool exists
    print("parent", product(0))
    with mp.get_context("fork").Pool(2) as pool:
        print("children", *pool.map(product, [0, 0, 1]))
"""


def test_a_forked_child_multiplies_after_its_parent_did(mkl: None, tmp_path: Any) -> None:
    """A forked child's two-thread `torch.mm` hangs in libgomp once the parent ran one
    (measured); `sgemm.matmul`'s one-thread calls return, with the parent's bits."""
    script = tmp_path / "child.py"
    script.write_text(_CHILD)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=True,
                         env={**os.environ, "RDU_F32_GEMM": "mkl"})
    words = out.stdout.split()
    parent, children = words[1], words[3:]
    assert children[0] == parent and children[1] == parent and children[2] != parent


class _TwoGemms(torch.nn.Module):
    """GPT-2's MLP shape: x @ W1 (n-tiled), then @ W2 (k-tiled: k-tile sums in order)."""

    def __init__(self) -> None:
        super().__init__()
        self.w1 = torch.nn.Parameter(torch.randn(768, 3072) / 28)
        self.w2 = torch.nn.Parameter(torch.randn(3072, 768) / 55)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x @ self.w1) @ self.w2


def test_tile_products_on_the_pool_keep_the_general_executors_bits(mkl: None) -> None:
    """With 2 torch threads the prepared executor computes the next tiles' products on
    `sgemm.pool()`'s threads; the sums stay in tile order, so the bits are the general
    executor's and the one-thread run's."""
    import rdu_compiler
    from rdu_compiler.runtime.emulator import Emulator

    torch.manual_seed(0)
    model, x = _TwoGemms(), torch.randn(1, 128, 768)
    program = rdu_compiler.compile(model, (x,), fabric="sn40l")
    args = program._arguments((x,))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert sgemm.pool() is None
        ref, _ = Emulator(program.module, program.fabric, prepared=False).run(args)
        one, _ = Emulator(program.module, program.fabric).run(args)
        torch.set_num_threads(2)
        assert sgemm.pool() is not None
        two, _ = Emulator(program.module, program.fabric).run(args)
    finally:
        torch.set_num_threads(threads)
    for got in (one, two):
        assert [np.asarray(g).tobytes() for g in got] == [np.asarray(r).tobytes() for r in ref]
    with torch.no_grad():
        np.testing.assert_allclose(np.asarray(two[0]), model(x).numpy(), rtol=1e-4, atol=1e-4)
