"""The emulator on small hand-written linalg modules, compared with numpy.

Each module goes through the whole -O1 pipeline for the tiny fabric (8 PCUs, 8 PMUs of
16 KiB), so kernels larger than a few KiB are tiled, and then runs on `Emulator`. The
tests cover tiled contractions (reduction-dim accumulation), reductions, the C semantics
of integer division, float comparison predicates with NaN, gathers and their bounds
check, refusal of payload ops without a rule and of broken capacity rules, and hex float
constants. The static traffic of the cost model must equal the bytes measured.
"""

from __future__ import annotations

import numpy as np
import pytest
from xdsl.dialects.builtin import DenseArrayBase, ModuleOp, i64

from rdu_compiler.cost.analysis import build_report
from rdu_compiler.errors import CompileError, EmulatorError
from rdu_compiler.fabric import load_fabric
from rdu_compiler.ir import parse_module
from rdu_compiler.passes.common import kernels
from rdu_compiler.pipeline import pipeline, run_pipeline
from rdu_compiler.runtime.emulator import Emulator, EmulatorStats

TINY = load_fabric("tiny")


def compile_text(text: str, fabric: str = "tiny", opt_level: int = 1) -> ModuleOp:
    module = parse_module(text)
    run_pipeline(module, pipeline(fabric, opt_level))
    return module


def emulate(text: str, *args: np.ndarray, opt_level: int = 1) -> tuple[list[np.ndarray], EmulatorStats, ModuleOp]:
    """Compile `text` for tiny, run it on `args`, and check static == measured traffic."""
    module = compile_text(text, "tiny", opt_level)
    outputs, stats = Emulator(module, TINY).run(list(args))
    totals = build_report(module, TINY, opt_level)["totals"]
    assert (totals["hbm_bytes"], totals["ddr_bytes"]) == (stats.hbm_bytes, stats.ddr_bytes)
    return outputs, stats, module


def elementwise(op_line: str, in_types: list[str], out_type: str, n: int) -> str:
    """A 1-D linalg.generic over `n` points whose payload is `op_line` (computing %q)."""
    args = ", ".join(f"%a{i}: tensor<{n}x{t}>" for i, t in enumerate(in_types))
    ins = ", ".join(f"%a{i}" for i in range(len(in_types)))
    in_tensors = ", ".join(f"tensor<{n}x{t}>" for t in in_types)
    block_args = ", ".join(f"%x{i}: {t}" for i, t in enumerate(in_types))
    maps = ", ".join(["affine_map<(d0) -> (d0)>"] * (len(in_types) + 1))
    return f"""
func.func @main({args}) -> tensor<{n}x{out_type}> {{
  %e = tensor.empty() : tensor<{n}x{out_type}>
  %r = linalg.generic {{indexing_maps = [{maps}], iterator_types = ["parallel"]}} ins({ins} : {in_tensors}) outs(%e : tensor<{n}x{out_type}>) {{
  ^bb0({block_args}, %o: {out_type}):
    {op_line}
    linalg.yield %q : {out_type}
  }} -> tensor<{n}x{out_type}>
  return %r : tensor<{n}x{out_type}>
}}
"""


# ---------------------------------------------------------------------------- contractions

MATMUL = """
func.func @main(%a: tensor<64x512xf32>, %b: tensor<512x48xf32>) -> tensor<64x48xf32> {
  %z = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<64x48xf32>
  %c = linalg.fill ins(%z : f32) outs(%e : tensor<64x48xf32>) -> tensor<64x48xf32>
  %m = linalg.matmul ins(%a, %b : tensor<64x512xf32>, tensor<512x48xf32>) outs(%c : tensor<64x48xf32>) -> tensor<64x48xf32>
  return %m : tensor<64x48xf32>
}
"""


def test_matmul_tiled_over_the_reduction_dim() -> None:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((64, 512), dtype=np.float32)
    b = rng.standard_normal((512, 48), dtype=np.float32)
    (out,), stats, module = emulate(MATMUL, a, b)
    (mm,) = [k for k in kernels(module) if k.kind.data.value == "matmul"]
    assert mm.domain_sizes == (64, 48, 512)
    assert mm.tile_sizes[2] < 512  # K is split: partial sums accumulate across tiles
    assert stats.tiles > 1
    assert stats.sections[0].tiles[mm.label] == 512 // mm.tile_sizes[2]
    np.testing.assert_allclose(out, a.astype(np.float64) @ b, rtol=1e-4, atol=1e-4)


BATCH_MATMUL = """
func.func @main(%a: tensor<4x96x200xf32>, %b: tensor<4x200x80xf32>, %c: tensor<4x96x80xf32>) -> tensor<4x96x80xf32> {
  %m = "linalg.batch_matmul"(%a, %b, %c) <{operandSegmentSizes = array<i32: 2, 1>}> ({
  ^bb0(%x: f32, %y: f32, %z: f32):
    %p = arith.mulf %x, %y : f32
    %s = arith.addf %z, %p : f32
    linalg.yield %s : f32
  }) : (tensor<4x96x200xf32>, tensor<4x200x80xf32>, tensor<4x96x80xf32>) -> tensor<4x96x80xf32>
  return %m : tensor<4x96x80xf32>
}
"""


def test_batch_matmul_tiled_on_parallel_and_reduction_dims() -> None:
    """Accumulates into a non-zero init (out = c + a @ b), partial tiles on K (200)."""
    rng = np.random.default_rng(1)
    a = rng.standard_normal((4, 96, 200), dtype=np.float32)
    b = rng.standard_normal((4, 200, 80), dtype=np.float32)
    c = rng.standard_normal((4, 96, 80), dtype=np.float32)
    (out,), stats, module = emulate(BATCH_MATMUL, a, b, c)
    (k,) = kernels(module)
    assert k.tile_sizes[3] < 200 and any(t < d for t, d in zip(k.tile_sizes[:3], k.domain_sizes[:3], strict=True))
    assert stats.tiles > 1
    np.testing.assert_allclose(out, c + a.astype(np.float64) @ b, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------------- reductions

REDUCTIONS = """
func.func @main(%a: tensor<64x300xf32>) -> (tensor<64xf32>, tensor<64xf32>) {
  %z = arith.constant 0.0 : f32
  %ninf = arith.constant 0xFF800000 : f32
  %e = tensor.empty() : tensor<64xf32>
  %s0 = linalg.fill ins(%z : f32) outs(%e : tensor<64xf32>) -> tensor<64xf32>
  %m0 = linalg.fill ins(%ninf : f32) outs(%e : tensor<64xf32>) -> tensor<64xf32>
  %s = linalg.generic {indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0)>], iterator_types = ["parallel", "reduction"]} ins(%a : tensor<64x300xf32>) outs(%s0 : tensor<64xf32>) {
  ^bb0(%x: f32, %acc: f32):
    %q = arith.addf %x, %acc : f32
    linalg.yield %q : f32
  } -> tensor<64xf32>
  %m = linalg.generic {indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0)>], iterator_types = ["parallel", "reduction"]} ins(%a : tensor<64x300xf32>) outs(%m0 : tensor<64xf32>) {
  ^bb0(%x: f32, %acc: f32):
    %q = arith.maximumf %acc, %x : f32
    linalg.yield %q : f32
  } -> tensor<64xf32>
  return %s, %m : tensor<64xf32>, tensor<64xf32>
}
"""


@pytest.mark.parametrize("opt_level", [0, 1])
def test_row_sum_and_max(opt_level: int) -> None:
    # All negative, so a max that started from 0 instead of -inf would show.
    a = np.random.default_rng(2).standard_normal((64, 300)).astype(np.float32) - 10
    (total, peak), stats, module = emulate(REDUCTIONS, a, opt_level=opt_level)
    reduces = [k for k in kernels(module) if k.kind.data.value == "reduce"]
    assert len(reduces) == 2
    assert all(k.tile_sizes != k.domain_sizes for k in reduces)  # 64x300 f32 = 75 KiB: tiled
    assert stats.tiles > 4
    np.testing.assert_allclose(total, a.astype(np.float64).sum(axis=1), rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(peak, a.max(axis=1))


# ---------------------------------------------------------------------------- integer semantics

A_INT = np.array([-7, 7, -7, 7, -1, 0, 9, -9, -8, 8], np.int32)
B_INT = np.array([2, -2, -2, 2, 3, 5, -4, 4, 3, -3], np.int32)


def _c_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (np.sign(a) * np.sign(b) * (np.abs(a) // np.abs(b))).astype(a.dtype)


@pytest.mark.parametrize("dtype", ["i32", "i64"])
def test_divsi_remsi_truncate_toward_zero(dtype: str) -> None:
    np_type = np.int32 if dtype == "i32" else np.int64
    a, b = A_INT.astype(np_type), B_INT.astype(np_type)
    (q,), _, _ = emulate(elementwise(f"%q = arith.divsi %x0, %x1 : {dtype}", [dtype, dtype], dtype, a.size), a, b)
    (r,), _, _ = emulate(elementwise(f"%q = arith.remsi %x0, %x1 : {dtype}", [dtype, dtype], dtype, a.size), a, b)
    want_q = _c_div(a, b)
    np.testing.assert_array_equal(q, want_q)
    np.testing.assert_array_equal(q, [-3, -3, 3, 3, 0, 0, -2, -2, -2, -2])
    np.testing.assert_array_equal(r, a - want_q * b)  # remainder has the sign of the dividend
    np.testing.assert_array_equal(r, [-1, 1, -1, 1, -1, 0, 1, -1, -2, 2])


@pytest.mark.parametrize(
    ("op", "want"),
    [
        ("floordivsi", np.floor_divide(A_INT, B_INT)),
        ("ceildivsi", -np.floor_divide(-A_INT, B_INT)),
        ("maxsi", np.maximum(A_INT, B_INT)),
        ("minsi", np.minimum(A_INT, B_INT)),
    ],
)
def test_signed_integer_ops(op: str, want: np.ndarray) -> None:
    (out,), _, _ = emulate(elementwise(f"%q = arith.{op} %x0, %x1 : i32", ["i32", "i32"], "i32", A_INT.size), A_INT, B_INT)
    np.testing.assert_array_equal(out, want)


UNSIGNED = {
    "divui": lambda: np.floor_divide(A_INT.view(np.uint32), B_INT.view(np.uint32)).view(np.int32),
    "remui": lambda: np.remainder(A_INT.view(np.uint32), B_INT.view(np.uint32)).view(np.int32),
    "maxui": lambda: np.maximum(A_INT.view(np.uint32), B_INT.view(np.uint32)).view(np.int32),
    "minui": lambda: np.minimum(A_INT.view(np.uint32), B_INT.view(np.uint32)).view(np.int32),
    "shrui": lambda: np.right_shift(A_INT.view(np.uint32), np.uint32(1)).view(np.int32),
}


@pytest.mark.parametrize("op", sorted(UNSIGNED))
def test_unsigned_integer_ops(op: str) -> None:
    rhs = np.ones_like(B_INT) if op == "shrui" else B_INT
    (out,), _, _ = emulate(elementwise(f"%q = arith.{op} %x0, %x1 : i32", ["i32", "i32"], "i32", A_INT.size), A_INT, rhs)
    np.testing.assert_array_equal(out, UNSIGNED[op]())


def test_cmpi_unsigned_predicates_read_bits_as_unsigned() -> None:
    a = np.array([-1, 1, -2, 3], np.int32)
    b = np.array([1, -1, -1, 3], np.int32)
    (out,), _, _ = emulate(elementwise("%q = arith.cmpi ult, %x0, %x1 : i32", ["i32", "i32"], "i1", 4), a, b)
    np.testing.assert_array_equal(out, a.view(np.uint32) < b.view(np.uint32))
    (out,), _, _ = emulate(elementwise("%q = arith.cmpi slt, %x0, %x1 : i32", ["i32", "i32"], "i1", 4), a, b)
    np.testing.assert_array_equal(out, a < b)


I8 = np.array([-1, -128, 5, 127], np.int8)


def test_signed_casts() -> None:
    (out,), _, _ = emulate(elementwise("%q = arith.extsi %x0 : i8 to i32", ["i8"], "i32", 4), I8)
    np.testing.assert_array_equal(out, I8.astype(np.int32))
    (out,), _, _ = emulate(elementwise("%q = arith.sitofp %x0 : i8 to f32", ["i8"], "f32", 4), I8)
    np.testing.assert_array_equal(out, I8.astype(np.float32))


@pytest.mark.parametrize(("op", "out_type", "want"), [("extui", "i32", I8.view(np.uint8).astype(np.int32)), ("uitofp", "f32", I8.view(np.uint8).astype(np.float32))])
def test_unsigned_casts(op: str, out_type: str, want: np.ndarray) -> None:
    (out,), _, _ = emulate(elementwise(f"%q = arith.{op} %x0 : i8 to {out_type}", ["i8"], out_type, 4), I8)
    np.testing.assert_array_equal(out, want)


# ---------------------------------------------------------------------------- float comparisons

X_F = np.array([1, 2, np.nan, 1, np.nan, 3, -0.0], np.float32)
Y_F = np.array([1, 1, 1, np.nan, np.nan, 4, 0.0], np.float32)
_NAN = np.isnan(X_F) | np.isnan(Y_F)
CMPF = {
    "false": np.zeros(X_F.shape, bool),
    "oeq": ~_NAN & (X_F == Y_F),
    "ogt": ~_NAN & (X_F > Y_F),
    "oge": ~_NAN & (X_F >= Y_F),
    "olt": ~_NAN & (X_F < Y_F),
    "ole": ~_NAN & (X_F <= Y_F),
    "one": ~_NAN & (X_F != Y_F),
    "ord": ~_NAN,
    "ueq": _NAN | (X_F == Y_F),
    "ugt": _NAN | (X_F > Y_F),
    "uge": _NAN | (X_F >= Y_F),
    "ult": _NAN | (X_F < Y_F),
    "ule": _NAN | (X_F <= Y_F),
    "une": _NAN | (X_F != Y_F),
    "uno": _NAN,
    "true": np.ones(X_F.shape, bool),
}


@pytest.mark.parametrize("pred", list(CMPF))
def test_cmpf_predicates_with_nan(pred: str) -> None:
    text = elementwise(f"%q = arith.cmpf {pred}, %x0, %x1 : f32", ["f32", "f32"], "i1", X_F.size)
    (out,), _, _ = emulate(text, X_F, Y_F)
    assert out.dtype == np.bool_
    np.testing.assert_array_equal(out, CMPF[pred])


def test_cmpf_select_is_nan_propagating_max() -> None:
    """torch.maximum lowers to cmpf ogt + select + an uno check: NaN must propagate."""
    line = (
        "%g = arith.cmpf ogt, %x0, %x1 : f32\n    %m = arith.select %g, %x0, %x1 : f32\n"
        "    %u = arith.cmpf uno, %x0, %x1 : f32\n    %n = arith.constant 0x7FC00000 : f32\n"
        "    %q = arith.select %u, %n, %m : f32"
    )
    (out,), _, _ = emulate(elementwise(line, ["f32", "f32"], "f32", X_F.size), X_F, Y_F)
    np.testing.assert_array_equal(out, np.maximum(X_F, Y_F))


# ---------------------------------------------------------------------------- gathers

GATHER = """
func.func @main(%t: tensor<TABLExf32>, %idx: tensor<Nxi64>) -> tensor<NxWxf32> {
  %e = tensor.empty() : tensor<NxWxf32>
  %r = linalg.generic {indexing_maps = [affine_map<(d0, d1) -> (d0)>, affine_map<(d0, d1) -> (d0, d1)>], iterator_types = ["parallel", "parallel"]} ins(%idx : tensor<Nxi64>) outs(%e : tensor<NxWxf32>) {
  ^bb0(%i: i64, %o: f32):
    %ii = arith.index_cast %i : i64 to index
    %j = linalg.index 1 : index
    %v = tensor.extract %t[%ii, %j] : tensor<TABLExf32>
    linalg.yield %v : f32
  } -> tensor<NxWxf32>
  return %r : tensor<NxWxf32>
}
"""


def gather_module(rows: int, width: int, n: int) -> str:
    return GATHER.replace("TABLE", f"{rows}x{width}").replace("NxW", f"{n}x{width}").replace("Nx", f"{n}x")


def test_gather_small() -> None:
    table = np.arange(40, dtype=np.float32).reshape(10, 4)
    idx = np.array([3, 0, 9, 3, 1, 2])
    (out,), stats, module = emulate(gather_module(10, 4, 6), table, idx)
    assert [k.kind.data.value for k in kernels(module)] == ["gather"]
    np.testing.assert_array_equal(out, table[idx])
    assert stats.hbm_bytes + stats.ddr_bytes >= out.nbytes  # gathered rows are counted


def test_gather_embedding_over_several_tiles() -> None:
    rng = np.random.default_rng(3)
    table = rng.standard_normal((512, 64), dtype=np.float32)
    idx = rng.integers(0, 512, size=300)
    (out,), stats, _ = emulate(gather_module(512, 64, 300), table, idx)
    assert stats.tiles > 1
    np.testing.assert_array_equal(out, table[idx])


@pytest.mark.parametrize("bad", [10, -1, 1 << 40])
def test_gather_out_of_bounds_is_refused(bad: int) -> None:
    table = np.arange(40, dtype=np.float32).reshape(10, 4)
    idx = np.array([3, 0, bad, 3, 1, 2])
    module = compile_text(gather_module(10, 4, 6))
    with pytest.raises(EmulatorError, match="out of bounds"):
        Emulator(module, TINY).run([table, idx])


# ---------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("line", "name"),
    [
        ("%q = math.ctlz %x0 : i32", "math.ctlz"),
        ("%q = math.ctpop %x0 : i32", "math.ctpop"),
    ],
)
def test_payload_op_without_rule_is_refused_by_name(line: str, name: str) -> None:
    """Refused at compile time (whatever compiles runs), naming the op and the kernel."""
    with pytest.raises(CompileError, match=f"kernel 'k\\d+_map': payload op '{name}'.*refused at compile time"):
        compile_text(elementwise(line, ["i32"], "i32", 8))


def test_buffer_over_pmu_capacity_is_refused() -> None:
    """A kernel whose tile no longer fits its PMUs (tile attribute tampered) is refused."""
    module = compile_text(MATMUL)
    (mm,) = [k for k in kernels(module) if k.kind.data.value == "matmul"]
    mm.tile = DenseArrayBase.from_list(i64, list(mm.domain_sizes))
    rng = np.random.default_rng(0)
    args = [rng.standard_normal((64, 512), dtype=np.float32), rng.standard_normal((512, 48), dtype=np.float32)]
    with pytest.raises(EmulatorError, match="PMU"):
        Emulator(module, TINY).run(args)


def test_unplaced_program_is_refused() -> None:
    module = parse_module(MATMUL)
    run_pipeline(module, ["rdu-convert-linalg", "rdu-fuse"])
    with pytest.raises(EmulatorError, match="outside any rdu.section"):
        Emulator(module, TINY)


def test_wrong_argument_shape_and_count() -> None:
    emulator = Emulator(compile_text(MATMUL), TINY)
    a = np.zeros((64, 512), np.float32)
    with pytest.raises(EmulatorError, match="shape"):
        emulator.run([a, np.zeros((48, 512), np.float32)])
    with pytest.raises(EmulatorError, match="takes 2 arguments"):
        emulator.run([a])


def test_emulator_is_reusable() -> None:
    emulator = Emulator(compile_text(MATMUL), TINY)
    rng = np.random.default_rng(4)
    for _ in range(2):
        a = rng.standard_normal((64, 512), dtype=np.float32)
        b = rng.standard_normal((512, 48), dtype=np.float32)
        (out,), _ = emulator.run([a, b])
        np.testing.assert_allclose(out, a.astype(np.float64) @ b, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------------- hex constants

HEX_CONSTANT = """
func.func @main(%a: tensor<4xf32>) -> tensor<4xf32> {
  %c = arith.constant CONST : tensor<4xf32>
  %e = tensor.empty() : tensor<4xf32>
  %r = linalg.generic {indexing_maps = [affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>], iterator_types = ["parallel"]} ins(%a, %c : tensor<4xf32>, tensor<4xf32>) outs(%e : tensor<4xf32>) {
  ^bb0(%x: f32, %y: f32, %o: f32):
    %q = arith.addf %x, %y : f32
    linalg.yield %q : f32
  } -> tensor<4xf32>
  return %r : tensor<4xf32>
}
"""


@pytest.mark.parametrize(
    ("const", "want"),
    [
        ("dense<0xFF800000>", [-np.inf] * 4),
        ("dense<[0xFF800000, 0x7F800000, 0x00000000, 0x3F800000]>", [-np.inf, np.inf, 0.0, 1.0]),
        ("dense<[0xFF800000, 2.5, -1.0, 0x7F800000]>", [-np.inf, 2.5, -1.0, np.inf]),
    ],
)
def test_hex_dense_constants_are_bits(const: str, want: list[float]) -> None:
    (out,), _, _ = emulate(HEX_CONSTANT.replace("CONST", const), np.zeros(4, np.float32))
    np.testing.assert_array_equal(out, np.asarray(want, np.float32))


def test_hex_nan_constant() -> None:
    (out,), _, _ = emulate(HEX_CONSTANT.replace("CONST", "dense<0x7FC00000>"), np.zeros(4, np.float32))
    assert np.isnan(out).all()
