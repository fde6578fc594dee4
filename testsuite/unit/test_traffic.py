"""The byte-counting rules of `kernel.traffic`, checked against the emulator's counters.

The cost model counts operand traffic with `kernel_traffic` (and `counted_operands`); the
emulator counts the bytes its tile loop really cuts out of each operand. Both must agree
per kernel and per operand, and both must agree with the traffic worked out by hand from
the chosen tiles (so a rule wrong in both places fails here too).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from xdsl.dialects import tensor

from rdu_compiler.dialects import rdu
from rdu_compiler.dtypes import numpy_dtype
from rdu_compiler.fabric import load_fabric
from rdu_compiler.interpreters.kernel import Empty
from rdu_compiler.ir import parse_module
from rdu_compiler.kernel.traffic import counted_operands, kernel_traffic
from rdu_compiler.passes.common import kernels
from rdu_compiler.pipeline import pipeline, run_pipeline
from rdu_compiler.runtime.emulator import Emulator

TINY = load_fabric("tiny")

MATMUL = """
func.func @main(%a: tensor<64x512xf32>, %b: tensor<512x48xf32>) -> tensor<64x48xf32> {
  %z = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<64x48xf32>
  %c = linalg.fill ins(%z : f32) outs(%e : tensor<64x48xf32>) -> tensor<64x48xf32>
  %m = linalg.matmul ins(%a, %b : tensor<64x512xf32>, tensor<512x48xf32>) outs(%c : tensor<64x48xf32>) -> tensor<64x48xf32>
  return %m : tensor<64x48xf32>
}
"""

ADD = """
func.func @main(%a: tensor<4096xf32>, %b: tensor<4096xf32>) -> tensor<4096xf32> {
  %e = tensor.empty() : tensor<4096xf32>
  %r = linalg.generic {indexing_maps = [affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>], iterator_types = ["parallel"]} ins(%a, %b : tensor<4096xf32>, tensor<4096xf32>) outs(%e : tensor<4096xf32>) {
  ^bb0(%x: f32, %y: f32, %o: f32):
    %q = arith.addf %x, %y : f32
    linalg.yield %q : f32
  } -> tensor<4096xf32>
  return %r : tensor<4096xf32>
}
"""


def _compiled(text: str) -> Any:
    module = parse_module(text)
    run_pipeline(module, pipeline("tiny", 1))
    return module


def _value(v: Any) -> Any:
    elt = rdu.element_type_of(v.type)
    shape = tuple(rdu.shape_of(v.type)) if hasattr(v.type, "get_shape") else ()
    if isinstance(v.owner, tensor.EmptyOp):
        return Empty(shape, numpy_dtype(elt))
    return np.ones(shape, numpy_dtype(elt))


def _measured(module: Any) -> dict[str, tuple[list[int], list[int], rdu.KernelOp]]:
    emulator = Emulator(module, TINY)
    out = {}
    for k in kernels(module):
        ex = emulator.executors[k]
        _, stats = ex.run([_value(v) for v in k.inputs], [_value(v) for v in k.inits], [_value(v) for v in k.captures])
        out[k.label] = (stats.operand_bytes, kernel_traffic(k), k)
    return out


def test_matmul_traffic_rule_matches_emulator_and_hand_count() -> None:
    measured = _measured(_compiled(MATMUL))
    (emulated, static, k), = [m for m in measured.values() if m[2].kind.data == rdu.Pattern.MATMUL]
    assert emulated == static
    tm, tn, _tk = (min(t, d) for t, d in zip(k.tile_sizes, k.domain_sizes, strict=True))
    # a (64x512) is re-read once per tile of n; b (512x48) once per tile of m; the
    # accumulator (a folded fill) is not read from a tensor
    expect_a = 64 * 512 * 4 * math.ceil(48 / tn)
    expect_b = 512 * 48 * 4 * math.ceil(64 / tm)
    assert static[:2] == [expect_a, expect_b]


def test_map_does_not_count_its_unread_empty_init() -> None:
    measured = _measured(_compiled(ADD))
    for emulated, static, k in measured.values():
        assert emulated == static
        assert counted_operands(k) == [True, True, False]
        assert static == [4096 * 4, 4096 * 4, 0]


SQUARE_TIMES_TRANSPOSE = """
func.func @main(%a: tensor<64x64xf32>) -> tensor<64x64xf32> {
  %e = tensor.empty() : tensor<64x64xf32>
  %r = linalg.generic {indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d1, d0)>, affine_map<(d0, d1) -> (d0, d1)>], iterator_types = ["parallel", "parallel"]} ins(%a, %a, %a : tensor<64x64xf32>, tensor<64x64xf32>, tensor<64x64xf32>) outs(%e : tensor<64x64xf32>) {
  ^bb0(%x: f32, %y: f32, %t: f32, %o: f32):
    %s = arith.mulf %x, %y : f32
    %q = arith.mulf %s, %t : f32
    linalg.yield %q : f32
  } -> tensor<64x64xf32>
  return %r : tensor<64x64xf32>
}
"""


def test_the_same_tensor_read_with_the_same_access_is_counted_once() -> None:
    """x[i, j] * x[i, j] * x[j, i]: the second read of `a` at (i, j) is the first's stream (a
    PMU reads it once); the read at (j, i) is another access and counts."""
    measured = _measured(_compiled(SQUARE_TIMES_TRANSPOSE))
    (emulated, static, k), = [m for m in measured.values() if len(list(m[2].inputs)) == 3]
    assert emulated == static
    assert counted_operands(k) == [True, False, True, False]
    assert static == [64 * 64 * 4, 0, 64 * 64 * 4, 0]
