"""NaN through ONNX Clip, Sign, Max, Min, ArgMax, ArgMin and Hardmax (issue 10, "no silent wrong number").

torch-mlir lowers these ops to `cmpf ogt|olt` selects that never pick a NaN; ONNX's
reference evaluator (numpy) propagates NaN through clip/maximum/minimum and returns the
first NaN's index from argmax/argmin (the last with select_last_index=1); np.sign(NaN)
is NaN where torch-mlir's Sign gives 0, and Hardmax is one-hot at argmax. The frontend
rewrites them in frontend/onnx/nan.py; each case compiles for sn40l, runs on the emulator and must
match the evaluator exactly: same NaN positions, same numbers elsewhere, same indices.
"""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

import rdu_compiler  # noqa: E402

F = TensorProto.FLOAT
NAN = np.nan
X = np.array([[1, NAN, -2, 0.2], [NAN, 3, NAN, -1], [0, 0, NAN, NAN]], np.float32)
Y = np.array([[NAN, 0, 5, 0.1], [2, NAN, NAN, -3], [1, -1, 2, NAN]], np.float32)
W = np.array([0, NAN, 1, 2], np.float32)


def vi(name: str, shape: list[int] | None, t: int = F) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, t, shape)


def model(nodes, inputs, outputs, inits=(), opset=17) -> onnx.ModelProto:
    m = helper.make_model(helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits)), opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def check_exact(m: onnx.ModelProto, *inputs: np.ndarray) -> None:
    names = [i.name for i in m.graph.input]
    want = ReferenceEvaluator(m).run(None, dict(zip(names, inputs, strict=True)))
    got = rdu_compiler.compile_onnx(m, fabric="sn40l").run(*inputs)
    for g, w in zip(got, want, strict=True):
        assert g.dtype == w.dtype and g.shape == w.shape
        if w.dtype.kind == "f":
            np.testing.assert_array_equal(np.isnan(g), np.isnan(w))
        np.testing.assert_array_equal(g, w)  # NaN == NaN here; numbers bit-exact


@pytest.mark.parametrize("bounds", ["min_max", "min_only", "max_only"])
def test_clip_keeps_nan(bounds: str) -> None:
    lo = helper.make_tensor("lo", F, [], [0.5])
    hi = helper.make_tensor("hi", F, [], [2.0])
    ins = {"min_max": ["x", "lo", "hi"], "min_only": ["x", "lo"], "max_only": ["x", "", "hi"]}[bounds]
    m = model([helper.make_node("Clip", ins, ["z"])], [vi("x", [3, 4])], [vi("z", [3, 4])], [lo, hi])
    check_exact(m, X)


def test_sign_keeps_nan() -> None:
    m = model([helper.make_node("Sign", ["x"], ["z"])], [vi("x", [3, 4])], [vi("z", [3, 4])])
    check_exact(m, X)


@pytest.mark.parametrize("op", ["Max", "Min"])
def test_max_min_keep_nan(op: str) -> None:
    m = model([helper.make_node(op, ["x", "y"], ["z"])], [vi("x", [3, 4]), vi("y", [3, 4])], [vi("z", [3, 4])])
    check_exact(m, X, Y)


@pytest.mark.parametrize("op", ["Max", "Min"])
def test_variadic_broadcast_max_min_keep_nan(op: str) -> None:
    m = model([helper.make_node(op, ["x", "y", "w"], ["z"])], [vi("x", [3, 4]), vi("y", [3, 4]), vi("w", [4])], [vi("z", [3, 4])])
    check_exact(m, X, Y, W)


@pytest.mark.parametrize("op", ["ArgMax", "ArgMin"])
@pytest.mark.parametrize("last", [0, 1])
@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("keepdims", [0, 1])
def test_arg_reductions_pick_nan(op: str, last: int, axis: int, keepdims: int) -> None:
    node = helper.make_node(op, ["x"], ["z"], axis=axis, keepdims=keepdims, select_last_index=last)
    m = model([node], [vi("x", [3, 4])], [vi("z", None, TensorProto.INT64)], opset=13)
    check_exact(m, X)


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_hardmax_one_hot_at_first_nan(axis: int) -> None:
    """Hardmax is a one-hot of argmax (the first NaN, else the first maximum: ties too)."""
    x = np.concatenate([X, np.array([[2, 5, 5, -1]], np.float32)])  # last row: a tie
    m = model([helper.make_node("Hardmax", ["x"], ["z"], axis=axis)], [vi("x", [4, 4])], [vi("z", [4, 4])], opset=13)
    check_exact(m, x)


@pytest.mark.parametrize("dtype", [np.float16, np.float64])
def test_other_float_types(dtype: type) -> None:
    t = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    nodes = [helper.make_node("Max", ["x", "w"], ["m"]), helper.make_node("ArgMin", ["m"], ["z"], axis=1, keepdims=0)]
    m = model(nodes, [vi("x", [3, 4], t), vi("w", [4], t)], [vi("m", [3, 4], t), vi("z", [3], TensorProto.INT64)])
    check_exact(m, X.astype(dtype), np.array([0, 0, 1, 2], dtype))


def test_integer_ops_unchanged() -> None:
    """Integer inputs are not rewritten (no IsNaN on ints) and still compute ONNX's numbers."""
    i32 = TensorProto.INT32
    nodes = [helper.make_node("Max", ["a", "b"], ["m"]), helper.make_node("ArgMax", ["m"], ["z"], axis=1)]
    m = model(nodes, [vi("a", [2, 3], i32), vi("b", [2, 3], i32)], [vi("m", [2, 3], i32), vi("z", [2, 1], TensorProto.INT64)])
    check_exact(m, np.array([[1, 5, 2], [-3, 0, 7]], np.int32), np.array([[4, 5, -1], [2, 2, 2]], np.int32))
