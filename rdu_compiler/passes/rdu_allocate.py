"""rdu-allocate: units per kernel, and every off-chip tensor to a memory tier.

Units: each kernel of a section gets one `#rdu.buffer` per input/init operand (PMUs for
its tile, double-buffered, widened with the section's spare PMUs for bandwidth) and at
least one PCU; the PCUs left in the section go to the
kernels in proportion to the cycles they need, compute or I/O through their links,
whichever is larger (SN40L §III-A: more PCUs to heavier stages), never
more than a kernel can use (its parallel points / PCU lanes).

Tiers: function arguments and section results are the off-chip tensors. Each lives from
the section that writes it to the last section that reads it; HBM holds it if HBM has
room over its whole lifetime (tensors with disjoint lifetimes share space), otherwise DDR
(SN40L §V-A: HBM by default, DDR for spills; arguments, weights first, are placed before
activations, so activations spill first). A table whose row gathers `rdu-tier-rows` split
(`hot_rows = H`) keeps rows [0, H) in HBM and the rest in DDR (its capture tier is HBM,
the hot tier). Peak footprints go to module attributes
`rdu.hbm_peak_bytes` / `rdu.ddr_peak_bytes`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import func
from xdsl.dialects.builtin import ArrayAttr, IntegerAttr, ModuleOp, TensorType, i64
from xdsl.ir import Operation, SSAValue
from xdsl.passes import ModulePass

from rdu_compiler.dialects import rdu
from rdu_compiler.errors import CompileError
from rdu_compiler.fabric import Fabric
from rdu_compiler.kernel.traffic import (
    DEPTH,
    compute_dtype,
    is_resident_index,
    itemsize,
    kernel_flops,
    kernel_int_ops,
    kernel_traffic,
    operand_pmus,
    operand_tile_bytes,
    probe_pmu_bytes,
    resident_across_calls,
)
from rdu_compiler.passes.common import fabric_for, functions


def split_pcus(flops: list[float], limits: list[int], total: int) -> list[int]:
    """PCUs per kernel: 1 each, the rest in proportion to `flops` (work; largest remainder), capped.

    Raises:
        ValueError: fewer PCUs than kernels.
    """
    n = len(flops)
    if n > total:
        raise ValueError(f"{n} kernels but only {total} PCUs")
    alloc = [1] * n
    spare = total - n
    while spare > 0:
        open_ = [i for i in range(n) if alloc[i] < limits[i]]
        weight = sum(flops[i] for i in open_)
        if not open_ or weight == 0:
            break
        shares = {i: spare * flops[i] / weight for i in open_}
        given = 0
        for i in open_:
            add = min(int(shares[i]), limits[i] - alloc[i])
            alloc[i] += add
            given += add
        if given == 0:
            best = max(open_, key=lambda i: shares[i] - int(shares[i]))
            alloc[best] += 1
            given = 1
        spare -= given
    return alloc


def widen_for_bandwidth(need: list[int], traffic: list[int], total: int) -> list[int]:
    """PMUs per buffer: at least `need` (capacity), spare PMUs in proportion to traffic.

    A buffer spread over more PMUs reads and writes through more banks (SN40L §III-A: a
    tensor may span PMUs for capacity or bandwidth), so the spare PMUs of a section go to
    the buffers that move the most bytes, which lowers the slowest kernel's PMU time.
    Buffers with no traffic get none. Returns a list the length of `need`.
    """
    alloc = list(need)
    spare = total - sum(need)
    weight = sum(t for t, n in zip(traffic, need, strict=True) if n)
    if spare <= 0 or weight == 0:
        return alloc
    extra = [spare * t / weight if n else 0.0 for t, n in zip(traffic, need, strict=True)]
    for i, e in enumerate(extra):
        alloc[i] += int(e)
    left = total - sum(alloc)
    for i in sorted(range(len(extra)), key=lambda i: extra[i] - int(extra[i]), reverse=True)[:left]:
        if need[i]:
            alloc[i] += 1
    return alloc


#: Links a PCU's operands effectively arrive on. A site has four (a 2-D mesh), but with
#: one-bend routes a kernel's buffers, spread around its PCUs, feed each PCU mostly
#: along one direction (the placer's link loads show it), so one link is the budget.
LINKS_PER_PCU = 1


def _work(kernel: rdu.KernelOp, fabric: Fabric) -> float:
    """Cycles the kernel needs on one PCU: the larger of its compute (FLOPs / FLOP-per-cycle
    of its dtype, plus a hash probe's integer ops at the integer rate) and its I/O (bytes in and out through LINKS_PER_PCU mesh links).

    Without the I/O term a FLOP-light kernel that streams gigabytes (a softmax map over
    attention scores) got one PCU, and all its bytes crossed that PCU's links: the network
    bound the section however it was placed.
    """
    flops, int_ops = kernel_flops(kernel), kernel_int_ops(kernel)
    compute = flops / fabric.pcu.flops_per_cycle_for(compute_dtype(kernel)) if flops else 0.0
    compute += int_ops / fabric.pcu.flops_per_cycle_for("i64") if int_ops else 0.0  # a hash probe's hashes and compares
    results = sum(math.prod(rdu.shape_of(r.type)) * itemsize(r.type) for r in kernel.results)
    io = (sum(kernel_traffic(kernel)) + results) / (LINKS_PER_PCU * fabric.link_bytes_per_cycle)
    return max(compute, io)


def _held_pmus(section: rdu.SectionOp, fabric: Fabric) -> int:
    """PMUs the section's hash-probe indexes keep across calls (`resident_across_calls`):
    each index's buffer as allocated (its `buffers` entry), else at its capacity need."""
    cap = fabric.pmu.capacity_bytes
    held = 0
    for k in section.kernels():
        if resident_across_calls(k):
            held += k.buffers.data[1].pmus.data if k.buffers is not None else operand_pmus(k, k.tile_sizes, cap)[1]
    return held


def _allocate_with_held(sections: list[rdu.SectionOp], fabric: Fabric) -> None:
    """Allocate every section beside the PMUs the other sections' indexes keep across calls.

    The index buffers take spare PMUs for the probes' reads, so what they hold is known
    only after allocation: first each section beside the others' capacity needs; then the
    sections are allocated again beside what the others' index buffers actually took
    (an index section re-allocated with fewer PMUs can only hold fewer, so the others
    stay within the fabric); the result is checked.

    Raises:
        CompileError: a section does not fit beside the PMUs the other sections hold."""
    held = [_held_pmus(s, fabric) for s in sections]  # no buffers yet: the capacity needs
    for s, h in zip(sections, held, strict=True):
        _allocate_units(s, fabric, sum(held) - h)
    if not any(held) or len(sections) == 1:
        return
    held = [_held_pmus(s, fabric) for s in sections]
    for s, h in zip(sections, held, strict=True):
        _allocate_units(s, fabric, sum(held) - h)
    held = [_held_pmus(s, fabric) for s in sections]
    for s, h in zip(sections, held, strict=True):
        own = sum(k.total_pmus for k in s.kernels())
        if own + sum(held) - h > fabric.num_pmus:
            raise CompileError("rdu-allocate", f"section '{s.sym_name.data}' uses {own} PMUs beside the "
                               f"{sum(held) - h} that indexes of other sections keep resident across calls, over the "
                               f"fabric's {fabric.num_pmus}; compile without resident_index")


def _allocate_units(section: rdu.SectionOp, fabric: Fabric, held_elsewhere: int = 0) -> None:
    """PCUs and PMU buffers of the section's kernels, over the fabric's PMUs less
    `held_elsewhere` (indexes other sections keep resident across calls).

    Raises:
        CompileError: the section's buffers do not fit beside `held_elsewhere`."""
    kernels = section.kernels()
    cap = fabric.pmu.capacity_bytes
    # PCUs in proportion to each kernel's compute time (FLOPs / its dtype's rate), not raw
    # FLOPs: an fp32 softmax stage needs twice the PCUs of a bf16 stage of equal FLOPs.
    work = [_work(k, fabric) for k in kernels]
    limits = []
    for k in kernels:
        par = math.prod(s for d, s in enumerate(k.domain_sizes) if d not in k.reduction_dims)
        limits.append(max(1, math.ceil(par / fabric.pcu.lanes)))
    sizes = [operand_tile_bytes(k, k.tile_sizes) for k in kernels]
    need = [p for k in kernels for p in operand_pmus(k, k.tile_sizes, cap)]
    traffic = []
    for k in kernels:
        per_operand = kernel_traffic(k)
        results = sum(math.prod(rdu.shape_of(r.type)) * itemsize(r.type) for r in k.results)
        per_operand = [t + (results if i >= len(k.inputs) else 0) for i, t in enumerate(per_operand)]
        if is_resident_index(k, 1):  # the probes read their buckets from the index's buffer
            per_operand[1] += probe_pmu_bytes(k)
        traffic.extend(per_operand)
    available = fabric.num_pmus - held_elsewhere
    if held_elsewhere and sum(need) > available:
        raise CompileError("rdu-allocate", f"section '{section.sym_name.data}' needs {sum(need)} PMUs, but the hash-probe "
                           f"indexes other sections keep resident across calls hold {held_elsewhere} of the fabric's "
                           f"{fabric.num_pmus}; compile without resident_index")
    if held_elsewhere:
        section.pmus_available = IntegerAttr(available, i64)
    pmus = widen_for_bandwidth(need, traffic, available)
    position = 0
    for k, pcus, per_kernel in zip(kernels, split_pcus(work, limits, fabric.num_pcus), sizes, strict=True):
        k.pcus = IntegerAttr(pcus, i64)
        n = len(per_kernel)
        k.buffers = ArrayAttr([rdu.BufferAttr(b, p, cap, DEPTH) for b, p in zip(per_kernel, pmus[position : position + n], strict=True)])
        position += n


def base_tensor(value: SSAValue) -> SSAValue:
    """The stored tensor a (possibly viewed) off-chip value is backed by."""
    while isinstance(value.owner, rdu.ViewOp | rdu.PadOp | rdu.ConcatOp):
        value = value.owner.operands[0]
    return value


def _nbytes(value: SSAValue) -> int:
    return math.prod(rdu.shape_of(value.type)) * itemsize(value.type)


def assign_tiers(fn: func.FuncOp, fabric: Fabric) -> tuple[dict[SSAValue, rdu.Tier], int, int]:
    """Tier of every off-chip tensor of `fn`, and the peak HBM / DDR bytes.

    Raises:
        CompileError: the tensors do not fit in HBM + DDR.
    """
    ops = list(fn.body.block.ops)
    sections = [op for op in ops if isinstance(op, rdu.SectionOp)]
    position = {s: i for i, s in enumerate(sections)}
    n = len(sections)
    tensors: list[tuple[SSAValue, int, int]] = []
    last_use: dict[SSAValue, int] = {}
    for s in sections:
        for inner in s.body.block.walk():
            for v in inner.operands:
                if not isinstance(inner, rdu.SectionOp) and not isinstance(v.type, rdu.StreamType):
                    last_use[base_tensor(v)] = position[s]
    ret = fn.body.block.last_op
    for v in ret.operands if ret is not None else ():
        last_use[base_tensor(v)] = n
    for arg in fn.body.block.args:
        if isinstance(arg.type, TensorType):
            tensors.append((arg, 0, last_use.get(arg, 0)))
    for s in sections:
        for r in s.results:
            tensors.append((r, position[s], last_use.get(r, position[s])))
    usage = {rdu.Tier.HBM: [0] * (n + 1), rdu.Tier.DDR: [0] * (n + 1)}
    capacity = {rdu.Tier.HBM: fabric.hbm.capacity_bytes, rdu.Tier.DDR: fabric.ddr.capacity_bytes}
    tiers: dict[SSAValue, rdu.Tier] = {}
    hot = _hot_rows(sections)
    for value, first, last in tensors:
        size = _nbytes(value)
        if value in hot:  # rdu-tier-rows: rows [0, H) in HBM, the rest in DDR
            shape = rdu.shape_of(value.type)
            parts = {rdu.Tier.HBM: size * hot[value] // shape[0], rdu.Tier.DDR: size - size * hot[value] // shape[0]}
            for tier, nbytes in parts.items():
                if max(usage[tier][first : last + 1], default=0) + nbytes > capacity[tier]:
                    raise CompileError(
                        "rdu-allocate",
                        f"the {nbytes} B of a tiered table's {'hot' if tier == rdu.Tier.HBM else 'cold'} rows do not "
                        f"fit {tier.value} ({capacity[tier]} B) of fabric '{fabric.name}'; give rdu-tier-rows a "
                        "smaller hbm_bytes (or a fabric with more DDR)",
                    )
                for i in range(first, last + 1):
                    usage[tier][i] += nbytes
            tiers[value] = rdu.Tier.HBM  # the hot tier; the kernels' hot_rows say where the rest is
            continue
        for tier in (rdu.Tier.HBM, rdu.Tier.DDR):
            span = usage[tier][first : last + 1]
            if max(span, default=0) + size <= capacity[tier]:
                for i in range(first, last + 1):
                    usage[tier][i] += size
                tiers[value] = tier
                break
        else:
            raise CompileError(
                "rdu-allocate",
                f"a {size} B tensor does not fit: HBM ({capacity[rdu.Tier.HBM]} B) and DDR "
                f"({capacity[rdu.Tier.DDR]} B) are full over its lifetime; the model is larger than "
                f"the fabric '{fabric.name}' holds — use a fabric with more DDR",
            )
    return tiers, max(usage[rdu.Tier.HBM]), max(usage[rdu.Tier.DDR])


def _hot_rows(sections: list[rdu.SectionOp]) -> dict[SSAValue, int]:
    """Tables whose rows rdu-tier-rows split: stored tensor -> hot rows (rows in HBM).

    Raises:
        CompileError: two kernels give one table different hot rows.
    """
    hot: dict[SSAValue, int] = {}
    for s in sections:
        for k in s.kernels():
            if k.hot_rows is not None:
                table = base_tensor(k.captures[0])
                h = k.hot_rows.value.data
                if hot.setdefault(table, h) != h:
                    raise CompileError("rdu-allocate", f"kernel '{k.label}' reads {h} hot rows of a table another "
                                       f"kernel reads {hot[table]} hot rows of; re-run rdu-tier-rows")
    return hot


def _tier_of(tiers: dict[SSAValue, rdu.Tier], v: SSAValue) -> rdu.Tier:
    return tiers.get(base_tensor(v), rdu.Tier.HBM)


@dataclass(frozen=True)
class RduAllocatePass(ModulePass):
    """Assign PCUs/PMU buffers to kernels and HBM/DDR tiers to off-chip tensors."""

    name = "rdu-allocate"

    fabric: str = ""

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        fabric = fabric_for(self.name, self.fabric, op)
        peaks = [0, 0]
        for fn in functions(op):
            sections = [s for s in fn.body.block.ops if isinstance(s, rdu.SectionOp)]
            _allocate_with_held(sections, fabric)
            tiers, hbm_peak, ddr_peak = assign_tiers(fn, fabric)
            _set_tiers(sections, tiers)
            peaks = [max(peaks[0], hbm_peak), max(peaks[1], ddr_peak)]
        op.attributes["rdu.hbm_peak_bytes"] = IntegerAttr(peaks[0], i64)
        op.attributes["rdu.ddr_peak_bytes"] = IntegerAttr(peaks[1], i64)


def _set_tiers(sections: list[rdu.SectionOp], tiers: dict[SSAValue, rdu.Tier]) -> None:
    for s in sections:
        results = {id(st): r for st, r in _stores(s)}
        for inner in s.body.block.ops:
            if isinstance(inner, rdu.LoadOp):
                inner.tier = rdu.TierAttr(_tier_of(tiers, inner.source))
            elif isinstance(inner, rdu.StoreOp):
                inner.tier = rdu.TierAttr(tiers.get(results[id(inner)], rdu.Tier.HBM))
            elif isinstance(inner, rdu.KernelOp) and len(inner.captures):
                inner.capture_tiers = ArrayAttr([rdu.TierAttr(_tier_of(tiers, c)) for c in inner.captures])


def _stores(section: rdu.SectionOp) -> list[tuple[Operation, SSAValue]]:
    term = section.body.block.last_op
    assert term is not None
    out = []
    for i, v in enumerate(term.operands):
        if isinstance(v.owner, rdu.StoreOp):
            out.append((v.owner, section.results[i]))
    return out


