"""NaN, rounding and 0-d semantics of the Triton backend against the emulator and eager.

Runs on Triton's interpreter without a GPU (`prepare()` before triton is imported), like
test_triton.py.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rdu_compiler.runtime.triton.settings import prepare

os.environ.setdefault("RDU_TRITON_AUTOTUNE", "0")
SETTINGS = prepare()
pytest.importorskip("triton")
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # masked lanes in the interpreter

import rdu_compiler  # noqa: E402
from rdu_compiler.fabric import load_fabric  # noqa: E402
from rdu_compiler.ir import parse_module  # noqa: E402
from rdu_compiler.pipeline import pipeline, run_pipeline  # noqa: E402
from rdu_compiler.runtime.emulator import Emulator  # noqa: E402
from rdu_compiler.runtime.triton import generate  # noqa: E402
from rdu_compiler.runtime.triton.reference import _REDUCE  # noqa: E402
from rdu_compiler.runtime.triton.runner import TritonRunner  # noqa: E402
from testsuite.unit.test_numerics import (  # noqa: E402
    Fn,
    _elementwise,
    _min_max_family,
    _same_specials,
    _special_inputs,
)


def _triton_vs_emulator(text: str, *args: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
    module = parse_module(text)
    run_pipeline(module, pipeline("tiny", 1))
    want, _ = Emulator(module, load_fabric("tiny")).run(list(args))
    got = TritonRunner(generate(module), {}).run(*[torch.from_numpy(a) for a in args])
    return [g.cpu().numpy() for g in got], want


@pytest.mark.parametrize("op", ["maximumf", "minimumf", "maxnumf", "minnumf"])
def test_float_min_max_with_nan_match_the_emulator(op):
    a = np.array([1.0, np.nan, 2.0, np.nan, -0.0, 3.0, np.inf, -np.inf], np.float32)
    b = np.array([1.0, 1.0, np.nan, np.nan, 0.0, -3.0, np.nan, 5.0], np.float32)
    (got,), (want,) = _triton_vs_emulator(_elementwise(f"%q = arith.{op} %x0, %x1 : f32", ["f32", "f32"], "f32", 8), a, b)
    np.testing.assert_array_equal(got, want)
    assert np.isnan(want).any()


def test_math_round_matches_the_emulator():
    x = np.array([0.49999997, -0.49999997, 2.0**23 + 1, -(2.0**23) - 1, 2.5, -2.5, 0.5, -0.3, 1.5], np.float32)
    (got,), (want,) = _triton_vs_emulator(_elementwise("%q = math.round %x0 : f32", ["f32"], "f32", len(x)), x)
    np.testing.assert_array_equal(got, want)


def test_reference_num_reductions_ignore_nan():
    x = torch.tensor([[1.0, math.nan, 3.0], [math.nan] * 3, [-1.0, -2.0, math.nan]])
    assert _REDUCE["arith.maxnumf"](x, (1,)).flatten().tolist()[::2] == [3.0, -1.0]
    assert _REDUCE["arith.minnumf"](x, (1,)).flatten().tolist()[::2] == [1.0, -2.0]
    assert math.isnan(_REDUCE["arith.maxnumf"](x, (1,))[1, 0]) and math.isnan(_REDUCE["arith.maximumf"](x, (1,))[0, 0])


def test_nan_family_on_triton_matches_eager():
    x, y = _special_inputs()
    # without the last four (argmax / argmin indices: the Triton generator has no index-of-best reduction)
    model = Fn(lambda x, y: (*_min_max_family(x, y)[:-4], F.gelu(x.nan_to_num(0, 5, -5), approximate="tanh")))
    program = rdu_compiler.compile(model, (x, y), fabric="tiny", opt_level=1)
    got, want = program.run(x, y, target="triton"), model(x, y)
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        try:
            _same_specials(g.cpu(), w)
        except AssertionError as e:
            raise AssertionError(f"output {i}: {e}") from None


@pytest.mark.parametrize("fabric", ["sn40l", "tiny"])
def test_0d_outputs_on_triton(fabric):
    """A full reduction's one-row result used to be stored through a scalar pointer with a
    block value, which Triton refuses."""
    x = torch.randn(4, 8)
    model = Fn(lambda x: (x.sum(), x.mean(), x.amax(), x.sum(1)))
    got = rdu_compiler.compile(model, (x,), fabric=fabric, opt_level=1).run(x, target="triton")
    for g, w in zip(got, model(x), strict=True):
        assert g.shape == w.shape
        torch.testing.assert_close(g.cpu(), w)


def test_triton_target_refuses_wrong_input_dtypes():
    from rdu_compiler.errors import RduError

    a = torch.tensor([1, 2, 3, 4], dtype=torch.int32)
    program = rdu_compiler.compile(Fn(lambda a: a + 1), (a,), fabric="tiny")
    with pytest.raises(RduError, match="has dtype int64 but the model was compiled for int32"):
        program.run(a.long(), target="triton")


def test_integer_division_by_zero_on_triton_is_refused_like_the_emulator():
    """Used to return numbers (0 for 5 // 0): the generated kernel had no check, and a
    `tl.device_assert` would not do, since Triton drops it unless built with debug (always,
    in the interpreter). The kernel now sets a flag the launcher raises after the run."""
    from rdu_compiler.errors import EmulatorError

    model = Fn(lambda a, b: (a // b, a % b))
    a = torch.tensor([7, -7, 5, 3], dtype=torch.int32)
    ok = torch.tensor([2, 2, 3, 1], dtype=torch.int32)
    program = rdu_compiler.compile(model, (a, ok), fabric="tiny")
    for g, w in zip(program.run(a, ok, target="triton"), model(a, ok), strict=True):
        assert torch.equal(g.cpu(), w)
    for b in (torch.tensor([2, 2, 0, 1], dtype=torch.int32), torch.tensor([1, 1, 1, 0], dtype=torch.int32)):
        with pytest.raises(EmulatorError, match=r"kernel 'k\d+_\w+': integer division by zero .*target 'triton'.*model line"):
            program.run(a, b, target="triton")
    low = torch.tensor([-(2**31), 1, 2, 3], dtype=torch.int32)
    with pytest.raises(EmulatorError, match="integer division overflow"):
        program.run(low, torch.tensor([-1, 1, 1, 1], dtype=torch.int32), target="triton")


def test_gather_out_of_bounds_on_triton_is_refused():
    """An embedding index past the table: the emulator refuses it; the Triton target used
    to read zeros through its masked load (the device assert was a no-op)."""
    from rdu_compiler.errors import EmulatorError

    torch.manual_seed(0)
    emb = torch.nn.Embedding(5, 3)
    ids = torch.tensor([0, 4, 2])
    program = rdu_compiler.compile(emb, (ids,), fabric="tiny")
    torch.testing.assert_close(program.run(ids, target="triton").cpu(), emb(ids).detach())
    with pytest.raises(EmulatorError, match=r"kernel 'k\d+_\w+': .*target 'triton'"):
        program.run(torch.tensor([0, 5, 2]), target="triton")
