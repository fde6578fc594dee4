"""The rdu program as a flat list of nodes, the view the Triton generator works on.

Sections only group kernels for the fabric; on a GPU they do not exist. `flatten` walks
the function (and every section in it) in program order and keeps one `Node` per kernel,
layout op, constant and `tensor.empty`, with `rdu.load` / `rdu.store` / section results
resolved to the tensor they carry (`canon`). `KernelInfo` is what the generator needs to
know about one `rdu.kernel`: its loops, access patterns, reduction combiners and
whether it is a matmul that `tl.dot` can run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from xdsl.dialects import arith, func, tensor
from xdsl.dialects.builtin import (
    AffineMapAttr,
    DenseIntOrFPElementsAttr,
    FloatAttr,
    IntegerAttr,
    ModuleOp,
    StringAttr,
)
from xdsl.dialects.linalg.attrs import IteratorTypeAttr
from xdsl.ir import Attribute, Block, Operation, Region, SSAValue
from xdsl.ir.affine import AffineMap
from xdsl.rewriter import InsertPoint, Rewriter

from rdu_compiler.dialects import rdu
from rdu_compiler.errors import CompileError
from rdu_compiler.ir import int_values, op_name
from rdu_compiler.kernel.access import Access
from rdu_compiler.kernel.facts import kernel_facts
from rdu_compiler.kernel.payload import COMBINERS, cast_chain, contraction_dims, reduction_plan

PASS = "triton-codegen"


def fail(message: str) -> CompileError:
    """The error every refusal of the Triton generator raises (names what it cannot express)."""
    return CompileError(PASS, message)


def row_major(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Row-major (contiguous) strides of `shape`, in elements."""
    out, acc = [], 1
    for d in reversed(shape):
        out.append(acc)
        acc *= d
    return tuple(reversed(out))


@dataclass
class Node:
    """One op of the flattened program: `kind` is kernel, view, concat, pad, const, empty."""

    op: Operation
    kind: str
    ins: list[SSAValue]
    outs: list[SSAValue]
    index: int = 0


@dataclass
class Const:
    """A compile-time value: a scalar, a splat tensor, or a dense array."""

    value: Any  # python scalar (splat / scalar) or numpy array (dense)
    element: Attribute
    shape: tuple[int, ...]

    @property
    def splat(self) -> bool:
        return not isinstance(self.value, np.ndarray)


@dataclass
class FlatProgram:
    fn: func.FuncOp
    args: list[SSAValue]
    nodes: list[Node]
    outputs: list[SSAValue]
    consts: dict[SSAValue, Const]
    users: dict[SSAValue, list[int]] = field(default_factory=dict)  # value -> node indices


def _scalar_of(attr: Attribute) -> Any:
    if isinstance(attr, FloatAttr):
        return float(attr.value.data)
    if isinstance(attr, IntegerAttr):
        return int(attr.value.data)
    return None


def _const(op: arith.ConstantOp) -> Const:
    t = op.result.type
    elt = rdu.element_type_of(t)
    shape = rdu.shape_of(t)
    value = op.value
    if isinstance(value, DenseIntOrFPElementsAttr):
        data = np.asarray(value.get_values()).reshape(-1)
        if data.size == 1 or (data.size and np.all(data == data[0]) and not np.isnan(data).any()):
            v = data[0].item()
            if isinstance(v, bool) or str(elt) == "i1":
                v = bool(v)
            return Const(v, elt, shape)
        return Const(data.reshape(shape), elt, shape)
    scalar = _scalar_of(value)
    if scalar is None:
        raise fail(f"constant {value} has no Triton form")
    if str(elt) == "i1":
        scalar = bool(scalar)
    return Const(scalar, elt, shape)


def unfold_init_fills(module: ModuleOp) -> ModuleOp:
    """`module`, or a copy in which every accumulator that `rdu-fuse` started from a
    constant (`init_fills`) reads a `fill` kernel of that constant again. The generator
    folds such fills itself (a splat init: `tl.dot` into zeros, a max from -inf), so the
    GPU program is the same as before the fold; the RDU program keeps its fill-free form.
    """
    if not any(isinstance(k, rdu.KernelOp) and k.init_fills is not None for k in module.walk()):
        return module
    module = module.clone()
    for k in [op for op in module.walk() if isinstance(op, rdu.KernelOp) and op.init_fills is not None]:
        assert k.init_fills is not None
        fills = int_values(k.init_fills)
        inits = list(k.inits)
        for j, f in enumerate(fills):
            if f < 0:
                continue
            empty, value = k.inits[j], k.captures[f]
            rank = len(rdu.shape_of(empty.type))
            body = Block(arg_types=[value.type, rdu.element_type_of(empty.type)])
            body.add_op(rdu.YieldOp(body.args[0]))
            fill = rdu.KernelOp(
                [value], [empty], [], [empty.type], rdu.Pattern.FILL, rdu.shape_of(empty.type),
                [AffineMapAttr(AffineMap(rank, 0, ())), AffineMapAttr(AffineMap.identity(rank))],
                [IteratorTypeAttr.parallel()] * rank, Region(body), {"sym_name": StringAttr(f"{k.label}_init{j}")},
            )
            Rewriter.insert_op(fill, InsertPoint.before(k))
            inits[j] = fill.results[0]
        dropped = {f for f in fills if f >= 0}
        block = k.body.block
        n_mapped = len(k.inputs) + len(k.inits)
        for c in sorted(dropped, reverse=True):
            block.erase_arg(block.args[n_mapped + c])
        k.body.detach_block(block)
        props = {n: a for n, a in k.properties.items() if n not in ("operandSegmentSizes", "init_fills")}
        new = rdu.KernelOp(
            list(k.inputs), inits, [c for i, c in enumerate(k.captures) if i not in dropped],
            [r.type for r in k.results], k.kind.data, k.domain_sizes, list(k.indexing_maps.data),
            list(k.iterator_types.data), Region(block), props,
        )
        Rewriter.replace_op(k, new)
    return module


def flatten(module: ModuleOp) -> FlatProgram:
    """The program's ops in order, sections dissolved, loads/stores resolved.

    Raises:
        CompileError: not exactly one function, or an op with no Triton/launcher form.
    """
    fns = [op for op in module.ops if isinstance(op, func.FuncOp)]
    if len(fns) != 1:
        raise fail(f"expected one function in the program, found {len(fns)}")
    fn = fns[0]
    alias: dict[SSAValue, SSAValue] = {}

    def canon(v: SSAValue) -> SSAValue:
        while v in alias:
            v = alias[v]
        return v

    nodes: list[Node] = []
    consts: dict[SSAValue, Const] = {}
    outputs: list[SSAValue] = []

    def visit(block: Block) -> None:
        for op in block.ops:
            if isinstance(op, rdu.SectionOp):
                visit(op.body.block)
                continue
            if isinstance(op, rdu.LoadOp | rdu.StoreOp):
                alias[op.result] = canon(op.source)
                continue
            if isinstance(op, rdu.YieldOp):
                parent = op.parent_op()
                assert isinstance(parent, rdu.SectionOp)
                for r, v in zip(parent.results, op.operands, strict=True):
                    alias[r] = canon(v)
                continue
            if isinstance(op, func.ReturnOp):
                outputs.extend(canon(v) for v in op.operands)
                continue
            if isinstance(op, arith.ConstantOp):
                consts[op.result] = _const(op)
                nodes.append(Node(op, "const", [], [op.result]))
                continue
            ins = [canon(v) for v in op.operands]
            outs: list[SSAValue] = list(op.results)
            if isinstance(op, rdu.KernelOp):
                nodes.append(Node(op, "kernel", ins, outs))
            elif isinstance(op, tensor.EmptyOp):
                nodes.append(Node(op, "empty", [], outs))
            elif isinstance(op, rdu.ViewOp):
                nodes.append(Node(op, "view", ins, outs))
            elif isinstance(op, rdu.ConcatOp):
                nodes.append(Node(op, "concat", ins, outs))
            elif isinstance(op, rdu.PadOp):
                nodes.append(Node(op, "pad", ins, outs))
            else:
                raise fail(f"op '{op_name(op)}' has no Triton or launcher form")

    visit(fn.body.block)
    prog = FlatProgram(fn, list(fn.body.block.args), nodes, outputs, consts)
    for i, n in enumerate(nodes):
        n.index = i
        for v in n.ins:
            prog.users.setdefault(v, []).append(i)
    return prog


# --------------------------------------------------------------------------- kernels


@dataclass
class DotPlan:
    """A contraction `out += a * b` that `tl.dot` runs: loop dims by role."""

    a: int  # input index of the left operand (holds m and k)
    b: int  # input index of the right operand (holds k and n)
    batch: list[int]
    m: list[int]
    n: list[int]
    k: list[int]


class KernelInfo:
    """What the generator needs to know about one `rdu.kernel`."""

    def __init__(self, node: Node):
        k = node.op
        assert isinstance(k, rdu.KernelOp)
        self.node = node
        self.op = k
        self.label = k.label
        try:
            facts = kernel_facts(k)
        except CompileError as e:
            raise fail(f"kernel '{self.label}': {e.message}") from None
        self.domain, self.tile = facts.domain, facts.tile
        self.rank = len(self.domain)
        self.n_in, self.n_init, self.n_cap = facts.n_in, facts.n_init, facts.n_cap
        self.maps = [m.data for m in k.indexing_maps.data]
        self.accesses = facts.accesses
        self.red, self.par = facts.red, facts.par
        self.kind = facts.kind
        if self.kind == rdu.Pattern.SCATTER:
            raise fail(
                f"kernel '{self.label}': the Triton target has no scatter kernel yet (index_add, scatter, "
                "EmbeddingBag's segment reduction); run this model on the emulator (target='emulator')"
            )
        if self.kind == rdu.Pattern.HASH_PROBE:
            raise fail(
                f"kernel '{self.label}': the Triton target has no hash_probe kernel (a CollisionlessTable lookup, "
                "rdu_compiler.frontend.torch.collisionless); run this model on the emulator (target='emulator')"
            )
        self.block = k.body.block
        self.used = facts.used
        # operands: canonical values, inputs then inits then captures
        self.ins = node.ins[: self.n_in]
        self.inits = node.ins[self.n_in : self.n_in + self.n_init]
        self.caps = node.ins[self.n_in + self.n_init :]
        self.operand_shapes = [rdu.shape_of(v.type) for v in k.operands]
        self.results = list(k.results)
        self.result_shapes = [rdu.shape_of(r.type) for r in k.results]
        self.result_elts = [rdu.element_type_of(r.type) for r in k.results]
        bad = facts.non_projection_output()
        if bad is not None:
            raise fail(f"kernel '{self.label}': output {bad} access pattern is not a projection")
        self.combiners: list[tuple[str, SSAValue] | None] = []
        self.skip: set[Operation] = set()
        self.contraction: tuple[int, int] | None = None
        if self.red and self.kind != rdu.Pattern.SCAN:
            self._analyse_reduction()
        self.dot = self._dot_plan() if self.red and self.kind != rdu.Pattern.SCAN else None

    @property
    def numel(self) -> int:
        return math.prod(self.domain)

    @property
    def is_map(self) -> bool:
        return not self.red and self.kind != rdu.Pattern.SCAN

    def strides(self) -> tuple[int, ...]:
        """Row-major strides of the iteration domain."""
        return row_major(self.domain)

    def _analyse_reduction(self) -> None:
        plan = reduction_plan(self.block, self.n_in, [not r.uses for r in self.results])
        for i, role in enumerate(plan.roles):
            if role.kind in ("unrecognised", "select"):
                raise fail(
                    f"kernel '{self.label}': reduction result {i} is not 'acc = combine(acc, f(inputs))' "
                    f"with combine one of {sorted(COMBINERS)}; the Triton generator cannot express it"
                )
            if role.kind == "combine":
                assert role.expr is not None
                self.combiners.append((role.combiner, role.expr))
            else:
                self.combiners.append(None)
        self.skip = set(plan.skip)
        self.contraction = plan.contraction
        if plan.misread is not None:
            raise fail(f"kernel '{self.label}': the accumulator is read outside its combiner")

    def _dot_plan(self) -> DotPlan | None:
        if self.n_init != 1 or self.n_cap:
            return None
        pair = self.contraction
        if pair is None or pair[0] == pair[1]:
            return None
        # the payload must be exactly out + cast(a) * cast(b): nothing else to compute
        comb = self.combiners[0]
        assert comb is not None
        mul = comb[1].owner
        assert isinstance(mul, Operation)
        allowed = {self.block.last_op, mul} | set(self.skip)
        for v in mul.operands:
            while isinstance(v.owner, arith.ExtFOp | arith.TruncFOp):
                allowed.add(v.owner)
                v = v.owner.operands[0]
        if any(op not in allowed for op in self.block.ops):
            return None
        elt = str(self.result_elts[0])
        if elt not in ("f32", "f16", "bf16"):
            return None
        a, b = pair
        acc_a, acc_b, acc_o = self.accesses[a], self.accesses[b], self.accesses[self.n_in]
        if not acc_o.is_projection:
            return None
        roles = contraction_dims(acc_a, acc_b, acc_o, self.rank)
        if roles is None:
            return None
        batch, m, n, kk = roles.batch, roles.m, roles.n, roles.k
        if set(kk) != set(self.red) or not m or not n or not kk:
            return None
        for acc in (acc_a, acc_b, acc_o):  # each loop in at most one index of each operand
            used = [d for coeffs, _ in acc.forms for d, c in enumerate(coeffs) if c]
            if len(used) != len(set(used)) or any(c < 0 for coeffs, _ in acc.forms for c in coeffs):
                return None
        return DotPlan(a, b, batch, m, n, kk)

    def mul_operand_chain(self, which: int) -> list[Operation]:
        """The cast ops between input `which` of a dot plan and the multiply (innermost first)."""
        comb = self.combiners[0]
        assert comb is not None
        mul = comb[1].owner
        assert isinstance(mul, Operation)
        return cast_chain(mul, self.block.args[which])


def linear_coeffs(access: Access, strides: tuple[int, ...], rank: int) -> tuple[list[int], int]:
    """Address of an operand element as a linear form over the loop indices (elements)."""
    coeffs = [0] * rank
    const = 0
    for (cs, c0), s in zip(access.forms, strides, strict=True):
        const += c0 * s
        for d, c in enumerate(cs):
            coeffs[d] += c * s
    return coeffs, const


def fill_value(info: KernelInfo, consts: dict[SSAValue, Const]) -> Any:
    """The constant a fill-like kernel writes everywhere (yield of a constant scalar input), or None."""
    if not info.is_map or info.n_init != 1 or info.n_cap:
        return None
    y = info.block.last_op.operands[0]  # type: ignore[union-attr]
    if y in info.block.args[: info.n_in]:
        src = info.ins[info.block.args.index(y)]
        c = consts.get(src)
        if c is not None and c.splat:
            return c.value
        return None
    owner = y.owner
    if isinstance(owner, arith.ConstantOp):
        return _scalar_of(owner.value)
    return None
