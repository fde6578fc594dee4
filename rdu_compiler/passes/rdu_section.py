"""rdu-section: cut the kernel graph into sections that fit the fabric.

Kernels stay in program order. With `strategy=cost` (default) the cut points are chosen
by a dynamic program over the static bandwidth model (`plan.sections`): every section
fits the fabric's PCUs (one per kernel at least) and PMUs (its buffers at the chosen
tiles), and the cuts go where the least data crosses them. `strategy=first-fit` fills
each section until the next kernel does not fit. With `per_op` (SambaFlow's `o0`) every
kernel is its own section. Layout ops join the section that produces their operand. Then each
section becomes an `rdu.section`: off-chip tensors it reads come in through `rdu.load`,
values used after it go out through `rdu.store`, and values inside are `!rdu.stream`s.
Each section records why it ends where it does (`reason`).
"""

from __future__ import annotations

import math
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
from rdu_compiler.kernel.traffic import (
    compute_dtype,
    gathered_bytes,
    itemsize,
    kernel_flops,
    kernel_traffic,
    operand_pmus,
)
from rdu_compiler.passes.common import fabric_for, functions
from rdu_compiler.plan import sections as section_plan


def kernel_units(kernel: rdu.KernelOp, fabric: Fabric) -> tuple[int, int]:
    """Minimum (PCUs, PMUs) a kernel needs at its tile sizes: 1 PCU, PMUs for its buffers."""
    return 1, sum(operand_pmus(kernel, kernel.tile_sizes, fabric.pmu.capacity_bytes))


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


def _producer(value: SSAValue) -> Operation | None:
    """The kernel (or None for an argument/constant) a value comes from, through layout ops."""
    while isinstance(value.owner, rdu.LAYOUT_OPS):
        value = value.owner.operands[0]
    return value.owner if isinstance(value.owner, rdu.KernelOp) else None


def _last_use(kernel: rdu.KernelOp, index: dict[Operation, int], end: int) -> int:
    """Index of the last kernel reading one of its results (through layout ops); `end` if returned."""
    last, stack = -1, [u.operation for r in kernel.results for u in r.uses]
    while stack:
        user = stack.pop()
        if isinstance(user, rdu.LAYOUT_OPS):
            stack.extend(u.operation for u in user.results[0].uses)
        elif user in index:
            last = max(last, index[user])
        else:
            last = end  # func.return
    return last


def kernel_needs(kernels: list[rdu.KernelOp], fabric: Fabric) -> list[section_plan.KernelNeeds]:
    """The planner's plain-data view of each kernel (units, cycles, bytes in and out)."""
    index: dict[Operation, int] = {k: i for i, k in enumerate(kernels)}
    out = []
    for k in kernels:
        pcus, pmus = kernel_units(k, fabric)
        flops = kernel_flops(k)
        cycles = flops / fabric.pcu.flops_per_cycle_for(compute_dtype(k)) if flops else 0.0
        inputs = []
        for v, nbytes in zip([*k.inputs, *k.inits], kernel_traffic(k), strict=True):
            if nbytes:
                producer = _producer(v)
                inputs.append((index[producer] if producer is not None and producer in index else -1, nbytes))
        if gathered_bytes(k):
            inputs.append((-1, gathered_bytes(k)))
        result_bytes = sum(math.prod(rdu.shape_of(r.type)) * itemsize(r.type) for r in k.results)
        out.append(section_plan.KernelNeeds(k.label, pcus, pmus, cycles, tuple(inputs), result_bytes, _last_use(k, index, len(kernels))))
    return out


def plan_by_cost(fn: func.FuncOp, fabric: Fabric) -> list[_Group]:
    """Sections where the cost model puts the cuts (see `plan.sections`)."""
    kernels = [op for op in fn.body.block.ops if isinstance(op, rdu.KernelOp)]
    if not kernels:
        return []
    machine = section_plan.Machine(
        fabric.num_pcus, fabric.num_pmus, fabric.clock_hz, fabric.hbm.bytes_per_s, fabric.launch_overhead_s
    )
    forced, seen = set(), 0  # a section starts at the first kernel after each collective
    for op in fn.body.block.ops:
        if isinstance(op, rdu.KernelOp):
            seen += 1
        elif isinstance(op, rdu.TP_OPS) and 0 < seen < len(kernels):
            forced.add(seen)
    try:
        result = section_plan.plan(kernel_needs(kernels, fabric), machine, frozenset(forced))
    except ValueError as e:
        raise CompileError("rdu-section", f"{e}; use a larger fabric, or run rdu-fuse with a smaller max_operands") from e
    starts = set(result.starts)
    groups: list[_Group] = []
    position = 0
    for op in fn.body.block.ops:
        if isinstance(op, rdu.KernelOp):
            if position in starts:
                groups.append(_Group(reason=result.reasons[len(groups)]))
            position += 1
            groups[-1].ops.append(op)
        elif isinstance(op, rdu.LAYOUT_OPS) and groups and any(groups[-1].defines(v) for v in op.operands):
            groups[-1].ops.append(op)
    return groups


def cut_at_collectives(fn: func.FuncOp, groups: list[_Group]) -> list[_Group]:
    """Split every group at the tensor-parallel ops (`rdu.all_reduce`, `rdu.all_gather`,
    `rdu.shard`) between its ops: they take and give off-chip tensors, so a section ends
    before one and the next starts after it."""
    position = {op: i for i, op in enumerate(fn.body.block.ops)}
    cuts = sorted(position[op] for op in fn.body.block.ops if isinstance(op, rdu.TP_OPS))
    if not cuts:
        return groups
    out: list[_Group] = []
    for g in groups:
        run = _Group(reason=g.reason)
        for op in g.ops:
            if run.ops and any(position[run.ops[-1]] < c < position[op] for c in cuts):
                run.reason = "a collective follows: the sockets exchange data between sections"
                out.append(run)
                run = _Group(reason=g.reason)
            run.ops.append(op)
        out.append(run)
    return out


def plan_sections(fn: func.FuncOp, fabric: Fabric, per_op: bool) -> list[_Group]:
    """First fit: kernels join the open section until the fabric is full (-O0: one each)."""
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
    strategy: str = "cost"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        if self.strategy not in ("cost", "first-fit"):
            raise CompileError(self.name, f"unknown strategy '{self.strategy}'; use 'cost' or 'first-fit'")
        fabric = fabric_for(self.name, self.fabric, op)
        for fn in functions(op):
            _hoist_constants(fn)
            by_cost = self.strategy == "cost" and not self.per_op
            groups = plan_by_cost(fn, fabric) if by_cost else plan_sections(fn, fabric, self.per_op)
            groups = cut_at_collectives(fn, groups)
            for i, group in enumerate(groups):
                build_section(fn, group, f"s{i}", fabric)
