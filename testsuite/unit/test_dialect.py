"""The rdu dialect: every op built with its convenience constructor verifies, and prints
back the same after parsing, in custom and in generic form (print -> parse -> print is a
fixed point, and the generic form parses back to the same custom text)."""

from __future__ import annotations

import io

import pytest
from xdsl.dialects import arith, func
from xdsl.dialects.builtin import (
    AffineMapAttr,
    FloatAttr,
    IntegerAttr,
    IntegerType,
    ModuleOp,
    TensorType,
    f32,
)
from xdsl.dialects.linalg.attrs import IteratorType, IteratorTypeAttr
from xdsl.ir import Block, Operation, Region
from xdsl.ir.affine import AffineMap
from xdsl.printer import Printer
from xdsl.utils.exceptions import VerifyException

from rdu_compiler.dialects import rdu
from rdu_compiler.ir import parse_module


def _print(op: Operation, generic: bool) -> str:
    out = io.StringIO()
    Printer(stream=out, print_generic_format=generic).print_op(op)
    return out.getvalue()


def _program() -> ModuleOp:
    """A function with a section (load, kernel with rdu.index, view, store, yield) and
    the three layout ops on tensors."""
    t48, t32 = TensorType(f32, [4, 8]), TensorType(f32, [32])
    fn = func.FuncOp("f", ([t48, t48], [t32, TensorType(f32, [8, 8]), TensorType(f32, [6, 10]), TensorType(f32, [4, 4])]))
    x, y = fn.body.block.args
    section_body = Block()
    load = rdu.LoadOp(x, rdu.Tier.DDR)
    payload = Block(arg_types=[f32, f32])
    index = rdu.IndexOp(1)
    cast = arith.IndexCastOp(index.result, IntegerType(32))
    conv = arith.SIToFPOp(cast.result, f32)
    add = arith.AddfOp(payload.args[0], conv.result)
    payload.add_ops([index, cast, conv, add, rdu.YieldOp(add.result)])
    ident = AffineMapAttr(AffineMap.identity(2))
    kernel = rdu.KernelOp(
        [load.result], [x], [], [rdu.as_stream(t48)], rdu.Pattern.MAP, [4, 8], [ident, ident],
        [IteratorTypeAttr(IteratorType.PARALLEL)] * 2, Region(payload), {},
    )
    flat = rdu.ViewOp(kernel.results[0], rdu.as_stream(t32))
    store = rdu.StoreOp(flat.result)
    section_body.add_ops([load, kernel, flat, store, rdu.YieldOp(store.result)])
    section = rdu.SectionOp("s0", [t32], Region(section_body), 8, 8, "end of program")
    concat = rdu.ConcatOp([x, y], TensorType(f32, [8, 8]), 0)
    zero = arith.ConstantOp(FloatAttr(0.0, f32))
    pad = rdu.PadOp(x, zero.result, TensorType(f32, [6, 10]), [1, 1], [1, 1])
    window = rdu.ViewOp(x, TensorType(f32, [4, 4]), rdu.ViewMode.SLICE, [0, 1], [4, 4], [1, 2])
    ret = func.ReturnOp(section.results[0], concat.result, pad.result, window.result)
    reduced = rdu.AllReduceOp(x, 2)  # the tensor-parallel ops (collectives.py)
    gathered = rdu.AllGatherOp(x, TensorType(f32, [4, 16]), 1, 2)
    mine = rdu.ShardOp(y, TensorType(f32, [4, 4]), 1, 2, blocks=2)
    fn.body.block.add_ops([section, concat, zero, pad, window, reduced, gathered, mine, ret])
    return ModuleOp([fn, *_stages(t48)])


def _stages(t: TensorType) -> list[func.FuncOp]:
    """Two stage programs: stage 0 sends its argument to stage 1 on channel 0 (p2p.py)."""
    s0 = func.FuncOp("forward_stage0", ([t], []))
    s0.body.block.add_ops([rdu.SendOp(s0.body.block.args[0], 1, 0), func.ReturnOp()])
    s1 = func.FuncOp("forward_stage1", ([], [t]))
    recv = rdu.RecvOp(t, 0, 0)
    s1.body.block.add_ops([recv, func.ReturnOp(recv.result)])
    for i, fn in enumerate((s0, s1)):
        fn.attributes[rdu.STAGE_ATTR] = IntegerAttr(i, 64)
    return [s0, s1]


def test_every_op_is_built_and_verifies() -> None:
    module = _program()
    module.verify()
    names = {op.name for op in module.walk() if op.dialect_name() == "rdu"}
    assert names == {o.name for o in rdu.RDU.operations}


@pytest.mark.parametrize("generic", [False, True])
def test_print_parse_print_is_a_fixed_point(generic: bool) -> None:
    text = _print(_program(), generic)
    again = _print(parse_module(text), generic)
    assert again == text


def test_generic_form_parses_back_to_the_custom_text() -> None:
    module = _program()
    assert _print(parse_module(_print(module, True)), False) == _print(module, False)


def test_custom_syntax_of_transfer_and_layout_ops() -> None:
    text = _print(_program(), False)
    for line in (
        "%3 = rdu.load %0 from <ddr> : tensor<4x8xf32> -> !rdu.stream<4x8xf32>",
        "%7 = rdu.index 1 : index",
        "rdu.yield %10 : f32",
        "%11 = rdu.view %4 <reshape> : !rdu.stream<4x8xf32> -> !rdu.stream<32xf32>",
        "%12 = rdu.store %11 to <hbm> : !rdu.stream<32xf32> -> tensor<32xf32>",
        "rdu.yield %12 : tensor<32xf32>",
        "rdu.concat %0, %1 dim 0 : (tensor<4x8xf32>, tensor<4x8xf32>) -> tensor<8x8xf32>",
        "rdu.pad %0 low [1, 1] high [1, 1] value %14 : tensor<4x8xf32>, f32 -> tensor<6x10xf32>",
        "rdu.view %0 <slice> offsets [0, 1] sizes [4, 4] strides [1, 2] : tensor<4x8xf32> -> tensor<4x4xf32>",
        "rdu.send %0 to 1 channel 0 : tensor<4x8xf32>",
        "%0 = rdu.recv from 0 channel 0 : tensor<4x8xf32>",
    ):
        assert line in text, line


def test_constructor_arguments_are_verified() -> None:
    module = _program()
    fn = module.body.block.first_op
    assert isinstance(fn, func.FuncOp)
    bad = rdu.ViewOp(fn.body.block.args[0], TensorType(f32, [30]))  # 32 elements cannot become 30
    first = fn.body.block.first_op
    assert first is not None
    fn.body.block.insert_op_before(bad, first)
    with pytest.raises(VerifyException, match="keeps the element count"):
        module.verify()
