"""The emulator's numbers against eager PyTorch where they used to differ silently.

Each test compiles on both fabrics (`sn40l`, `tiny`) at -O0 and -O1 and compares
`.run(*inputs)` with eager: 0-d output shapes, GELU(tanh)'s constant, NaN propagation of
min/max/clamp lowerings, integer division by zero, float-to-int casts of NaN, and input
dtypes that used to be converted (wrapped, truncated) without a word.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import rdu_compiler
from rdu_compiler.errors import EmulatorError, RduError
from rdu_compiler.fabric import load_fabric
from rdu_compiler.runtime.emulator import Emulator
from testsuite.unit.test_emulator import (
    elementwise as _elementwise,  # one MLIR builder for payload tests
)

CONFIGS = [("sn40l", 0), ("sn40l", 1), ("tiny", 0), ("tiny", 1)]


class Fn(torch.nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, *args):
        return self.fn(*args)


def _run(model, inputs, fabric, opt_level):
    program = rdu_compiler.compile(model, inputs, fabric=fabric, opt_level=opt_level)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # numpy's divide / invalid-cast warnings
        return program.run(*inputs)


def _same_specials(got: torch.Tensor, want: torch.Tensor) -> None:
    """Same shape, dtype, NaN and +-inf positions; finite values close."""
    assert got.shape == want.shape and got.dtype == want.dtype
    g, w = got.double(), want.double()
    assert torch.equal(g.isnan(), w.isnan()), (g, w)
    assert torch.equal(g == math.inf, w == math.inf) and torch.equal(g == -math.inf, w == -math.inf)
    finite = w.isfinite()
    torch.testing.assert_close(g[finite], w[finite], rtol=1e-5, atol=1e-6)


def _rel_l2(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got.double() - want.double()).norm() / want.double().norm())


# ----------------------------------------------------------------------------- 0-d outputs


@pytest.mark.parametrize(("fabric", "opt_level"), CONFIGS)
def test_output_shapes_match_eager_for_every_rank(fabric, opt_level):
    x = torch.randn(4, 8)
    model = Fn(lambda x: (x.sum(), x.mean(), x.amax(), x.sum(1), x.sum(1, keepdim=True), x * 2, x[None]))
    got, want = _run(model, (x,), fabric, opt_level), model(x)
    assert [tuple(g.shape) for g in got] == [tuple(w.shape) for w in want]
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------- GELU (tanh)


class GeluTanhMLP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(64, 256)
        self.act = torch.nn.GELU(approximate="tanh")
        self.fc2 = torch.nn.Linear(256, 64)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


@pytest.mark.parametrize(("fabric", "opt_level"), CONFIGS)
def test_gelu_tanh_matches_eager_to_fp32_rounding(fabric, opt_level):
    torch.manual_seed(0)
    x = torch.randn(8, 64) * 3  # |x| up to ~10: the tanh argument spans its whole range
    act = Fn(lambda x: F.gelu(x, approximate="tanh"))
    assert _rel_l2(_run(act, (x,), fabric, opt_level), act(x)) <= 1e-6
    mlp = GeluTanhMLP().eval()
    with torch.no_grad():
        assert _rel_l2(_run(mlp, (x,), fabric, opt_level), mlp(x)) <= 1e-6


def test_gelu_tanh_bf16_and_gpt2_style_activation():
    from transformers.activations import ACT2FN

    torch.manual_seed(1)
    x = torch.randn(4, 96) * 3
    for name in ("gelu_pytorch_tanh", "gelu_new"):  # F.gelu(tanh), and GPT-2's written-out formula
        act = ACT2FN[name]
        assert _rel_l2(_run(act, (x,), "tiny", 1), act(x)) <= 1e-6, name
    xb = x.bfloat16()
    act = Fn(lambda x: F.gelu(x, approximate="tanh"))
    got, want = _run(act, (xb,), "tiny", 1), act(xb)
    assert got.dtype == torch.bfloat16
    assert (got.float() - want.float()).abs().max() <= 2 ** -8 * want.float().abs().max()


# ----------------------------------------------------------------------------- NaN propagation


def _special_inputs():
    torch.manual_seed(2)
    x, y = torch.randn(4, 8), torch.randn(4, 8)
    x[0, 1], x[1, 2], x[2, 3], x[3, 0] = math.nan, math.inf, -math.inf, math.nan
    y[0, 4], y[2, 5], y[1, 2] = math.nan, math.nan, math.nan
    return x, y


def _min_max_family(x, y):
    return (
        x.clamp(-0.5, 0.5), x.clamp(min=0.0), x.clamp(max=0.2), x.clamp(min=y), x.clamp(max=y),
        torch.maximum(x, y), torch.minimum(x, y), torch.maximum(x, torch.zeros_like(x)),
        torch.relu(x), F.hardtanh(x), F.relu6(x), F.leaky_relu(x), F.elu(x), F.hardswish(x), F.hardsigmoid(x),
        torch.fmax(x, y), torch.fmin(x, y), torch.where(x > y, x, y),
        x.amax(1), x.amin(0), x.max(1).values, x.softmax(1), x.log_softmax(1), F.max_pool1d(x[None], 2)[0],
        x.argmax(1), y.argmin(1), x.max(1).indices, y.min(0).indices,
    )


@pytest.mark.parametrize(("fabric", "opt_level"), CONFIGS)
def test_nan_and_inf_positions_match_eager(fabric, opt_level):
    x, y = _special_inputs()
    model = Fn(_min_max_family)
    got, want = _run_quiet(model, (x, y), fabric, opt_level), model(x, y)
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        try:
            _same_specials(g, w)
        except AssertionError as e:
            raise AssertionError(f"output {i}: {e}") from None


@pytest.mark.parametrize(("fabric", "opt_level"), CONFIGS)
def test_argmax_argmin_pick_the_first_nan_or_the_first_best(fabric, opt_level):
    nan, inf = math.nan, math.inf
    x = torch.tensor([[1.0, nan, 3.0, nan], [-inf, -inf, -inf, -inf], [2.0, 5.0, 5.0, 1.0], [inf, 0.0, inf, -inf]])
    model = Fn(lambda x: (x.argmax(1), x.argmin(0, keepdim=True), x.max(1), x.min(0, keepdim=True), x.argmax(),
                          torch.argmax(x, dim=None, keepdim=True)))
    got, want = _run(model, (x,), fabric, opt_level), model(x)
    flat_got, flat_want = torch.utils._pytree.tree_leaves(got), torch.utils._pytree.tree_leaves(want)
    for g, w in zip(flat_got, flat_want, strict=True):
        _same_specials(g, w)


def _run_quiet(model, inputs, fabric, opt_level):
    program = rdu_compiler.compile(model, inputs, fabric=fabric, opt_level=opt_level)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # inf - inf in softmax, as eager
        return program.run(*inputs)


# ----------------------------------------------------------------------------- integer division


class IntDivisions(torch.nn.Module):
    def __init__(self, kind):
        super().__init__()
        self.kind = kind

    def forward(self, a, b):
        c = a + 1
        if self.kind == "trunc":
            d = torch.div(c, b, rounding_mode="trunc")
        elif self.kind == "floor":
            d = c // b
        elif self.kind == "remainder":
            d = c % b
        else:
            d = torch.fmod(c, b)
        return d * 2


_DIVISION_LINE = {"trunc": "rounding_mode=\"trunc\")", "floor": "d = c // b", "remainder": "d = c % b", "fmod": "torch.fmod(c, b)"}


@pytest.mark.parametrize("kind", ["trunc", "floor", "remainder", "fmod"])
@pytest.mark.parametrize(("fabric", "opt_level"), CONFIGS)
def test_integer_division_matches_eager_and_refuses_zero(kind, fabric, opt_level):
    a = torch.tensor([5, 7, -3, 4, -8, 9, 0, -1], dtype=torch.int32)
    b = torch.tensor([2, -3, 2, 1, 3, -2, 5, 7], dtype=torch.int32)
    model = IntDivisions(kind)
    program = rdu_compiler.compile(model, (a, b), fabric=fabric, opt_level=opt_level)
    torch.testing.assert_close(program.run(a, b), model(a, b))
    zero = b.clone()
    zero[3] = 0
    with pytest.raises(RuntimeError, match="ZeroDivisionError"):
        model(a, zero)
    with pytest.raises(EmulatorError) as info:
        program.run(a, zero)
    text = str(info.value)
    assert "division by zero" in text and "kernel 'k" in text
    assert "test_numerics.py:" in text and _DIVISION_LINE[kind] in text, text


def test_int64_floor_division_is_exact_beyond_2_to_53():
    a = torch.tensor([2**62 + 1, -(2**60) - 3, 2**53 + 1, 7], dtype=torch.int64)
    b = torch.tensor([3, 7, 2, -2], dtype=torch.int64)
    model = Fn(lambda a, b: a // b)
    torch.testing.assert_close(_run(model, (a, b), "tiny", 1), model(a, b), rtol=0, atol=0)


def test_signed_division_overflow_is_refused():
    a = torch.tensor([-(2**31), 4], dtype=torch.int32)
    b = torch.tensor([-1, 2], dtype=torch.int32)
    program = rdu_compiler.compile(Fn(lambda a, b: torch.div(a, b, rounding_mode="trunc")), (a, b), fabric="tiny")
    with pytest.raises(EmulatorError, match="overflow"):
        program.run(a, b)


# ----------------------------------------------------------------------------- float -> int casts


@pytest.mark.parametrize("bad", [math.nan, -math.inf, 3e9, -2.2e9])
def test_float_to_int_cast_of_nan_inf_or_out_of_range_is_refused(bad):
    x = torch.tensor([1.5, -2.7, 100.0, 0.2])
    model = Fn(lambda x: x.to(torch.int32) + 1)
    program = rdu_compiler.compile(model, (x,), fabric="tiny")
    torch.testing.assert_close(program.run(x), model(x))
    x2 = x.clone()
    x2[2] = bad
    with pytest.raises(EmulatorError, match="fptosi") as info:
        program.run(x2)
    assert "test_numerics.py:" in str(info.value)


# ----------------------------------------------------------------------------- input dtypes


def test_wrong_input_dtypes_are_refused():
    a = torch.tensor([1, 2, 3, 4], dtype=torch.int32)
    program = rdu_compiler.compile(Fn(lambda a: a + 1), (a,), fabric="tiny")
    with pytest.raises(RduError, match=r"input 'args_0' \(#0\) has dtype int64 but the model was compiled for int32"):
        program.run(torch.tensor([2**33 + 5, 3, 1, 1]))
    with pytest.raises(RduError, match="has dtype float32 but the model was compiled for int32"):
        program.run(a.float())
    emb = torch.nn.Embedding(10, 4)
    ids = torch.tensor([1, 2, 3])
    program = rdu_compiler.compile(emb, (ids,), fabric="tiny")
    torch.testing.assert_close(program.run(ids), emb(ids))
    with pytest.raises(RduError, match="has dtype float32 but the model was compiled for int64"):
        program.run(torch.tensor([1.7, 2.2, 3.9]))
    x = torch.randn(3, 4)
    program = rdu_compiler.compile(Fn(lambda x: x * 2), (x,), fabric="tiny")
    with pytest.raises(RduError, match="has dtype float64 but the model was compiled for float32"):
        program.run(x.double())


def test_emulator_refuses_integer_arguments_that_would_change():
    a = torch.tensor([1, 2, 3, 4], dtype=torch.int32)
    program = rdu_compiler.compile(Fn(lambda a: a + 1), (a,), fabric="tiny")
    emulator = Emulator(program.module, load_fabric("tiny"))
    (out,), _ = emulator.run([np.array([1, 2, 3, 4], np.int64)])  # exact: accepted
    assert out.tolist() == [2, 3, 4, 5]
    with pytest.raises(EmulatorError, match="do not convert exactly"):
        emulator.run([np.array([2**33, 2, 3, 4], np.int64)])
    with pytest.raises(EmulatorError, match="do not convert exactly"):
        emulator.run([np.array([1.5, 2, 3, 4])])


# ----------------------------------------------------------------------------- payload ops on MLIR




def _emulate(text: str, *args: np.ndarray) -> list[np.ndarray]:
    from rdu_compiler.ir import parse_module
    from rdu_compiler.pipeline import pipeline, run_pipeline

    module = parse_module(text)
    run_pipeline(module, pipeline("tiny", 1))
    outputs, _ = Emulator(module, load_fabric("tiny")).run(list(args))
    return outputs


def test_math_round_is_half_away_from_zero_without_rounding_the_sum():
    x = np.array([0.49999997, -0.49999997, 2.0**23 + 1, -(2.0**23) - 1, 2.5, -2.5, 0.5, -0.3, 1.5, np.inf, np.nan], np.float32)
    (out,) = _emulate(_elementwise("%q = math.round %x0 : f32", ["f32"], "f32", len(x)), x)
    want = np.array([0.0, -0.0, 2.0**23 + 1, -(2.0**23) - 1, 3.0, -3.0, 1.0, -0.0, 2.0, np.inf, np.nan], np.float32)
    np.testing.assert_array_equal(out, want)
    assert np.array_equal(np.signbit(out), np.signbit(want))


@pytest.mark.parametrize("op", ["arith.divui", "arith.remui", "arith.floordivsi", "arith.ceildivsi", "arith.remsi"])
def test_every_integer_division_op_refuses_a_zero_divisor(op):
    a, b = np.array([7, 8, 9, 10], np.int32), np.array([2, 0, 3, 1], np.int32)
    text = _elementwise(f"%q = {op} %x0, %x1 : i32", ["i32", "i32"], "i32", 4)
    with pytest.raises(EmulatorError, match=rf"kernel 'k\d+_map': integer division by zero \('{op}'\)"):
        _emulate(text, a, b)
    (out,) = _emulate(text, a, np.array([2, 5, 3, 1], np.int32))
    assert out.shape == (4,)


# ----------------------------------------------------------------------------- uint8 at the boundary


@pytest.mark.parametrize(("fabric", "opt_level"), CONFIGS)
def test_uint8_inputs_and_outputs_keep_eager_dtype_and_values(fabric, opt_level):
    """uint8 is the program's signless i8: 255 used to come back as int8 -1, and torch-mlir's
    comparisons, max, divisions, shifts, sorts and sums read it as signed (200 < 100)."""
    x = torch.tensor([[0.0, 1.7, 128.0, 255.0], [3.0, 200.9, 64.0, 127.0]])
    img = torch.tensor([[0, 1, 128, 255], [3, 200, 64, 127]], dtype=torch.uint8)
    model = Fn(lambda x, img: (
        x.to(torch.uint8), img, img.float() * 0.5, img // 2, img % 7, img > 100, img < img.flip(1), img.max(1).values,
        img.argmax(1), torch.maximum(img, img.flip(1)), img.clamp(10, 150), img >> 2, img.sort(1).values, img.sum(1),
        img.prod(1), img.int() + 1, img * 2, img * img,
    ))
    got, want = _run(model, (x, img), fabric, opt_level), model(x, img)
    for g, w in zip(got, want, strict=True):
        assert g.dtype == w.dtype and g.shape == w.shape
        torch.testing.assert_close(g, w, rtol=0, atol=0)


def test_uint8_weights_keep_their_bits():
    class Lut(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("table", torch.tensor([0, 100, 200, 255], dtype=torch.uint8))

        def forward(self, x):
            return self.table.float() * x

    x = torch.ones(4)
    model = Lut()
    torch.testing.assert_close(_run(model, (x,), "tiny", 1), model(x))


def test_onnx_program_run_keeps_uint8_outputs() -> None:
    """`CompiledProgram.run` on an ONNX program returns the graph's declared uint8, not the
    program's signless i8 read as int8 (250 + 3 came back as -3)."""
    from onnx import TensorProto, helper

    u8 = [helper.make_tensor_value_info(n, TensorProto.UINT8, [4]) for n in ("x", "y", "z")]
    graph = helper.make_graph([helper.make_node("Add", ["x", "y"], ["z"])], "g", u8[:2], u8[2:])
    program = rdu_compiler.compile_onnx(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    (out,) = program.run(np.array([250, 1, 2, 3], np.uint8), np.array([3, 1, 2, 3], np.uint8))
    assert out.dtype == np.uint8 and out.tolist() == [253, 2, 4, 6]


def test_aliased_example_inputs_compile_as_separate_inputs():
    """The same tensor passed twice (or a view of another input) as example inputs: torch
    .export traced both as one value, so the program ignored the second input and returned
    3a for 2a + b: a silent wrong number. Aliased example inputs are copied first."""
    model = Fn(lambda a, b: a * 2 + b)
    x, y = torch.randn(3), torch.randn(3)
    for example in ((x, x), (x, x[0:3])):
        program = rdu_compiler.compile(model, example, fabric="tiny")
        torch.testing.assert_close(program.run(x, y), model(x, y))
