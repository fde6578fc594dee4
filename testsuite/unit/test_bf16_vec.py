"""bf16 element-wise ops and f32 -> bf16 rounding on torch's loops (`interpreters.bf16_vec`):
ml_dtypes' bits on every bf16 value (NaN payloads, infinities, subnormals), with array and
scalar operands, broadcast, strided and read-only views; a forked child still computes;
`RDU_BF16_ELEMENTWISE=numpy` switches it off; a bf16 model has the same bits on and off.
`scripts/check_bf16_vec.py` checks all 2^32 operand pairs and f32 patterns (minutes)."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from typing import Any

import numpy as np
import pytest
import torch

import rdu_compiler
from rdu_compiler.frontend.torch.model_file import load_model_file
from rdu_compiler.interpreters import bf16_vec
from rdu_compiler.interpreters.bf16 import BF16, all_values
from rdu_compiler.runtime.emulator import Emulator

UFUNCS = [np.add, np.subtract, np.multiply, np.divide]

pytestmark = pytest.mark.skipif(not bf16_vec.available(), reason="RDU_BF16_ELEMENTWISE=numpy")


def _bits(x: Any) -> np.ndarray:
    return np.asarray(x).view(np.uint16)


def _others() -> np.ndarray:
    """A spread of second operands: the specials (signed zeros, infinities, NaNs with
    different signs and payloads, the smallest subnormal, the largest finite) and 160
    random bit patterns."""
    special = [0x0000, 0x8000, 0x7F80, 0xFF80, 0x7FC0, 0xFFC0, 0x7F81, 0xFFFF, 0x7FA5, 0x0001, 0x8001,
               0x007F, 0x0080, 0x7F7F, 0xFF7F, 0x3F80, 0xBF80, 0x4000, 0x3F81]
    rng = np.random.default_rng(11)
    return np.concatenate([np.array(special, np.uint16), rng.integers(0, 1 << 16, 160, dtype=np.uint16)]).view(BF16)


@pytest.mark.parametrize("uf", UFUNCS, ids=lambda u: u.__name__)
def test_every_bf16_value_against_a_spread_has_ml_dtypes_bits(uf: np.ufunc) -> None:
    x, y = all_values()[:, None], _others()[None, :]
    with np.errstate(all="ignore"):
        got, want = bf16_vec.binary(uf, x, y), uf(x, y)
        assert got is not None and got.shape == want.shape and got.dtype == BF16
        assert np.array_equal(_bits(got), _bits(want))
        flipped = bf16_vec.binary(uf, y.T, x.T)  # the spread first: the other operand order
        assert flipped is not None and np.array_equal(_bits(flipped), _bits(uf(y.T, x.T)))


@pytest.mark.parametrize("uf", UFUNCS, ids=lambda u: u.__name__)
def test_a_scalar_operand_has_ml_dtypes_bits(uf: np.ufunc) -> None:
    """torch takes a 0-d operand through a loop of its own (the scalar kept in f32)."""
    xs = all_values()
    with np.errstate(all="ignore"):
        for v in _others()[:40]:
            for got, want in ((bf16_vec.binary(uf, xs, v), uf(xs, v)), (bf16_vec.binary(uf, v, xs), uf(v, xs))):
                assert got is not None and np.array_equal(_bits(got), _bits(want)), v


def test_strided_broadcast_and_read_only_views() -> None:
    rng = np.random.default_rng(3)
    a = rng.standard_normal((12, 128, 256)).astype(BF16)
    mask = rng.standard_normal((128, 128)).astype(BF16)
    window = a[:, :, 64:192]  # a strided window
    trans = a[:, :, :128].transpose(0, 2, 1)  # no unit-stride inner dim in order
    frozen = np.broadcast_to(mask, (12, 128, 128))  # read-only, zero strides
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch's "not writable" warning is not let out
        for x, y in ((window, mask), (trans, frozen), (frozen, window)):
            for uf in UFUNCS:
                got = bf16_vec.binary(uf, x, y)
                assert got is not None and np.array_equal(_bits(got), _bits(uf(x, y)))


def test_what_it_leaves_to_numpy() -> None:
    small = np.ones(bf16_vec.MIN_ELEMENTS - 1, BF16)
    big = np.ones(bf16_vec.MIN_ELEMENTS, BF16)
    assert bf16_vec.binary(np.add, small, small) is None
    assert bf16_vec.binary(np.add, big, big) is not None
    assert bf16_vec.binary(np.maximum, big, big) is None  # no torch loop here for it
    assert bf16_vec.binary(np.add, big.astype(np.float32), big.astype(np.float32)) is None
    assert bf16_vec.binary(np.add, big[::-1], big) is None  # a negative stride
    assert bf16_vec.to_bf16(np.ones(bf16_vec.MIN_CAST_ELEMENTS, np.float64)) is None
    assert bf16_vec.to_bf16(np.ones(bf16_vec.MIN_CAST_ELEMENTS - 1, np.float32)) is None
    assert bf16_vec.to_bf16(np.ones(bf16_vec.MIN_CAST_ELEMENTS, np.float32)) is not None
    packed = np.zeros(bf16_vec.MIN_ELEMENTS, dtype=[("a", BF16), ("b", np.uint8)])["a"]  # a 3-byte stride
    assert bf16_vec.binary(np.add, packed, packed) is None
    n = bf16_vec.MIN_CAST_ELEMENTS
    one_element = np.lib.stride_tricks.as_strided(np.zeros(1, BF16), (n,), (0,), writeable=True)
    assert bf16_vec.to_bf16(np.ones(n, np.float32), out=one_element) is None  # each element written n times
    with pytest.raises(ValueError):  # numpy's error, not torch's
        bf16_vec.binary(np.add, big, np.ones(3, BF16))


def _f32_sample() -> np.ndarray:
    """f32 bit patterns around every rounding boundary: each exponent (subnormals, inf and
    NaN included) and sign, with low halves at and beside the tie (0x8000) and the ends,
    with either parity of the kept bit; plus 4M random patterns."""
    hi = np.arange(1 << 16, dtype=np.uint32) << 16
    lows = np.array([0, 1, 0x7FFF, 0x8000, 0x8001, 0xFFFF], np.uint32)
    edges = (hi[:, None] | lows[None, :]).ravel()
    rng = np.random.default_rng(5)
    return np.concatenate([edges, rng.integers(0, 1 << 32, 1 << 22, dtype=np.uint32)]).view(np.float32)


def test_rounding_to_bf16_has_ml_dtypes_bits() -> None:
    x = _f32_sample()
    got = bf16_vec.to_bf16(x)
    with np.errstate(invalid="ignore"):  # the reference cast warns on the NaN patterns
        want = x.astype(BF16)
    assert got is not None and np.array_equal(_bits(got), _bits(want))
    target = np.zeros((2, x.size), BF16)[:, ::2][0]  # into a strided slice
    y = x[: target.size]
    assert bf16_vec.to_bf16(y, out=target) is target
    assert np.array_equal(_bits(target), _bits(want[: target.size]))


_CHILD = """
import hashlib, multiprocessing as mp
import numpy as np, torch
from rdu_compiler.interpreters import bf16_vec
from rdu_compiler.interpreters.bf16 import BF16

def op(seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(1 << 20).astype(BF16)
    return hashlib.sha256(bf16_vec.binary(np.divide, x, x[::-1].copy()).tobytes()).hexdigest()

if __name__ == "__main__":
    torch.set_num_threads(2)
    a = torch.randn(1 << 20, dtype=torch.bfloat16)
    torch.add(a, a)  # the parent's own two-thread op: its OpenMP pool exists
    print("parent", op(0))
    with mp.get_context("fork").Pool(2) as pool:
        print("children", *pool.map(op, [0, 0, 1]))
"""


def test_a_forked_child_computes_after_its_parent_did(tmp_path: Any) -> None:
    script = tmp_path / "child.py"
    script.write_text(_CHILD)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=True)
    words = out.stdout.split()
    parent, children = words[1], words[3:]
    assert children[0] == parent and children[1] == parent and children[2] != parent


def test_the_environment_switch() -> None:
    code = ("import numpy as np; from rdu_compiler.interpreters import bf16_vec; from rdu_compiler.interpreters.bf16 import BF16; "
            "x = np.ones(1 << 16, BF16); print(bf16_vec.available(), bf16_vec.binary(np.add, x, x), bf16_vec.to_bf16(x.astype(np.float32)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True,
                         env={**os.environ, "RDU_BF16_ELEMENTWISE": "numpy"})
    assert out.stdout.split() == ["False", "None", "None"]


def test_a_bf16_model_has_the_same_bits_on_and_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """GPT-2 2-layer in bf16 (softmax's scale, mask and divide, LayerNorm, GELU, residuals):
    torch's loops on, then off (NaN and inf operands: the tests above)."""
    model, inputs = load_model_file("examples/gpt2_2layer.py")
    model = model.to(torch.bfloat16)
    program = rdu_compiler.compile(model, inputs, fabric="sn40l")
    args = program._arguments(inputs)
    monkeypatch.setattr(bf16_vec, "MIN_ELEMENTS", 0)  # every bf16 op of the small model through torch
    monkeypatch.setattr(bf16_vec, "MIN_CAST_ELEMENTS", 0)
    used: list[Any] = []
    real = bf16_vec.binary

    def spy(*a: Any) -> Any:
        r = real(*a)
        if r is not None:
            used.append(a[0])
        return r

    monkeypatch.setattr(bf16_vec, "binary", spy)
    with np.errstate(all="ignore"):
        on, _ = Emulator(program.module, program.fabric).run(args)
        assert set(UFUNCS) <= set(used), "the model no longer reaches torch's loops"
        monkeypatch.setattr(bf16_vec, "_STATE", {"pid": os.getpid(), "torch": None})
        off, _ = Emulator(program.module, program.fabric).run(args)
    assert len(on) == len(off)
    for x, y in zip(on, off, strict=True):
        assert x.dtype == y.dtype and np.array_equal(np.asarray(x).view(np.uint8), np.asarray(y).view(np.uint8))
