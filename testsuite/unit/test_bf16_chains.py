"""bf16 chains by table (`interpreters/chains.py`) give the direct steps' bits.

Payloads built op by op: GPT-2's tanh GELU as torch-mlir emits it (one f32 tensor read
three times), a chain with comparisons, a select and exact f32 ops and two exits, a chain
that stops at an f32 transcendental; each run with chains on and off on all 65,536 bf16
values (widened, and f32 values that round to them), shuffled, strided, broadcast and
small. Then a whole bf16 model with chains on and off: bitwise equal outputs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from xdsl.dialects import arith, math
from xdsl.dialects.builtin import BFloat16Type, Float32Type, FloatAttr, IntegerAttr, i64
from xdsl.ir import Block, Operation, SSAValue

import rdu_compiler
from rdu_compiler.dialects import rdu
from rdu_compiler.frontend.torch.model_file import load_model_file
from rdu_compiler.interpreters import bf16, chains
from rdu_compiler.interpreters.payload import CompiledPayload, TileContext
from rdu_compiler.runtime.emulator import Emulator

BF = BFloat16Type()
F32 = Float32Type()


def _bits(a: Any) -> np.ndarray:
    a = np.ascontiguousarray(a)
    return a.view(np.dtype(f"u{a.dtype.itemsize}")) if a.dtype.itemsize in (1, 2, 4, 8) else a


def _block(arg_types: list[Any], body: Callable[[list[SSAValue]], list[Operation]]) -> Block:
    """A payload block: `body(args)` returns its ops; the last one's results are yielded
    unless it is a yield itself."""
    block = Block(arg_types=arg_types)
    ops = body(list(block.args))
    if not isinstance(ops[-1], rdu.YieldOp):
        ops.append(rdu.YieldOp(*ops[-1].results))
    block.add_ops(ops)
    return block


def _const(value: float, t: Any) -> arith.ConstantOp:
    return arith.ConstantOp(FloatAttr(value, t))


def _gelu(args: list[SSAValue]) -> list[Operation]:
    """0.5 x (1 + tanh(0.79788456 (x + 0.044715 x^3))) in bf16, x = truncf of each f32 argument."""
    x0, x1, x2 = (arith.TruncFOp(a, BF) for a in args[:3])
    three = arith.ConstantOp(IntegerAttr(3, i64))
    cube = math.FPowIOp(x0.result, three.result)
    c1 = _const(0.044715, BF)
    t1 = arith.MulfOp(cube.result, c1.result)
    t2 = arith.AddfOp(x1.result, t1.result)
    c2 = _const(0.7978845608028654, BF)
    t3 = arith.MulfOp(t2.result, c2.result)
    t4 = math.TanhOp(t3.result)
    one = _const(1.0, BF)
    t5 = arith.AddfOp(t4.result, one.result)
    half = _const(0.5, BF)
    t6 = arith.MulfOp(x2.result, half.result)
    t7 = arith.MulfOp(t6.result, t5.result)
    return [x0, three, cube, c1, t1, x1, t2, c2, t3, t4, one, t5, x2, half, t6, t7]


def _tiles(values: np.ndarray) -> list[np.ndarray]:
    """`values` (1-D) shuffled, at an odd offset, strided, 2-D and transposed, broadcast, small."""
    rng = np.random.default_rng(7)
    s = values[rng.permutation(values.size)]
    return [values, s, s[3:40_003], s[::-3], s[7:].reshape(-1, 9)[:, 2:], s[: 256 * 200].reshape(256, 200).T,
            np.broadcast_to(s[:2048], (3, 2048)), s[:100], s[:1]]


def _run(p: CompiledPayload, args: list[Any]) -> list[Any]:
    vals = p.run(list(args), TileContext((), ()))
    return [vals[s] for s in p.yield_slots]


def _same_on(block: Block, arrays: Callable[[np.ndarray], list[Any]], aliases: list[int] | None = None,
             inplace: bool = True) -> CompiledPayload:
    """Run `block` with chains (and `aliases`) and without, on every tile of `_tiles`; the
    yielded values must have the same dtype, shape and bits. The payload with chains."""
    on = CompiledPayload(block, "test", inplace=inplace, aliases=aliases)
    off = CompiledPayload(block, "test", inplace=False, chains=False)
    wide = bf16.all_values().astype(np.float32)
    rounding = (wide.view(np.uint32) + np.uint32(0x7FFF)).view(np.float32)  # rounds to (or ties near) the same bf16
    for tile in _tiles(wide) + _tiles(rounding) + _tiles(bf16.all_values()):
        with np.errstate(all="ignore"):
            got, want = _run(on, arrays(tile)), _run(off, arrays(tile))
        for g, w in zip(got, want, strict=True):
            g, w = np.asarray(g), np.asarray(w)
            assert g.dtype == w.dtype and g.shape == w.shape
            bad = np.flatnonzero(_bits(g) != _bits(w))
            assert bad.size == 0, [float(v) for v in np.asarray(tile).reshape(-1)[bad[:4]]]
    return on


def test_gelu_with_one_tensor_read_three_times_is_one_chain_and_the_direct_bits() -> None:
    block = _block([F32, F32, F32], _gelu)
    on = _same_on(block, lambda t: [t.astype(np.float32)] * 3 if t.dtype == bf16.BF16 else [t] * 3, aliases=[0, 0, 0])
    assert len(on.chains) == 1
    assert len(on.chains[0].ops) == 8  # fpowi ... mulf; the (one) truncf root and the constants are not members


def test_without_aliases_the_three_reads_are_three_roots_and_no_chain_spans_them() -> None:
    block = _block([F32, F32, F32], _gelu)
    on = _same_on(block, lambda t: [t.astype(np.float32)] * 3 if t.dtype == bf16.BF16 else [t] * 3)
    # x0^3 * c on the first root; (x1 + that) * c, tanh, + 1 on their sum; 0.5 x2 is one op
    assert [len(c.ops) for c in on.chains] == [2, 3]


def test_a_chain_with_comparisons_select_exact_f32_ops_and_two_exits() -> None:
    def body(args: list[SSAValue]) -> list[Operation]:
        x, other = args
        zero = _const(0.0, BF)
        neg = arith.CmpfOp(x, zero.result, "olt")
        ax = math.AbsFOp(x)
        wide = arith.ExtFOp(ax.result, F32)
        three = _const(3.0, F32)
        q = arith.DivfOp(wide.result, three.result)
        r = math.SqrtOp(q.result)
        back = arith.TruncFOp(r.result, BF)
        nr = arith.NegfOp(back.result)
        pick = arith.SelectOp(neg.result, nr.result, back.result)
        outside = arith.AddfOp(q.result, other)  # reads a chain value and a second tile value
        return [zero, neg, ax, wide, three, q, r, back, nr, pick, outside, rdu.YieldOp(pick.result, outside.result)]

    block = _block([BF, F32], body)
    on = _same_on(block, lambda t: [t.astype(bf16.BF16), np.float32(0.25)])
    (chain,) = on.chains
    term = block.last_op
    assert term is not None
    assert sorted(chain.exits) == sorted({on.slots[term.operands[0]], on.slots[chain.ops[3].results[0]]})


def test_a_chain_stops_at_an_f32_transcendental() -> None:
    def body(args: list[SSAValue]) -> list[Operation]:
        wide = arith.ExtFOp(args[0], F32)
        two = _const(2.0, F32)
        m = arith.MulfOp(wide.result, two.result)
        e = math.ExpOp(m.result)  # numpy's f32 exp: SIMD on contiguous arrays, libm otherwise
        back = arith.TruncFOp(e.result, BF)
        return [wide, two, m, e, back]

    block = _block([BF], body)
    on = _same_on(block, lambda t: [t.astype(bf16.BF16)])
    (chain,) = on.chains
    assert [type(op) for op in chain.ops] == [arith.ExtFOp, arith.MulfOp]


def test_identical_ops_are_evaluated_once_and_never_overwritten_in_place() -> None:
    """Two identical negf feed absf and mulf; absf may write into its operand's array only if
    nothing else reads it: here mulf still reads that array (the second negf's value)."""

    def body(args: list[SSAValue]) -> list[Operation]:
        a, b = arith.NegfOp(args[0]), arith.NegfOp(args[0])
        ab = math.AbsFOp(a.result)
        two = _const(2.0, F32)
        dbl = arith.MulfOp(b.result, two.result)
        return [a, b, ab, two, dbl, rdu.YieldOp(ab.result, dbl.result)]

    block = _block([F32], body)
    x = np.linspace(-4, 4, 4096, dtype=np.float32)
    p = CompiledPayload(block, "test", inplace=True)
    assert len(p.steps) == 4  # the constant, one negf, absf, mulf
    ab, dbl = _run(p, [x])
    assert np.array_equal(ab, np.abs(x)) and np.array_equal(dbl, -x * 2)


def test_chains_change_no_bit_of_a_bf16_model(monkeypatch: pytest.MonkeyPatch) -> None:
    model, inputs = load_model_file("examples/gpt2_2layer.py")  # GELU(tanh): one chain per layer
    model = model.to(torch.bfloat16)
    program = rdu_compiler.compile(model, inputs, fabric="sn40l")
    args = program._arguments(inputs)
    looked = []
    real = chains.BF16Chain.tables
    monkeypatch.setattr(chains.BF16Chain, "tables", lambda self: looked.append(self.key) or real(self))
    on, _ = Emulator(program.module, program.fabric).run(args)
    assert looked, "no chain was evaluated by table: the test no longer covers them"
    monkeypatch.setattr(chains, "CHAIN_MIN", 1 << 30)
    off, _ = Emulator(program.module, program.fabric).run(args)
    assert len(on) == len(off)
    for x, y in zip(on, off, strict=True):
        assert x.dtype == y.dtype and np.array_equal(_bits(x), _bits(y))
