"""One table of payload-op semantics (`interpreters.payload.PAYLOAD_OPS`) and its users.

The emulator and constant folding evaluate the table; the Triton generator has a rule for
every op of it except the ones it refuses by name with a reason (`REFUSED`); the torch
reference of generated kernels accepts every op of it. These tests fail when a user
accepts an op the table lacks or refuses one the table has (the drift of issue 12:
arith.bitcast only in Triton, nine math ops only in the emulator, 6 of 10 cmpi predicates
in the torch reference, extui/uitofp read as signed casts by the reference).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from xdsl.dialects import func

from rdu_compiler.errors import CompileError
from rdu_compiler.interpreters.payload import PAYLOAD_OPS, OpKey, evaluate_op, op_key
from rdu_compiler.ir import parse_module
from rdu_compiler.runtime.triton.payload import REFUSED, triton_ops
from rdu_compiler.runtime.triton.reference import torch_op


def _op(line: str, args: str):
    """The first op of `func.func @f(args) { line; return }` (and the module, kept alive)."""
    module = parse_module(f"func.func @f({args}) {{\n  {line}\n  func.return\n}}")
    fn = next(o for o in module.ops if isinstance(o, func.FuncOp))
    op = next(iter(fn.body.block.ops))
    return module, op


def test_triton_covers_the_table_except_what_it_refuses_by_name() -> None:
    assert set(REFUSED) <= PAYLOAD_OPS
    assert not set(REFUSED) & triton_ops()
    assert triton_ops() | set(REFUSED) == PAYLOAD_OPS
    assert all(REFUSED.values())  # every refusal says why


def test_emulator_and_folding_accept_bitcast() -> None:
    _m, op = _op("%r = arith.bitcast %x : f32 to i32", "%x: f32")
    assert op_key(op) in PAYLOAD_OPS
    out = evaluate_op(op, [np.asarray(1.0, np.float32)])
    assert int(out) == 0x3F800000


CMPI = ["eq", "ne", "slt", "sle", "sgt", "sge", "ult", "ule", "ugt", "uge"]


@pytest.mark.parametrize("pred", CMPI)
def test_torch_reference_has_every_cmpi_predicate(pred: str) -> None:
    _m, op = _op(f"%r = arith.cmpi {pred}, %a, %b : i8", "%a: i8, %b: i8")
    a = np.asarray([-1, 0, 5, 100, -128], np.int8)
    b = np.asarray([1, 0, -5, 100, 127], np.int8)
    want = evaluate_op(op, [a, b])
    vals = {op.operands[0]: torch.from_numpy(a), op.operands[1]: torch.from_numpy(b)}
    got = torch_op(op, vals, (5,), torch.device("cpu"))
    assert np.array_equal(got.numpy(), want)


@pytest.mark.parametrize(
    "line,args,x",
    [
        ("%r = math.atan %x : f32", "%x: f32", np.asarray([0.5, -2.0], np.float32)),
        ("%r = math.cbrt %x : f32", "%x: f32", np.asarray([27.0, -8.0], np.float32)),
        ("%r = math.round %x : f32", "%x: f32", np.asarray([2.5, -2.5, 0.49999997], np.float32)),
        ("%r = arith.extui %x : i8 to i32", "%x: i8", np.asarray([-1, 3], np.int8)),
        ("%r = arith.uitofp %x : i8 to f32", "%x: i8", np.asarray([-1, 3], np.int8)),
    ],
)
def test_torch_reference_matches_the_emulator_rule(line: str, args: str, x: np.ndarray) -> None:
    _m, op = _op(line, args)
    want = evaluate_op(op, [x])
    got = torch_op(op, {op.operands[0]: torch.from_numpy(x)}, (len(x),), torch.device("cpu"))
    np.testing.assert_array_equal(got.numpy(), want)


def test_triton_refuses_a_table_op_by_name_and_reason() -> None:
    from rdu_compiler.runtime.triton.exprs import Writer
    from rdu_compiler.runtime.triton.payload import PayloadContext, PayloadEmitter

    _m, op = _op("%r = math.atan %x : f32", "%x: f32")
    block = op.parent_block()
    assert block is not None
    ctx = PayloadContext("k", Writer(), [], lambda i: "x", None)
    with pytest.raises(CompileError, match=r"math\.atan.*libdevice"):
        PayloadEmitter(ctx, block)._emit(op, "math.atan")


def test_xdsl_interpreter_runs_the_table() -> None:
    from xdsl.interpreter import Interpreter
    from xdsl.interpreters.func import FuncFunctions

    from rdu_compiler.interpreters.functions import IMPLEMENTED, TILE_ONLY, PayloadFunctions

    module = parse_module(
        """
func.func @f(%x: f32, %n: i8) -> (f32, i1, i32) {
  %c = arith.constant 3.0 : f32
  %y = arith.mulf %x, %c : f32
  %r = math.round %y : f32
  %u = arith.cmpi ult, %n, %n : i8
  %b = arith.bitcast %r : f32 to i32
  func.return %r, %u, %b : f32, i1, i32
}
"""
    )
    interpreter = Interpreter(module)
    interpreter.register_implementations(FuncFunctions())
    interpreter.register_implementations(PayloadFunctions())
    r, u, b = interpreter.call_op("f", (np.float32(0.5), np.int8(-1)))
    assert float(r) == 2.0 and not bool(u) and int(b) == 0x40000000  # round(1.5) = 2, ties away
    assert set(IMPLEMENTED) == {k for k in PAYLOAD_OPS if isinstance(k, type)} - TILE_ONLY


def _elementwise_cases() -> list[tuple[str, str, int]]:
    """(op name, element type, arity) for every one- and two-operand table op."""
    from rdu_compiler.interpreters.payload import _BINARY, _UNARY  # pyright: ignore[reportPrivateUsage]

    def name(k: OpKey) -> str:
        return k if isinstance(k, str) else k.name

    cases = []
    for keys, arity in ((_BINARY, 2), (_UNARY, 1)):
        for k in keys:
            n = name(k)
            is_int = n.startswith("arith.") and not n.endswith("f") or n == "math.absi"
            cases.append((n, "i32" if is_int else "f32", arity))
    return sorted(cases)


def _inputs(n: str, t: str, arity: int) -> list[np.ndarray]:
    if t == "i32":
        vals = [np.asarray([7, -9, 12], np.int32), np.asarray([2, 3, -5], np.int32)]
        if n in ("arith.shli", "arith.shrsi", "arith.shrui"):
            vals[1] = np.asarray([1, 2, 3], np.int32)
    else:
        vals = [np.asarray([0.25, 0.5, 0.75], np.float32), np.asarray([0.5, 1.5, 2.0], np.float32)]
        if n == "math.acosh":
            vals[0] = vals[0] + np.float32(1.0)
    return vals[:arity]


@pytest.mark.parametrize("n,t,arity", _elementwise_cases())
def test_every_elementwise_table_op_has_the_same_meaning_in_each_user(n: str, t: str, arity: int) -> None:
    from rdu_compiler.runtime.triton.exprs import Writer
    from rdu_compiler.runtime.triton.payload import PayloadContext, PayloadEmitter

    args = ", ".join(f"%a{i}: {t}" for i in range(arity))
    operands = ", ".join(f"%a{i}" for i in range(arity))
    _m, op = _op(f'%r = "{n}"({operands}) : ({", ".join([t] * arity)}) -> {t}', args)
    xs = _inputs(n, t, arity)
    want = np.asarray(evaluate_op(op, xs))
    got = torch_op(op, {v: torch.from_numpy(x) for v, x in zip(op.operands, xs, strict=True)}, (3,), torch.device("cpu"))
    np.testing.assert_allclose(got.numpy().astype(np.float64), want.astype(np.float64), rtol=2e-6)
    block = op.parent_block()
    assert block is not None
    checks: list[str] = []  # runtime checks the emitter asks the kernel builder for
    ctx = PayloadContext("k", Writer(), [], lambda i: f"x{i}", None, check=lambda c, m, o: checks.append(o))
    if op_key(op) in REFUSED:
        with pytest.raises(CompileError, match="no Triton rule"):
            PayloadEmitter(ctx, block)._emit(op, n)
    else:
        PayloadEmitter(ctx, block)._emit(op, n)  # a rule: no refusal
        integer_division = n in ("arith.divsi", "arith.divui", "arith.remsi", "arith.remui", "arith.floordivsi",
                                 "arith.ceildivsi")
        assert bool(checks) == integer_division  # a zero divisor is refused at run time, as by the emulator
