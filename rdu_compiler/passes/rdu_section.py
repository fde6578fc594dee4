"""rdu-section: cut the kernel graph into sections that fit the fabric.

Kernels are taken in program order; a kernel joins the open section while the section's
PCUs (one per kernel at least) and PMUs (its buffers at the chosen tiles) fit the
fabric, and otherwise starts a new one. With `per_op` (SambaFlow's `o0`) every kernel is
its own section. Layout ops join the section that produces their operand. Then each
section becomes an `rdu.section`: off-chip tensors it reads come in through `rdu.load`,
values used after it go out through `rdu.store`, and values inside are `!rdu.stream`s.
Each section records why it ends where it does (`reason`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from xdsl.context import Context
from xdsl.dialects import arith, func, tensor
from xdsl.dialects.builtin import ModuleOp, TensorType
from xdsl.ir import Block, Operation, Region, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import Rewriter

from rdu_compiler.dialects import rdu
from rdu_compiler.errors import CompileError
from rdu_compiler.fabric import Fabric
from rdu_compiler.passes.buffers import operand_tile_bytes, pmus_for
from rdu_compiler.passes.common import fabric_for, functions


def kernel_units(kernel: rdu.KernelOp, fabric: Fabric) -> tuple[int, int]:
    """Minimum (PCUs, PMUs) a kernel needs at its tile sizes: 1 PCU, PMUs for its buffers."""
    pmus = sum(pmus_for(b, fabric.pmu.capacity_bytes) for b in operand_tile_bytes(kernel, kernel.tile_sizes))
    return 1, pmus


@dataclass
class _Group:
    ops: list[Operation] = field(default_factory=list)
    pcus: int = 0
    pmus: int = 0
    reason: str = "end of program"

    def defines(self, value: SSAValue) -> bool:
        return isinstance(value.owner, Operation) and value.owner in self.ops


def _hoist_constants(fn: func.FuncOp) -> None:
    block = fn.body.block
    first = block.first_op
    for op in list(block.ops):
        if isinstance(op, arith.ConstantOp | tensor.EmptyOp) and op is not first:
            op.detach()
            block.insert_op_before(op, first)  # type: ignore[arg-type]


def plan_sections(fn: func.FuncOp, fabric: Fabric, per_op: bool) -> list[_Group]:
    """Group the function's kernels (and the layout ops on their results) into sections."""
    groups: list[_Group] = []
    current = _Group()
    for op in fn.body.block.ops:
        if isinstance(op, rdu.LAYOUT_OPS):
            if any(current.defines(v) for v in op.operands):
                current.ops.append(op)
            continue
        if not isinstance(op, rdu.KernelOp):
            continue
        pcus, pmus = kernel_units(op, fabric)
        if pmus > fabric.num_pmus:
            raise CompileError(
                "rdu-section",
                f"kernel '{op.label}' alone needs {pmus} PMUs (at least one per operand buffer, "
                f"{len(op.inputs) + len(op.inits)} operands) but fabric '{fabric.name}' has {fabric.num_pmus}; "
                "use a larger fabric, or run rdu-fuse with a smaller max_operands",
            )
        full = current.pcus + pcus > fabric.num_pcus or current.pmus + pmus > fabric.num_pmus
        if current.ops and (per_op or full):
            current.reason = (
                "-O0: one kernel per section"
                if per_op
                else f"fabric full: next kernel '{op.label}' needs {pcus} PCU / {pmus} PMU, section uses "
                f"{current.pcus}/{fabric.num_pcus} PCUs and {current.pmus}/{fabric.num_pmus} PMUs"
            )
            groups.append(current)
            current = _Group()
        current.ops.append(op)
        current.pcus += pcus
        current.pmus += pmus
    if current.ops:
        groups.append(current)
    return groups


def _needs_load(op: Operation, index: int, value: SSAValue) -> bool:
    if not isinstance(value.type, TensorType) or isinstance(value.owner, tensor.EmptyOp):
        return False
    if isinstance(op, rdu.KernelOp) and index >= len(op.inputs) + len(op.inits):
        return False  # captures are gathered at random through the AGCU, not streamed
    return True


def build_section(fn: func.FuncOp, group: _Group, name: str, fabric: Fabric) -> rdu.SectionOp:
    """Move the group's ops into a new rdu.section placed where its last op was."""
    block = fn.body.block
    anchor = group.ops[-1].next_op
    inside = set(group.ops)
    body = Block()
    loads: dict[SSAValue, SSAValue] = {}
    for op in group.ops:
        for i, v in enumerate(op.operands):
            if isinstance(v.owner, Operation) and v.owner in inside:
                continue
            if not _needs_load(op, i, v):
                continue
            if v not in loads:
                load = rdu.LoadOp(v)
                body.add_op(load)
                loads[v] = load.result
            op.operands[i] = loads[v]
    for op in group.ops:
        op.detach()
        body.add_op(op)
    stores: list[tuple[SSAValue, SSAValue]] = []
    for op in group.ops:
        for r in list(op.results):
            stream = Rewriter.replace_value_with_new_type(r, rdu.as_stream(r.type)) if isinstance(r.type, TensorType) else r
            outside = [u for u in stream.uses if not _within(u.operation, body)]
            if outside:
                store = rdu.StoreOp(stream)
                stores.append((stream, store.result))
    for _, stored in stores:
        body.add_op(stored.owner)  # type: ignore[arg-type]
    body.add_op(rdu.YieldOp(*[s for _, s in stores]))
    section = rdu.SectionOp(
        name, [s.type for _, s in stores], Region(body), fabric.num_pcus, fabric.num_pmus, group.reason
    )
    if anchor is None:
        block.add_op(section)
    else:
        block.insert_op_before(section, anchor)
    for j, (stream, _) in enumerate(stores):
        for use in list(stream.uses):
            if not _within(use.operation, body):
                use.operation.operands[use.index] = section.results[j]
    return section


def _within(op: Operation, block: Block) -> bool:
    while op is not None:
        if op.parent_block() is block:
            return True
        op = op.parent_op()  # type: ignore[assignment]
    return False


@dataclass(frozen=True)
class RduSectionPass(ModulePass):
    """Wrap kernels into `rdu.section`s that fit the fabric (`per_op` = -O0 baseline)."""

    name = "rdu-section"

    fabric: str = ""
    per_op: bool = False

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        fabric = fabric_for(self.name, self.fabric, op)
        for fn in functions(op):
            _hoist_constants(fn)
            for i, group in enumerate(plan_sections(fn, fabric, self.per_op)):
                build_section(fn, group, f"s{i}", fabric)
