"""Collisionless-table lookups compiled to the fabric (issue 16): `torch.ops.rdu.hash_find`
through torch.export and torch-mlir (as an external call), `rdu-hash-lookup` to a
`hash_probe` kernel, the emulator's probe equal to `CollisionlessTable.find` / `lookup`
(the eager reference), raw 64-bit IDs never narrowed, probe bytes charged per bucket at the
tier's burst, and the Triton target refusing the kernel by name."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import rdu_compiler
from rdu_compiler.cost.analysis import build_report
from rdu_compiler.dialects import rdu
from rdu_compiler.embedding import CollisionlessTable
from rdu_compiler.embedding.probe import index_array, probe
from rdu_compiler.errors import CompileError, RduError
from rdu_compiler.fabric import load_fabric
from rdu_compiler.frontend.torch.collisionless import (
    CollisionlessEmbedding,
    CollisionlessEmbeddingBag,
)
from rdu_compiler.ir import parse_module
from rdu_compiler.passes.common import kernels
from rdu_compiler.pipeline import pipeline, run_pipeline
from rdu_compiler.runtime.emulator import Emulator

TINY = load_fabric("tiny")


def grown_table(n: int = 300, dim: int = 8, seed: int = 0, **kw: object) -> tuple[CollisionlessTable, np.ndarray]:
    """A table that started at capacity 8, so its index grew (rehashes, cuckoo walks), with
    n raw IDs of every bit pattern (negative int64, above 2^32)."""
    rng = np.random.default_rng(seed)
    table = CollisionlessTable(dim, capacity=8, seed=seed, **kw)  # type: ignore[arg-type]
    ids = np.unique(rng.integers(-(1 << 63), (1 << 63) - 1, size=n, dtype=np.int64, endpoint=True))
    table.assign(ids, rng.standard_normal((len(ids), dim)).astype(np.float32), now=0)
    assert table.grows > 0
    return table, ids


def mixed_ids(present: np.ndarray, n: int, seed: int = 1) -> np.ndarray:
    """n IDs: 3 in 4 present, the rest fresh (absent)."""
    rng = np.random.default_rng(seed)
    fresh = rng.integers(-(1 << 63), (1 << 63) - 1, size=n, dtype=np.int64, endpoint=True)
    return np.where(rng.random(n) < 0.75, present[rng.integers(0, len(present), n)], fresh)


def test_probe_of_the_index_array_equals_table_find() -> None:
    table, ids = grown_table(expiry=10)
    q = mixed_ids(ids, 2000)
    np.testing.assert_array_equal(probe(index_array(table), q), table.find(q))
    # expired entries keep their key in the slot with row -1: the probe must not match them
    table.apply_gradients(ids[:50], np.zeros((50, 8), np.float32), now=100)
    assert table.expire(now=105) == len(ids) - 50
    np.testing.assert_array_equal(probe(index_array(table), q), table.find(q))
    assert (probe(index_array(table), ids[50:]) == -1).all()
    with pytest.raises(ValueError, match="power-of-two"):
        probe(np.zeros((6, 4, 2), np.int64), q)


def test_modules_equal_the_table_eagerly() -> None:
    table, ids = grown_table()
    q = mixed_ids(ids, 64)
    with torch.no_grad():
        got = CollisionlessEmbedding(table)(torch.from_numpy(q)).numpy()
    np.testing.assert_array_equal(got, table.lookup(q))
    offsets = np.array([0, 5, 5, 20, 63])
    for mode in ("sum", "mean", "max"):
        with torch.no_grad():
            bags = CollisionlessEmbeddingBag(table, mode=mode)(torch.from_numpy(q), torch.from_numpy(offsets)).numpy()
        rows = table.lookup(q)
        for b, (s, e) in enumerate(zip(offsets, [*offsets[1:], len(q)], strict=True)):
            want = {"sum": rows[s:e].sum(0), "mean": rows[s:e].mean(0), "max": rows[s:e].max(0)}[mode] if e > s else np.zeros(8)
            np.testing.assert_allclose(bags[b], want, rtol=1e-6, atol=1e-6)


IR = """
func.func @main(%ids: tensor<{n}xi64>, %index: tensor<{b}x4x2xi64>, %rows: tensor<{c}x{d}xf32>) -> tensor<{n}x{d}xf32> {{
  %e0 = tensor.empty() : tensor<{n}xi64>
  %r = linalg.generic {{indexing_maps = [affine_map<(d0) -> (d0)>, affine_map<(d0) -> (0, 0, 0)>, affine_map<(d0) -> (d0)>], iterator_types = ["parallel"], library_call = "{call}"}} ins(%ids, %index : tensor<{n}xi64>, tensor<{b}x4x2xi64>) outs(%e0 : tensor<{n}xi64>) {{
  ^bb0(%a: i64, %x: i64, %o: i64):
    %s = arith.addi %a, %x : i64
    linalg.yield %s : i64
  }} -> tensor<{n}xi64>
  %e = tensor.empty() : tensor<{n}x{d}xf32>
  %g = linalg.generic {{indexing_maps = [affine_map<(i, j) -> (i)>, affine_map<(i, j) -> (i, j)>], iterator_types = ["parallel", "parallel"]}} ins(%r : tensor<{n}xi64>) outs(%e : tensor<{n}x{d}xf32>) {{
  ^bb0(%x: i64, %o: f32):
    %zero = arith.constant 0 : i64
    %miss = arith.cmpi slt, %x, %zero : i64
    %last = arith.constant {last} : i64
    %y = arith.select %miss, %last, %x : i64
    %row = arith.index_cast %y : i64 to index
    %col = linalg.index 1 : index
    %v = tensor.extract %rows[%row, %col] : tensor<{c}x{d}xf32>
    linalg.yield %v : f32
  }} -> tensor<{n}x{d}xf32>
  return %g : tensor<{n}x{d}xf32>
}}
"""


@pytest.mark.parametrize(("n", "resident"), [(20_000, True), (40, False)])
def test_emulated_probe_equals_lookup_and_counts_bucket_bytes(n: int, resident: bool) -> None:
    """The IR the frontend gives (the marker, then the row gather with misses sent to a zero
    row), through the whole pipeline on `tiny`, on the emulator: exactly `table.lookup`.
    20,000 IDs (tiled): the 8 KiB index is faster held in the probe's PMUs (read once
    whole, then 2 x 64 B per ID from 2 PMUs: about 20 us) than probed in tiny's 64 GB/s HBM
    (2.56 MB of buckets: 40 us); 40 IDs: it stays in HBM, 2 buckets x 64 B per ID. The cost model counts what the emulator
    counts, HBM and PMU bytes."""
    table, ids = grown_table()
    q = mixed_ids(ids, n)
    index = index_array(table)
    rows = np.concatenate([table.rows, np.zeros((1, 8), np.float32)])
    module = parse_module(IR.format(n=len(q), b=len(index), c=len(rows), d=8, last=len(rows) - 1, call="rdu_hash_find"))
    run_pipeline(module, pipeline("tiny", 1))
    (probe_k,) = [k for k in kernels(module) if k.kind.data == rdu.Pattern.HASH_PROBE]
    assert (len(probe_k.inputs) == 2) == resident and (not probe_k.captures) == resident
    assert (probe_k.tile_sizes[0] < n) == resident  # 20,000 IDs: tiled
    (out,), stats = Emulator(module, TINY).run([q, index, rows])
    np.testing.assert_array_equal(out, table.lookup(q))
    report = build_report(module, TINY, 1)
    totals = report["totals"]
    assert (totals["hbm_bytes"], totals["ddr_bytes"]) == (stats.hbm_bytes, stats.ddr_bytes)
    gathers = totals["gather_bytes"]["hbm"]
    row_bytes = n * 64  # a 32 B row of 8 fp32 is one 64 B burst
    assert gathers["charged"] == (0 if resident else n * 2 * 64) + row_bytes
    assert totals["kernel_kinds"]["hash_probe"] == 1
    (static_k,) = [k for s in report["sections"] for k in s["kernels"] if k["name"] == probe_k.label]
    (measured,) = [s.pmu_bytes[probe_k.label] for s in stats.sections if probe_k.label in s.pmu_bytes]
    assert static_k["pmu_bytes"] == measured
    if resident:  # the index once, the IDs and row numbers, and the probes' PMU reads
        assert measured == index.nbytes + 2 * 8 * n + n * 2 * 64


def test_other_library_calls_and_bad_types_are_refused() -> None:
    other = IR.format(n=8, b=64, c=9, d=8, last=8, call="host_fn")
    with pytest.raises(CompileError, match="calls library function 'host_fn', which has no rdu lowering"):
        run_pipeline(parse_module(other), pipeline("tiny", 1))
    bad = IR.format(n=8, b=6, c=9, d=8, last=8, call="rdu_hash_find")
    with pytest.raises(CompileError, match=r"is not a hash lookup of N raw int64 IDs.*tensor<Bx4x2xi64>"):
        run_pipeline(parse_module(bad), ["rdu-hash-lookup"])


def test_compiled_module_equals_the_table_with_64_bit_ids() -> None:
    """torch.export + torch-mlir + the pipeline: the compiled lookup equals `table.lookup`
    bitwise, and two IDs equal in their low 32 bits get their own rows (not truncated)."""
    table, ids = grown_table(n=100)
    low = np.int64(0x1234_5678)
    twins = np.array([low, low + (np.int64(1) << 32), low - (np.int64(1) << 40)], dtype=np.int64)
    table.assign(twins, np.arange(24, dtype=np.float32).reshape(3, 8) + 100, now=0)
    q = np.concatenate([twins, mixed_ids(ids, 29)])
    module = CollisionlessEmbedding(table)
    program = rdu_compiler.compile(module, (torch.from_numpy(q),), fabric="sn40l", opt_level=1)
    # the probe sends a miss to the zero row itself (miss_row): a probe, then the row gather
    assert program.report["totals"]["kernel_kinds"] == {"hash_probe": 1, "gather": 1}
    got = program.run(torch.from_numpy(q))
    np.testing.assert_array_equal(np.asarray(got), table.lookup(q))
    assert len({tuple(r) for r in np.asarray(got)[:3]}) == 3  # three different rows


def test_narrow_ids_are_refused() -> None:
    table, ids = grown_table(n=20)
    with pytest.raises(RduError, match="IDs must be int64"):
        rdu_compiler.compile(CollisionlessEmbedding(table), (torch.from_numpy(ids[:8].astype(np.int32)),), fabric="sn40l")


def test_triton_target_refuses_the_hash_probe_by_name() -> None:
    table, ids = grown_table(n=20)
    q = torch.from_numpy(ids[:8])
    program = rdu_compiler.compile(CollisionlessEmbedding(table), (q,), fabric="sn40l", opt_level=1)
    with pytest.raises(RduError, match=r"hash_probe'.*Triton target has no hash_probe kernel"):
        program.run(q, target="triton")


@pytest.mark.parametrize(("tp", "pp"), [(2, 1), (1, 2)])
def test_lookup_under_tensor_and_pipeline_parallelism(tp: int, pp: int) -> None:
    table, ids = grown_table(n=100)
    q = mixed_ids(ids, 32)
    program = rdu_compiler.compile(CollisionlessEmbedding(table), (torch.from_numpy(q),), fabric="sn40l-node8", tp=tp, pp=pp)
    np.testing.assert_array_equal(np.asarray(program.run(torch.from_numpy(q))), table.lookup(q))


class _Counting(np.ndarray):
    """An array that counts the elementwise operations done on it (ufuncs and np.where),
    so the probe's integer-op constants are checked against the code that computes it."""

    ops = 0

    def __array_ufunc__(self, ufunc, method, *inputs, **kw):  # type: ignore[no-untyped-def]
        _Counting.ops += 1
        plain = [np.asarray(x) if isinstance(x, _Counting) else x for x in inputs]
        return getattr(ufunc, method)(*plain, **kw).view(_Counting)

    def __array_function__(self, func, types, args, kwargs):  # type: ignore[no-untyped-def]
        if func is np.where:
            _Counting.ops += 1
        plain = [np.asarray(x) if isinstance(x, _Counting) else x for x in args]
        return np.asarray(func(*plain, **kwargs)).view(_Counting)


def test_probe_int_ops_count_the_code() -> None:
    from rdu_compiler.embedding import probe as p
    from rdu_compiler.embedding.hashing import mix64

    ids = np.arange(5, dtype=np.uint64).view(_Counting)
    _Counting.ops = 0
    mix64(ids, 3)
    assert _Counting.ops == p.MIX64_OPS == 10
    _Counting.ops = 0
    p.candidates(ids, 16)
    assert _Counting.ops == p.CANDIDATE_OPS == 2 * (10 + 1) + 4
    assert p.PROBE_INT_OPS == p.CANDIDATE_OPS + 2 * 4 * 4 == 58


@pytest.mark.parametrize("fabric", ["tiny", "sn40l"])
def test_probe_compute_is_charged_per_id_on_its_pcus(fabric: str) -> None:
    """The probe kernel's compute time: 58 integer ops per ID (two SplitMix64 hashes, masks,
    the equal-candidate fix, 2 buckets x 4 slots of compare, compare, and, select) on its
    PCUs at the integer rate: tiny's `int` entry (96/cycle), sn40l's fp32 fallback (192/cycle);
    linear in the IDs; the kernel's time is the larger of compute and PMU time."""
    spec = load_fabric(fabric)
    table, ids = grown_table()
    index = index_array(table)
    rows = np.concatenate([table.rows, np.zeros((1, 8), np.float32)])
    per_id = []
    for n in (40, 80, 160):
        module = parse_module(IR.format(n=n, b=len(index), c=len(rows), d=8, last=len(rows) - 1, call="rdu_hash_find"))
        run_pipeline(module, pipeline(fabric, 1))
        (probe_k,) = [k for k in kernels(module) if k.kind.data == rdu.Pattern.HASH_PROBE]
        report = build_report(module, spec, 1)
        (load,) = [k for s in report["sections"] for k in s["kernels"] if k["name"] == probe_k.label]
        (cost,) = [k for s in report["sections"] for k in s["cost"]["kernels"] if k["name"] == probe_k.label]
        assert load["int_ops"] == n * 58 and load["flops"] == 0
        rate = {"tiny": 96, "sn40l": 192}[fabric]
        pcus = probe_k.pcus.value.data
        assert cost["compute_s"] == pytest.approx(n * 58 / (pcus * rate * spec.clock_hz), rel=1e-12)
        assert cost["time_s"] == max(cost["compute_s"], cost["pmu_s"])
        per_id.append(cost["compute_s"] * pcus / n)
    assert per_id[0] == pytest.approx(per_id[1]) == pytest.approx(per_id[2])


def _probe_program(n: int, index: np.ndarray, rows: np.ndarray, *, resident_index: bool) -> object:
    module = parse_module(IR.format(n=n, b=len(index), c=len(rows), d=8, last=len(rows) - 1, call="rdu_hash_find"))
    run_pipeline(module, pipeline("tiny", 1, resident_index=resident_index))
    return module


@pytest.mark.parametrize("n", [40, 20_000])
def test_index_resident_across_calls_is_loaded_by_the_first_call_only(n: int) -> None:
    """`resident_index`: the index goes into the probe's PMUs even where the time rule would
    probe it in HBM (40 IDs); per call, the report's HBM and PMU bytes are those of the
    program that loads it every call less the index, its compulsory bytes too; the first
    call's load is the index's bytes at tiny's slowest path (2 AGCUs x 64 B/cycle = 128 GB/s
    against 64 GB/s of HBM: HBM); the emulator, which runs one call, counts per-call bytes +
    the load."""
    table, ids = grown_table()
    q = mixed_ids(ids, n)
    index = index_array(table)
    rows = np.concatenate([table.rows, np.zeros((1, 8), np.float32)])
    module = _probe_program(n, index, rows, resident_index=True)
    (probe_k,) = [k for k in kernels(module) if k.kind.data == rdu.Pattern.HASH_PROBE]
    assert len(probe_k.inputs) == 2 and not probe_k.captures
    (out,), stats = Emulator(module, TINY).run([q, index, rows])
    np.testing.assert_array_equal(out, table.lookup(q))
    report = build_report(module, TINY, 1)
    res = report["resident_index"]
    assert res["first_call_load_bytes"] == {"hbm": index.nbytes, "ddr": 0}
    assert report["totals"]["hbm_bytes"] + index.nbytes == stats.hbm_bytes
    assert res["first_call_load_s"] == pytest.approx(index.nbytes / 64e9, rel=1e-12)
    assert res["first_call_s"] == pytest.approx(report["totals"]["estimated_s"] + res["first_call_load_s"])
    (entry,) = res["indexes"]
    assert (entry["kernel"], entry["bytes"], entry["tier"]) == (probe_k.label, index.nbytes, "hbm")
    (static_k,) = [k for s in report["sections"] for k in s["kernels"] if k["name"] == probe_k.label]
    (measured,) = [s.pmu_bytes[probe_k.label] for s in stats.sections if probe_k.label in s.pmu_bytes]
    assert static_k["pmu_bytes"] + index.nbytes == measured
    if n == 20_000:  # the time rule makes it resident too, loaded every call: exactly the index more
        per_call = build_report(_probe_program(n, index, rows, resident_index=False), TINY, 1)
        assert "resident_index" not in per_call
        assert per_call["totals"]["hbm_bytes"] - report["totals"]["hbm_bytes"] == index.nbytes
        assert per_call["roofline"]["compulsory_bytes"] - report["roofline"]["compulsory_bytes"] == index.nbytes
        section = next(i for i, x in enumerate(report["sections"]) if any(k["name"] == probe_k.label for k in x["kernels"]))
        saved = per_call["sections"][section]["cost"]["hbm_s"] - report["sections"][section]["cost"]["hbm_s"]
        assert saved == pytest.approx(index.nbytes / 64e9, rel=1e-9)
        # the index's buffer took spare PMUs for the probes' 2.56 MB of reads (it needs 1), and
        # the other section gets the fabric's PMUs less those
        assert probe_k.buffers is not None
        assert res["held_pmus"] == probe_k.buffers.data[1].pmus.data > 1
        others = [x for i, x in enumerate(report["sections"]) if i != section]
        assert others and all(sum(k["pmus"] for k in x["kernels"]) <= TINY.num_pmus - res["held_pmus"] for x in others)


def test_resident_index_that_does_not_fit_is_refused() -> None:
    """A 4 MiB index (65,536 buckets) against tiny's buffer (8 PMUs x 16 KiB, halved for
    double buffering): refused by rdu-tile with the sizes and what to do; without
    resident_index the same program compiles, the index probed in its tier."""
    index = np.full((1 << 16, 4, 2), -1, np.int64)
    rows = np.zeros((2, 8), np.float32)
    with pytest.raises(CompileError, match=r"resident_index: its cuckoo index is 4194304 B.*compile without resident_index"):
        _probe_program(40, index, rows, resident_index=True)
    module = _probe_program(40, index, rows, resident_index=False)
    (probe_k,) = [k for k in kernels(module) if k.kind.data == rdu.Pattern.HASH_PROBE]
    assert probe_k.captures


def test_compile_resident_index_option() -> None:
    """`compile(..., resident_index=True)` on sn40l: the report states the assumption and the
    first call's load (the snapshot's index bytes); per call, HBM bytes drop by exactly the
    index against the same module whose index is probed in HBM minus those probes; refused
    with tp > 1."""
    table, ids = grown_table()
    q = torch.from_numpy(mixed_ids(ids, 64))
    module = CollisionlessEmbedding(table)
    program = rdu_compiler.compile(module, (q,), fabric="sn40l", opt_level=1, resident_index=True)
    res = program.report["resident_index"]
    assert res["first_call_load_bytes"]["hbm"] == module.index.numel() * 8
    assert res["assumption"].startswith("each hash probe's index stays in its PMUs")
    np.testing.assert_array_equal(program.run(q).numpy(), table.lookup(q.numpy()))
    with pytest.raises(RduError, match="resident_index with tp = 2"):
        rdu_compiler.compile(module, (q,), fabric="sn40l-node8", tp=2, resident_index=True)


MODEL_PY = '''
import numpy as np
import torch
from rdu_compiler.embedding import CollisionlessTable
from rdu_compiler.frontend.torch.collisionless import CollisionlessEmbedding

rng = np.random.default_rng(0)
table = CollisionlessTable(8, capacity=64, seed=0)
ids = np.unique(rng.integers(-(1 << 62), 1 << 62, size=40, dtype=np.int64))
table.assign(ids, rng.standard_normal((len(ids), 8)).astype(np.float32), now=0)
model = CollisionlessEmbedding(table)
example_inputs = (torch.from_numpy(ids[:16].copy()),)
'''


def test_rdu_compile_resident_index_flag(tmp_path) -> None:
    """`rdu-compile --resident-index`: the report states the assumption and the first call's
    index load; the run still equals the table's lookup (`--check`)."""
    import json

    from rdu_compiler.tools import rdu_compile

    model = tmp_path / "emb.py"
    model.write_text(MODEL_PY)
    out = tmp_path / "out"
    rdu_compile.main([str(model), "--resident-index", "--check", "-o", str(out)])
    report = json.loads((out / "report.json").read_text())
    res = report["resident_index"]
    assert res["assumption"].startswith("each hash probe's index stays in its PMUs")
    assert res["first_call_load_bytes"]["hbm"] > 0
