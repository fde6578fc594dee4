"""Op support added for the ONNX node tests, each checked against ONNX's reference evaluator
on a small graph (compile for sn40l, run on the emulator). The expectations are that
evaluator's numbers: they pin onnx 1.23.2 and ml_dtypes 0.6.0 (requirements.lock).

- argmax/argmin reductions (index of the best value; ties keep the first), in the emulator;
- strided `tensor.insert_slice` (ConvTranspose with strides) and insert into a fill (pad);
- named conv/pooling ops without memoized maps (depthwise conv, 3-D and 1-D pooling);
- scalars read from 0-d tensors at function level (Clip with min/max inputs);
- kernels over 0-d tensors (a scan's accumulator fill: CumSum);
- `linalg.quantized_matmul` and `arith.trunci` with no-wrap flags (QLinearMatMul);
- frontend rewrites of ops torch-mlir lowers differently from ONNX (LpNormalization with a
  zero vector, Gelu tanh, weighted mean NLL loss) and refusals (QLinearMatMul 3-D);
- constant folding of shape checks (`cf.assert` on constants) in rdu-convert-linalg.
"""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

import rdu_compiler  # noqa: E402
from rdu_compiler.frontend.onnx.errors import OnnxImportError  # noqa: E402

F = TensorProto.FLOAT


def vi(name: str, shape: list[int], t: int = F) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, t, shape)


def model(nodes, inputs, outputs, inits=(), opset=17) -> onnx.ModelProto:
    m = helper.make_model(helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits)), opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def check(m: onnx.ModelProto, *inputs: np.ndarray, rtol: float = 1e-5, atol: float = 1e-6) -> None:
    names = [i.name for i in m.graph.input]
    want = ReferenceEvaluator(m).run(None, dict(zip(names, inputs, strict=True)))
    program = rdu_compiler.compile_onnx(m, fabric="sn40l")
    got = program.run(*inputs)
    for g, w in zip(got, want, strict=True):
        assert g.dtype == w.dtype and g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol)


rng = np.random.default_rng(0)


@pytest.mark.parametrize("op", ["ArgMax", "ArgMin"])
@pytest.mark.parametrize("last", [0, 1])
def test_arg_reductions_with_ties(op: str, last: int) -> None:
    x = np.array([[3, 1, 3, 0], [2, 2, 2, 2], [0, 5, 5, -1]], dtype=np.float32)
    m = model([helper.make_node(op, ["x"], ["y"], axis=1, keepdims=0, select_last_index=last)], [vi("x", [3, 4])], [vi("y", [3], TensorProto.INT64)], opset=13)
    check(m, x)


def test_conv_transpose_strided_insert_slice() -> None:
    x = rng.standard_normal((1, 2, 3, 3)).astype(np.float32)
    w = numpy_helper.from_array(rng.standard_normal((2, 3, 3, 3)).astype(np.float32), "w")
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], strides=[2, 2], pads=[1, 1, 1, 1])
    check(model([node], [vi("x", [1, 2, 3, 3])], [vi("y", [1, 3, 5, 5])], [w]), x)


def test_depthwise_conv_and_pooling_layouts() -> None:
    x = rng.standard_normal((1, 4, 6, 6)).astype(np.float32)
    w = numpy_helper.from_array(rng.standard_normal((4, 1, 3, 3)).astype(np.float32), "w")
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], group=4, strides=[1, 2]),
        helper.make_node("AveragePool", ["c"], ["y"], kernel_shape=[2, 1]),
    ]
    check(model(nodes, [vi("x", [1, 4, 6, 6])], [vi("y", [1, 4, 3, 2])], [w]), x)
    x3 = rng.standard_normal((1, 2, 4, 4, 4)).astype(np.float32)
    check(model([helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[2, 2, 2], strides=[2, 2, 2])], [vi("x", [1, 2, 4, 4, 4])], [vi("y", [1, 2, 2, 2, 2])]), x3)
    x1 = rng.standard_normal((2, 3, 8)).astype(np.float32)
    check(model([helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[3], strides=[2])], [vi("x", [2, 3, 8])], [vi("y", [2, 3, 3])]), x1)


def test_clip_with_scalar_inputs() -> None:
    x = rng.standard_normal((3, 5)).astype(np.float32)
    m = model([helper.make_node("Clip", ["x", "lo", "hi"], ["y"])], [vi("x", [3, 5]), vi("lo", []), vi("hi", [])], [vi("y", [3, 5])], opset=13)
    check(m, x, np.array(-0.5, np.float32), np.array(0.25, np.float32))


def test_cumsum_zero_d_accumulator() -> None:
    x = rng.standard_normal((6,)).astype(np.float32)
    axis = numpy_helper.from_array(np.array(0, dtype=np.int64), "axis")
    check(model([helper.make_node("CumSum", ["x", "axis"], ["y"], exclusive=1)], [vi("x", [6])], [vi("y", [6])], [axis]), x)


def test_qlinearmatmul_2d() -> None:
    a = rng.integers(-128, 127, (2, 4)).astype(np.int8)
    b = rng.integers(-128, 127, (4, 3)).astype(np.int8)
    names = ["a", "a_scale", "a_zp", "b", "b_scale", "b_zp", "y_scale", "y_zp"]
    inits = [
        numpy_helper.from_array(np.array(0.05, np.float32), "a_scale"), numpy_helper.from_array(np.array(-3, np.int8), "a_zp"),
        numpy_helper.from_array(np.array(0.02, np.float32), "b_scale"), numpy_helper.from_array(np.array(5, np.int8), "b_zp"),
        numpy_helper.from_array(np.array(0.3, np.float32), "y_scale"), numpy_helper.from_array(np.array(1, np.int8), "y_zp"),
    ]
    node = helper.make_node("QLinearMatMul", names, ["y"])
    check(model([node], [vi("a", [2, 4], TensorProto.INT8), vi("b", [4, 3], TensorProto.INT8)], [vi("y", [2, 3], TensorProto.INT8)], inits, opset=13), a, b, atol=0)


def test_qlinearmatmul_3d_is_refused() -> None:
    names = ["a", "a_scale", "a_zp", "b", "b_scale", "b_zp", "y_scale", "y_zp"]
    inits = [numpy_helper.from_array(np.array(v, dt), n) for n, v, dt in [
        ("a_scale", 0.05, np.float32), ("a_zp", -3, np.int8), ("b_scale", 0.02, np.float32),
        ("b_zp", 5, np.int8), ("y_scale", 0.3, np.float32), ("y_zp", 1, np.int8)]]
    node = helper.make_node("QLinearMatMul", names, ["y"], name="qmm")
    m = model([node], [vi("a", [2, 2, 4], TensorProto.INT8), vi("b", [2, 4, 3], TensorProto.INT8)], [vi("y", [2, 2, 3], TensorProto.INT8)], inits, opset=13)
    with pytest.raises(OnnxImportError, match="zero points of A and B are ignored"):
        rdu_compiler.compile_onnx(m)


def test_lpnormalization_zero_vector_is_zero_not_nan() -> None:
    x = np.array([[1, 2, 0], [3, 4, 0]], dtype=np.float32)
    check(model([helper.make_node("LpNormalization", ["x"], ["y"], axis=0, p=2)], [vi("x", [2, 3])], [vi("y", [2, 3])]), x)


def test_gelu_tanh_exact_constant() -> None:
    x = np.linspace(-4, 4, 64, dtype=np.float32).reshape(8, 8)
    check(model([helper.make_node("Gelu", ["x"], ["y"], approximate="tanh")], [vi("x", [8, 8])], [vi("y", [8, 8])], opset=20), x, rtol=1e-5, atol=1e-6)


def test_weighted_mean_nll_loss() -> None:
    x = rng.standard_normal((3, 5)).astype(np.float32)
    target = np.array([1, 4, 3], dtype=np.int64)
    w = numpy_helper.from_array(np.array([0.9, 0.7, 0.8, 0.9, 0.9], np.float32), "w")
    node = helper.make_node("NegativeLogLikelihoodLoss", ["x", "t", "w"], ["y"], reduction="mean")
    check(model([node], [vi("x", [3, 5]), vi("t", [3], TensorProto.INT64)], [vi("y", [])], [w], opset=13), x, target)


def test_expand_shape_check_is_folded() -> None:
    """torch-mlir guards Expand with cf.assert on constants; rdu-convert-linalg folds them."""
    x = rng.standard_normal((3, 1)).astype(np.float32)
    shape = numpy_helper.from_array(np.array([2, 3, 4], dtype=np.int64), "shape")
    check(model([helper.make_node("Expand", ["x", "shape"], ["y"])], [vi("x", [3, 1])], [vi("y", [2, 3, 4])], [shape]), x)


@pytest.mark.parametrize(
    ("op", "t", "dtype"),
    [("Sub", TensorProto.UINT16, np.uint16), ("Mul", TensorProto.UINT32, np.uint32), ("Add", TensorProto.UINT64, np.uint64), ("Greater", TensorProto.UINT32, np.uint32)],
)
def test_wide_unsigned_integers(op: str, t: int, dtype: type) -> None:
    """uint16/uint32 computed on int32/int64 with wrap-around, uint64 as int64 (same bits)."""
    info = np.iinfo(dtype)
    x = np.array([0, 1, 7, info.max, info.max - 5, 1000], dtype=dtype)
    y = np.array([3, 2, 7, 2, info.max, 60000], dtype=dtype)
    out_t = TensorProto.BOOL if op == "Greater" else t
    check(model([helper.make_node(op, ["x", "y"], ["z"])], [vi("x", [6], t), vi("y", [6], t)], [vi("z", [6], out_t)], opset=18), x, y, atol=0)


def test_uint64_comparison_is_refused() -> None:
    t = TensorProto.UINT64
    m = model([helper.make_node("Greater", ["x", "y"], ["z"])], [vi("x", [3], t), vi("y", [3], t)], [vi("z", [3], TensorProto.BOOL)], opset=18)
    with pytest.raises(OnnxImportError, match="uint64"):
        rdu_compiler.compile_onnx(m)


@pytest.mark.parametrize("reduction", ["none", "add", "mul"])
def test_scatter_elements_last_write_and_reductions(reduction: str) -> None:
    """tm_tensor.scatter as a reduction over the updates: duplicates resolve in order."""
    data = rng.standard_normal((3, 4)).astype(np.float32)
    idx = np.array([[1, 1, 3], [0, 2, 2], [3, 3, 3]], dtype=np.int64)
    upd = rng.standard_normal((3, 3)).astype(np.float32)
    node = helper.make_node("ScatterElements", ["d", "i", "u"], ["y"], axis=1, reduction=reduction)
    m = model([node], [vi("d", [3, 4]), vi("i", [3, 3], TensorProto.INT64), vi("u", [3, 3])], [vi("y", [3, 4])], opset=18)
    check(m, data, idx, upd)


def test_if_with_constant_condition_is_inlined() -> None:
    then_g = helper.make_graph([helper.make_node("Neg", ["x"], ["t"])], "then", [], [vi("t", [3])])
    else_g = helper.make_graph([helper.make_node("Abs", ["x"], ["e"])], "else", [], [vi("e", [3])])
    cond = numpy_helper.from_array(np.array(False), "cond")
    node = helper.make_node("If", ["cond"], ["y"], then_branch=then_g, else_branch=else_g)
    check(model([node], [vi("x", [3])], [vi("y", [3])], [cond], opset=13), np.array([-1.5, 2.0, -3.0], np.float32))


def test_cumprod_and_matmul_vector_and_castlike() -> None:
    x = rng.standard_normal((2, 5)).astype(np.float32)
    axis = numpy_helper.from_array(np.array(1, dtype=np.int64), "axis")
    check(model([helper.make_node("CumProd", ["x", "axis"], ["y"], reverse=1)], [vi("x", [2, 5])], [vi("y", [2, 5])], [axis], opset=26), x)
    a = rng.standard_normal((4,)).astype(np.float32)
    b = rng.standard_normal((2, 4, 3)).astype(np.float32)
    check(model([helper.make_node("MatMul", ["a", "b"], ["c"])], [vi("a", [4]), vi("b", [2, 4, 3])], [vi("c", [2, 3])]), a, b)
    like = numpy_helper.from_array(np.zeros((0,), np.float16), "like")
    check(model([helper.make_node("CastLike", ["x", "like"], ["y"])], [vi("x", [2, 5])], [vi("y", [2, 5], TensorProto.FLOAT16)], [like], opset=19), x, rtol=1e-3)


@pytest.mark.parametrize("largest", [1, 0])
def test_topk_is_a_stable_sort(largest: int) -> None:
    """tm_tensor.sort as a rank kernel and a permutation: ties keep index order (ONNX TopK)."""
    x = np.array([[3, 1, 3, 2, 1], [0, 0, 0, 0, 0]], dtype=np.float32)
    k = numpy_helper.from_array(np.array([3], dtype=np.int64), "k")
    node = helper.make_node("TopK", ["x", "k"], ["v", "i"], axis=1, largest=largest)
    m = model([node], [vi("x", [2, 5])], [vi("v", [2, 3]), vi("i", [2, 3], TensorProto.INT64)], [k], opset=11)
    check(m, x, atol=0)


@pytest.mark.parametrize("largest", [1, 0])
def test_topk_orders_nan_above_every_number_as_the_reference(largest: int) -> None:
    """NaN keys: ONNX's reference (np.lexsort) and torch.topk order NaN above +inf, NaNs
    among themselves by index. torch-mlir's comparator is `cmpf oge`, false for NaN either
    way, which used to leave the ranks with holes (refused at run time by the check
    kernel); rdu-convert-linalg now orders NaN explicitly."""
    k = numpy_helper.from_array(np.array([6], dtype=np.int64), "k")
    node = helper.make_node("TopK", ["x", "k"], ["v", "i"], axis=1, largest=largest)
    m = model([node], [vi("x", [2, 6])], [vi("v", [2, 6]), vi("i", [2, 6], TensorProto.INT64)], [k], opset=11)
    x = np.array([[0, np.nan, 1, 1, np.nan, -np.inf], [np.nan, np.nan, np.nan, 2, np.inf, 2]], dtype=np.float32)
    exact(m, x)


def exact(m: onnx.ModelProto, *inputs: np.ndarray) -> None:
    """Like check, but every output element equal to the reference's (NaN equals NaN, dtypes
    equal; narrow types compared as float32)."""
    names = [i.name for i in m.graph.input]
    want = ReferenceEvaluator(m).run(None, dict(zip(names, inputs, strict=True)))
    got = rdu_compiler.compile_onnx(m, fabric="sn40l").run(*inputs)
    for g, w in zip(got, want, strict=True):
        assert g.dtype == w.dtype and g.shape == w.shape
        np.testing.assert_array_equal(g.astype(np.float32), w.astype(np.float32))


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
def test_float16_softmax_rounds_op_by_op(op: str) -> None:
    """ONNX's (Log)Softmax on float16 rounds exp(x - max) to float16 before the sum (its
    function body); torch-mlir computes it in float32 and rounds once, an ulp off here."""
    x = np.array([[0.6343, 0.3982, -np.inf, -np.inf], [0.914, 0.6304, 1.124, -np.inf], [0.6265, 0.4521, 0.7188, 0.896]], np.float16)
    h = TensorProto.FLOAT16
    exact(model([helper.make_node(op, ["x"], ["y"], axis=-1)], [vi("x", [3, 4], h)], [vi("y", [3, 4], h)], opset=18), x)


def _narrow_probe() -> np.ndarray:
    """float32 values around every float8 step: representable values, midpoints, +-1 ulp,
    overflow, infinities and NaN."""
    import ml_dtypes

    vals = np.unique(np.arange(256, dtype=np.uint8).view(ml_dtypes.float8_e4m3fn).astype(np.float32))
    vals = vals[np.isfinite(vals)]
    mids = (vals[1:] + vals[:-1]) / 2
    extra = [np.inf, -np.inf, np.nan, 464.0, 465.0, -470.0, 60000.0, 61440.0, -1e9, 7.0, 6.5, 5.0, 0.25, -0.75, 2.0**-10, 2.0**-17]
    x = np.concatenate([vals, mids, np.nextafter(mids, np.float32(np.inf)), np.nextafter(mids, np.float32(-np.inf)), extra])
    return x.astype(np.float32)


@pytest.mark.parametrize(
    ("to", "saturate"),
    [("FLOAT8E4M3FN", 1), ("FLOAT8E4M3FN", 0), ("FLOAT8E5M2", 0), ("FLOAT8E4M3FNUZ", 1), ("FLOAT8E5M2FNUZ", 0), ("FLOAT4E2M1", 1)],
)
def test_cast_to_float8_and_float4_matches_reference_bits(to: str, saturate: int) -> None:
    """Float8/float4 (no torch-mlir lowering) computed in float32: a Cast to them rounds like
    ONNX's reference on every step (ties to even, saturation or NaN/inf overflow)."""
    t = getattr(TensorProto, to)
    x = _narrow_probe()
    n = x.size
    exact(model([helper.make_node("Cast", ["x"], ["y"], to=t, saturate=saturate)], [vi("x", [n])], [vi("y", [n], t)], opset=23), x)


def test_narrow_float_table_is_the_reference_cast() -> None:
    from onnx.reference.ops.op_cast import cast_to

    from rdu_compiler.frontend.onnx.narrow import _narrow_float_table

    x = np.concatenate([_narrow_probe(), np.random.default_rng(1).standard_normal(50000).astype(np.float32) * 300])
    for to in ("FLOAT8E4M3FN", "FLOAT8E4M3FNUZ", "FLOAT8E5M2", "FLOAT8E5M2FNUZ", "FLOAT4E2M1"):
        for sat in (True, False):
            table = _narrow_float_table(getattr(TensorProto, to), sat)
            assert table is not None
            thr, vals, nan_v = table
            got = np.where(np.isnan(x), np.float32(nan_v), vals[np.sum(x[:, None] >= thr[None, :], axis=1)])
            want = cast_to(x, getattr(TensorProto, to), sat).astype(np.float32)
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("to", ["INT4", "UINT4", "INT2", "UINT2"])
def test_cast_float_to_4_and_2_bit_integers_wraps(to: str) -> None:
    """Truncation toward zero, then wrap-around modulo 2**bits (NaN/inf -> 0), as the reference.

    Pins ml_dtypes 0.6.0 (requirements.lock): ONNX's reference evaluator casts through
    ml_dtypes, and ml_dtypes 0.7.0 gives 0 for out-of-range values instead of wrapping
    (e.g. float 9.5 -> int4: -7 under 0.6.0, 0 under 0.7.0), so this test fails there.
    """
    t = getattr(TensorProto, to)
    x = np.array([0, 1.7, -1.7, 2.5, 7.9, 8, 9.5, -8.4, -9, -20, 20, 100.5, -0.3, np.inf, -np.inf, np.nan], np.float32)
    exact(model([helper.make_node("Cast", ["x"], ["y"], to=t)], [vi("x", [16])], [vi("y", [16], t)], opset=23), x)


def test_4_bit_inputs_and_float8_inputs_are_widened() -> None:
    import ml_dtypes

    x4 = np.array([-8, -1, 0, 3, 7], dtype=ml_dtypes.int4)
    exact(model([helper.make_node("Cast", ["x"], ["y"], to=F)], [vi("x", [5], TensorProto.INT4)], [vi("y", [5])], opset=23), x4)
    x8 = np.array([-448, -0.0, 0.001953125, 3.5, 448, np.nan], dtype=np.float32).astype(ml_dtypes.float8_e4m3fn)
    h = TensorProto.FLOAT16
    exact(model([helper.make_node("Cast", ["x"], ["y"], to=h)], [vi("x", [6], TensorProto.FLOAT8E4M3FN)], [vi("y", [6], h)], opset=23), x8)


def test_quantize_dequantize_narrow_and_per_axis_uint8() -> None:
    """(De)QuantizeLinear with int4 and float8 types, and per-axis uint8 zero points >= 128
    (torch-mlir sign-extends those): explicit ops with the reference's semantics."""
    import ml_dtypes

    x = np.array([[0, 2.5, 4.8, 8.6], [-30, -20, 6, 9], [12, 15, 16, 40]], np.float32)
    s = np.array([2, 3, 4], np.float32)
    z4 = np.array([1, -2, 7], dtype=ml_dtypes.int4)
    q = helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"], axis=0)
    exact(model([q], [vi("x", [3, 4]), vi("s", [3]), vi("z", [3], TensorProto.INT4)], [vi("y", [3, 4], TensorProto.INT4)], opset=21), x, s, z4)
    zf8 = np.zeros(1, ml_dtypes.float8_e5m2)
    q8 = helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"], axis=0)
    exact(model([q8], [vi("x", [3, 4]), vi("s", [3]), vi("z", [1], TensorProto.FLOAT8E5M2)], [vi("y", [3, 4], TensorProto.FLOAT8E5M2)], opset=21), x, s, zf8)
    xu = np.array([[0, 100, 200, 255], [3, 128, 129, 250], [7, 255, 0, 140]], np.uint8)
    zu = np.array([10, 200, 130], np.uint8)
    dq = helper.make_node("DequantizeLinear", ["x", "s", "z"], ["y"], axis=0)
    u8 = TensorProto.UINT8
    exact(model([dq], [vi("x", [3, 4], u8), vi("s", [3]), vi("z", [3], u8)], [vi("y", [3, 4])], opset=21), xu, s, zu)
    x4 = np.array([[-8, 7, 0, 1], [2, -3, 4, 5], [6, 7, -1, -2]], dtype=ml_dtypes.int4)
    exact(model([dq], [vi("x", [3, 4], TensorProto.INT4), vi("s", [3]), vi("z", [3], TensorProto.INT4)], [vi("y", [3, 4])], opset=21), x4, s, z4)
