"""`ir.parse_module` parses a repeated op signature or properties text once (issue 11)."""

from __future__ import annotations

import io

from xdsl.dialects.builtin import IntegerAttr, i64
from xdsl.parser import Parser
from xdsl.printer import Printer

from rdu_compiler.ir import make_context, make_parser, parse_module

CUSTOM = """
func.func @main(%x: tensor<16x32xf32>, %m: memref<4xf32, strided<[1], offset: 2>>) -> tensor<16x32xf32> {
  %e = tensor.empty() : tensor<16x32xf32>
  %r = linalg.generic {indexing_maps = [affine_map<(i, j) -> (i, j)>, affine_map<(i, j) -> (i, j)>],
                       iterator_types = ["parallel", "parallel"]} ins(%x : tensor<16x32xf32>) outs(%e : tensor<16x32xf32>) {
  ^bb0(%a: f32, %b: f32):
    %n = arith.negf %a : f32
    linalg.yield %n : f32
  } -> tensor<16x32xf32>
  %s = linalg.generic {indexing_maps = [affine_map<(i, j) -> (i, j)>, affine_map<(i, j) -> (i, j)>],
                       iterator_types = ["parallel", "parallel"]} ins(%r : tensor<16x32xf32>) outs(%e : tensor<16x32xf32>) {
  ^bb0(%a: f32, %b: f32):
    %n = arith.negf %a : f32
    linalg.yield %n : f32
  } -> tensor<16x32xf32>
  %c = "test.cast"(%m) : (memref<4xf32, strided<[1], offset: 2>>) -> memref<4xf32, strided<[1], offset: 2>>
  %d = "test.cast"(%c) : (memref<4xf32, strided<[1], offset: 2>>) -> memref<4xf32, strided<[1], offset: 2>>
  %t = "test.named"(%s) <{sym_name = "a", v = 1 : i64}> : (tensor<16x32xf32>) -> tensor<16x32xf32>
  %u = "test.named"(%t) <{sym_name = "a", v = 1 : i64}> : (tensor<16x32xf32>) -> tensor<16x32xf32>
  return %u : tensor<16x32xf32>
}
"""


def _generic(text: str) -> str:
    out = io.StringIO()
    Printer(stream=out, print_generic_format=True).print_op(Parser(make_context(), text).parse_module())
    return out.getvalue()


def test_memoized_parse_prints_what_xdsl_parses() -> None:
    text = _generic(CUSTOM)
    plain = _generic(text)
    parser = make_parser(make_context(), text)
    ours = parser.parse_module()
    out = io.StringIO()
    Printer(stream=out, print_generic_format=True).print_op(ours)
    assert out.getvalue() == plain
    memo: dict[tuple[int, str], object] = getattr(parser, "_memo")  # noqa: B009
    kinds = {kind for kind, _ in memo}
    assert kinds == {0, 1}, "the repeated signatures and linalg properties were parsed once"
    # a signature with a strided layout (spaces, commas) is longer than the pattern: never memoized
    assert not any("memref" in t for _, t in memo)


def test_ops_sharing_a_memoized_properties_text_do_not_share_the_dict() -> None:
    module = parse_module(_generic(CUSTOM))
    ops = [op for op in module.walk() if op.name == "linalg.generic"]
    assert len(ops) == 2 and ops[0].properties == ops[1].properties
    ops[0].properties["extra"] = IntegerAttr(3, i64)
    assert "extra" not in ops[1].properties
