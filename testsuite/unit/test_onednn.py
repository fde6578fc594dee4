"""bf16 tile GEMMs through oneDNN (`interpreters.onednn`): exact products summed in f32, the
same bits whatever the operands' layout or the tile's height, used by both executors."""

from __future__ import annotations

import platform
from typing import Any

import ml_dtypes
import numpy as np
import pytest
import torch

import rdu_compiler
from rdu_compiler.interpreters import kernel, onednn
from rdu_compiler.runtime.emulator import Emulator

BF16 = np.dtype(ml_dtypes.bfloat16)


def _cpu_has_bf16() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


needs_onednn = pytest.mark.skipif(not onednn.available(), reason=f"bf16 GEMMs use {onednn.backend()} here")


def _measured_isa() -> bool:
    dnnl = onednn._onednn()
    return dnnl is not None and dnnl.isa in (onednn._ISA_AVX512_CORE_BF16, onednn._ISA_AVX512_CORE_AMX)


#: Properties of oneDNN's kernels measured on `avx512_core_bf16` (AMD EPYC, 2026-12-03) and on
#: `avx512_core_amx` (Intel Xeon, 2026-12-04; operands made dense, `onednn._dense`), not
#: guaranteed by oneDNN: other ISAs' kernels (and tail handling) differ and were not measured.
measured_on_avx512_bf16 = pytest.mark.skipif(not _measured_isa(), reason="measured on avx512_core_bf16 and avx512_core_amx only")


def _bf16(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.standard_normal(shape).astype(BF16)


def test_loaded_where_the_cpu_has_native_bf16() -> None:
    """The locked wheel must load on x86_64 Linux CPUs with bf16 dot products: a missing or
    unloadable library would only make the emulator slower, so it is checked here."""
    if platform.system() != "Linux" or platform.machine() != "x86_64" or not _cpu_has_bf16():
        pytest.skip("oneDNN's bf16 kernels need avx512_bf16 or AMX on x86_64 Linux")
    assert onednn.available(), onednn.backend()
    assert onednn.backend().startswith("onednn")


@needs_onednn
@pytest.mark.parametrize(("batch", "m", "k", "n"), [(1, 128, 1024, 688), (12, 128, 64, 128), (1, 7, 4096, 300)])
def test_exact_products_summed_in_f32(batch: int, m: int, k: int, n: int) -> None:
    rng = np.random.default_rng(batch * 1000 + k)
    a, b = _bf16(rng, batch, m, k), _bf16(rng, batch, k, n)
    c = onednn.matmul(a, b)
    assert c is not None and c.dtype == np.float32 and c.shape == (batch, m, n)
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    exact = np.matmul(a64, b64)
    bound = k * np.finfo(np.float32).eps * np.matmul(np.abs(a64), np.abs(b64))  # f32 summation, any order
    assert np.all(np.abs(c - exact) <= bound)
    widened = np.matmul(a.astype(np.float32), b.astype(np.float32))
    assert np.max(np.abs(c - widened)) <= 1e-5 * np.max(np.abs(widened))


@measured_on_avx512_bf16
@pytest.mark.parametrize("weight_layout", ["linear", "conv1d"])
def test_rows_do_not_depend_on_the_tile_height_or_the_leading_dimension(weight_layout: str) -> None:
    """nn.Linear's weight (n, k) read transposed, or GPT-2 Conv1D's (k, n) read as it is."""
    rng = np.random.default_rng(7)
    x = _bf16(rng, 256, 4096)
    if weight_layout == "linear":
        b = _bf16(rng, 1024, 4096)[None, :, :1024].transpose(0, 2, 1)
    else:
        b = _bf16(rng, 1024, 4096)[None, :, :1024]
    a = x[None, :, :1024]
    ref = onednn.matmul(a, b)
    assert ref is not None
    bits = ref.tobytes()
    contiguous_b = np.ascontiguousarray(b.transpose(0, 2, 1)).transpose(0, 2, 1) if weight_layout == "linear" else np.ascontiguousarray(b)
    for aa, bb in [(np.ascontiguousarray(a), b), (a, contiguous_b), (np.ascontiguousarray(a), contiguous_b)]:
        got = onednn.matmul(aa, bb)
        assert got is not None and got.tobytes() == bits
    for rows in (128, 8):
        part = onednn.matmul(a[:, :rows], b)
        assert part is not None and np.array_equal(part, ref[:, :rows])


@needs_onednn
def test_an_operand_without_a_unit_stride_is_copied_row_major() -> None:
    rng = np.random.default_rng(3)
    a = _bf16(rng, 1, 128, 2048)[:, :, ::2]  # every other column: no inner dim at unit stride
    b = _bf16(rng, 1, 1024, 512)
    got = onednn.matmul(a, b)
    want = onednn.matmul(np.ascontiguousarray(a), b)
    assert got is not None and want is not None and got.tobytes() == want.tobytes()


def test_refused_below_the_threshold_and_for_other_dtypes() -> None:
    rng = np.random.default_rng(0)
    small = _bf16(rng, 1, 16, 16)
    assert onednn.matmul(small, small) is None
    a32 = rng.standard_normal((1, 128, 1024)).astype(np.float32)
    b32 = rng.standard_normal((1, 1024, 1024)).astype(np.float32)
    assert onednn.matmul(a32, b32) is None
    assert onednn.matmul(a32.astype(BF16), b32) is None
    # tile_matmul: mixed operands widen, and the result is the widened product's
    got = kernel.tile_matmul(a32.astype(BF16), b32, np.dtype(np.float32))
    assert np.array_equal(got, kernel.tile_matmul(a32.astype(BF16).astype(np.float32), b32))


def test_switched_off_by_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RDU_BF16_GEMM", "numpy")
    monkeypatch.setattr(onednn, "_STATE", {})
    assert not onednn.available()
    assert onednn.backend() == "sgemm of widened operands"
    rng = np.random.default_rng(1)
    a, b = _bf16(rng, 1, 128, 1024), _bf16(rng, 1, 1024, 512)
    assert onednn.matmul(a, b) is None
    got = kernel.tile_matmul(a, b, np.dtype(np.float32))
    assert np.array_equal(got, kernel.tile_matmul(a.astype(np.float32), b.astype(np.float32)))


class _Conv1DStyle(torch.nn.Module):
    """GPT-2's Conv1D: `x @ W` with W stored (in, out), read as it is (not transposed)."""

    def __init__(self) -> None:
        super().__init__()
        self.w1 = torch.nn.Parameter(torch.randn(1024, 1536) / 32)
        self.w2 = torch.nn.Parameter(torch.randn(1536, 1024) / 40)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.gelu(x @ self.w1) @ self.w2


def _linear_style() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(1024, 1536), torch.nn.GELU(), torch.nn.Linear(1536, 1024))


@needs_onednn
@pytest.mark.parametrize("build", [_linear_style, _Conv1DStyle], ids=["linear", "conv1d"])
def test_a_bf16_mlp_runs_through_onednn_in_both_executors(monkeypatch: pytest.MonkeyPatch, build: Any) -> None:
    """A bf16 MLP big enough for oneDNN, with nn.Linear's (out, in) weights or Conv1D's
    (in, out): both executors call it, agree bitwise, and agree with eager bf16 to bf16's
    rounding."""
    calls: list[tuple[int, ...]] = []
    real = onednn.matmul

    def counting(a: np.ndarray, b: np.ndarray) -> np.ndarray | None:
        c = real(a, b)
        if c is not None:
            calls.append(a.shape + b.shape[2:])
        return c

    monkeypatch.setattr(onednn, "matmul", counting)
    torch.manual_seed(0)
    model = build().to(torch.bfloat16)
    x = torch.randn(128, 1024, dtype=torch.bfloat16)
    program = rdu_compiler.compile(model, (x,), fabric="sn40l")
    args = program._arguments((x,))
    general, _ = Emulator(program.module, program.fabric, prepared=False).run(args)
    n_general = len(calls)
    prepared, _ = Emulator(program.module, program.fabric).run(args)
    # the prepared run: the same products, and on its first run the whole domain of each
    # product tiled in m or n only (`kernel_fast._merge`)
    assert n_general > 0 and len(calls) - n_general >= n_general
    for g, p in zip(general, prepared, strict=True):
        assert g.dtype == p.dtype and g.tobytes() == p.tobytes()
    with torch.no_grad():
        ref = model(x).float().numpy()
    out = np.asarray(prepared[0], dtype=np.float32).reshape(ref.shape)
    assert np.max(np.abs(out - ref)) <= 0.05 * np.max(np.abs(ref))


@needs_onednn
def test_primitives_past_the_cache_limit_are_destroyed_and_made_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(onednn, "_CACHE_LIMIT", 3)
    rng = np.random.default_rng(5)
    a = _bf16(rng, 1, 128, 1024)
    for _ in range(2):
        for n in range(200, 208):
            b = _bf16(rng, 1, 1024, n)
            c = onednn.matmul(a, b)
            assert c is not None
            np.testing.assert_allclose(c, np.matmul(a.astype(np.float32), b.astype(np.float32)), rtol=1e-5, atol=1e-3)
    dnnl = onednn._onednn()
    assert dnnl is not None and len(dnnl.local.cache) <= 3


_CHILD = """
import hashlib, multiprocessing as mp, sys
import ml_dtypes, numpy as np
from rdu_compiler.interpreters import onednn

def product(seed):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((1, 128, 1024)).astype(ml_dtypes.bfloat16)
    b = rng.standard_normal((1, 1024, 688)).astype(ml_dtypes.bfloat16)
    return hashlib.sha256(onednn.matmul(a, b).tobytes()).hexdigest()

if __name__ == "__main__":
    print("parent", product(0))
    if sys.argv[1] == "fork":
        with mp.get_context("fork").Pool(2) as pool:
            print("children", *pool.map(product, [0, 0, 1]))
"""


def _run_child(tmp_path: Any, mode: str, threads: int) -> list[str]:
    import os
    import subprocess
    import sys

    script = tmp_path / "child.py"
    script.write_text(_CHILD)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    out = subprocess.run([sys.executable, str(script), mode], capture_output=True, text=True, timeout=120, env=env, check=True)
    return out.stdout.split()


@needs_onednn
def test_a_forked_child_multiplies_after_its_parent_did(tmp_path: Any) -> None:
    """libgomp is not fork-safe: without `_one_openmp_thread` the pool below never returns
    once the parent has run a two-thread GEMM."""
    words = _run_child(tmp_path, "fork", threads=2)
    parent, children = words[1], words[3:]
    assert children[0] == parent and children[1] == parent and children[2] != parent


@measured_on_avx512_bf16
def test_the_bits_do_not_depend_on_the_thread_count(tmp_path: Any) -> None:
    assert _run_child(tmp_path, "one", threads=1) == _run_child(tmp_path, "one", threads=2)


def test_dense_copies_a_window_keeping_its_unit_stride_dim() -> None:
    rng = np.random.default_rng(11)
    w = _bf16(rng, 768, 3072)
    rows = w[None, :, 768:1536]  # (k, n) rows with a gap: copied row-major
    got = onednn._dense(rows, onednn._elem_strides(rows))
    assert got.flags.c_contiguous and np.array_equal(got.view(np.uint16), rows.view(np.uint16))
    t = w[None, :512, :768].transpose(0, 2, 1)  # the transpose of an (n, k) window: copied as (n, k) rows
    got = onednn._dense(t, onednn._elem_strides(t))
    assert got.transpose(0, 2, 1).flags.c_contiguous and np.array_equal(got.view(np.uint16), t.view(np.uint16))
    whole = np.ascontiguousarray(t.transpose(0, 2, 1)).transpose(0, 2, 1)  # already dense: not copied
    assert onednn._dense(whole, onednn._elem_strides(whole)) is whole


def _mlp_program(build: Any) -> tuple[Any, list[np.ndarray]]:
    """A bf16 MLP on 128 x 1024 inputs for sn40l, and its arguments: its first product is
    (128, 768, 1024) tiles of (128, 1536, 1024)."""
    torch.manual_seed(0)
    model = build().to(torch.bfloat16)
    x = torch.randn(128, 1024, dtype=torch.bfloat16)
    program = rdu_compiler.compile(model, (x,), fabric="sn40l")
    return program, program._arguments((x,))


@needs_onednn
@pytest.mark.parametrize("build", [_linear_style, _Conv1DStyle], ids=["linear", "conv1d"])
def test_a_contraction_tiled_only_in_parallel_dims_runs_whole_once_the_bits_agree(build: Any) -> None:
    """A bf16 product tiled over its parallel dims only: its first run computes the tiles
    and the whole domain and keeps the whole-domain way if the bits agree (`_merge`); every
    later run has the general executor's bits and stats."""
    program, args = _mlp_program(build)
    ref, ref_stats = Emulator(program.module, program.fabric, prepared=False).run(args)
    prepared = Emulator(program.module, program.fabric)
    for _ in range(3):
        out, stats = prepared.run(args)
        for g, p in zip(ref, out, strict=True):
            assert g.dtype == p.dtype and g.tobytes() == p.tobytes()
        assert [s.tiles for s in stats.sections] == [s.tiles for s in ref_stats.sections]
        assert [s.hbm_bytes for s in stats.sections] == [s.hbm_bytes for s in ref_stats.sections]
    # whether this CPU's oneDNN gives the first product's 768-column tiles the whole
    # product's bits (measured so on AMX; not promised): the merge follows it
    rng = np.random.default_rng(3)
    a = rng.standard_normal((1, 128, 1024)).astype(ml_dtypes.bfloat16)
    w = rng.standard_normal((1536, 1024) if build is _linear_style else (1024, 1536)).astype(ml_dtypes.bfloat16)
    b = (w.T if build is _linear_style else w)[None]
    whole = onednn.matmul(a, b)
    assert whole is not None
    same = all(np.array_equal(onednn.matmul(a, b[:, :, s:s + 768]).view(np.uint32), whole[:, :, s:s + 768].view(np.uint32))  # type: ignore[union-attr]
               for s in (0, 768))
    first = [bool(p.merged) for ex in prepared.executors.values() if tuple(ex.domain) == (128, 1536, 1024) for p in ex._plans.values()]  # type: ignore[attr-defined]
    assert first == [same]
    # weights in another layout than the check saw (column-major): the tiles' way again, the same bits
    other = [np.asfortranarray(x) if isinstance(x, np.ndarray) and x.ndim == 2 and x.shape != (128, 1024) else x for x in args]
    assert any(o is not x for o, x in zip(other, args, strict=True))
    want, _ = Emulator(program.module, program.fabric, prepared=False).run(other)
    got, _ = prepared.run(other)
    for g, p in zip(want, got, strict=True):
        assert g.tobytes() == p.tobytes()


@needs_onednn
def test_a_whole_domain_product_with_other_bits_is_not_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    """If the whole-domain GEMM's bits differ from the tiles' (here: one element nudged
    by one ulp in every product wider than a tile), the tiles stay the way."""
    program, args = _mlp_program(_Conv1DStyle)
    ref, _ = Emulator(program.module, program.fabric, prepared=False).run(args)
    real = onednn.matmul
    prepared = Emulator(program.module, program.fabric)
    # (m, n) of each tiled product's whole domain (m, n, k)
    whole = {tuple(ex.domain[:2]) for ex in prepared.executors.values() if ex.contraction is not None and ex.tile != ex.domain}
    assert whole

    def nudged(a: np.ndarray, b: np.ndarray) -> np.ndarray | None:
        c = real(a, b)
        if c is not None and (a.shape[1], b.shape[2]) in whole:
            c.reshape(-1)[0] = np.nextafter(c.reshape(-1)[0], np.float32(np.inf))
        return c

    monkeypatch.setattr(onednn, "matmul", nudged)
    for _ in range(2):
        out, _ = prepared.run(args)
        for g, p in zip(ref, out, strict=True):
            assert g.tobytes() == p.tobytes()
    plans = [p.merged for ex in prepared.executors.values() for p in getattr(ex, "_plans", {}).values()]
    assert False in plans and not any(plans)
