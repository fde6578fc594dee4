"""Read a placed rdu program into the cost model's plain data, and build the report.

Traffic is counted with the same tile geometry the emulator executes
(`rdu_compiler.kernel.access`) and the byte rules of `rdu_compiler.kernel.traffic`: an operand is re-read once per tile of every loop it does not
depend on; loads and gathers count towards their tier, stores write each result once,
and every operand tile and result passes through the kernel's PMU buffers.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from xdsl.dialects import func
from xdsl.dialects.builtin import IntegerAttr, ModuleOp, StringAttr, TensorType
from xdsl.ir import SSAValue

from rdu_compiler.cost.model import KernelLoad, Roofline, SectionLoad, program_cost, roofline
from rdu_compiler.dialects import rdu
from rdu_compiler.fabric import Fabric
from rdu_compiler.kernel.access import num_tiles
from rdu_compiler.kernel.traffic import (
    RESIDENT_INDEX_ATTR,
    compute_dtype,
    follow_tiers,
    gathered_bytes,
    gathered_bytes_by_tier,
    itemsize,
    kernel_flops,
    kernel_int_ops,
    kernel_traffic,
    probe_pmu_bytes,
    resident_across_calls,
)


def _tier_sources(section: rdu.SectionOp, traffic: dict[str, int]) -> dict[SSAValue, str]:
    """Values inside the section that read off-chip memory, with their tier.

    A view or pad of a loaded stream reads off chip through its access pattern; a concat
    reads its loaded parts once into its buffer (added to `traffic` here) and is on chip.
    """
    tiers: dict[SSAValue, str] = {}
    for op in section.body.block.ops:
        for tier, v in follow_tiers(op, tiers):
            traffic[tier] += math.prod(rdu.shape_of(v.type)) * itemsize(v.type)
    return tiers


def section_load(section: rdu.SectionOp, max_link_bytes: float = 0, fabric: Fabric | None = None) -> SectionLoad:
    """The cost model's view of one section: kernels with units and bytes, tier traffic,
    and the bytes on its most loaded link (`section_network`; 0: not placed).

    Gathers are charged to their tier at its access granularity (`fabric`'s
    `burst_bytes`; without a fabric, at the bytes requested): `gather_bytes` records
    both, per tier. A row gather `rdu-tier-rows` split charges its expected hot share to
    HBM and the rest to DDR, each at its tier's burst (`kernel.traffic.gathered_bytes_by_tier`)."""
    traffic = {"hbm": 0, "ddr": 0}
    gathers = {t: {"requested": 0, "charged": 0} for t in traffic}
    tiers = _tier_sources(section, traffic)
    kernels = []
    for k in section.kernels():
        per_operand = kernel_traffic(k)
        for v, nbytes in zip([*k.inputs, *k.inits], per_operand, strict=True):
            if v in tiers:
                traffic[tiers[v]] += nbytes
        bursts = {t: getattr(fabric, t).burst_bytes for t in traffic} if fabric is not None else None
        requested = gathered_bytes_by_tier(k)
        for tier, charged in gathered_bytes_by_tier(k, bursts).items():  # a tiered row gather: HBM and DDR
            if charged:
                traffic[tier] += round(charged)
                gathers[tier]["charged"] += round(charged)
                gathers[tier]["requested"] += round(requested[tier])
        result_bytes = sum(math.prod(rdu.shape_of(r.type)) * itemsize(r.type) for r in k.results)
        kernels.append(
            KernelLoad(
                name=k.label,
                kind=str(k.kind.data.value),
                dtype=compute_dtype(k),
                flops=kernel_flops(k),
                pcus=k.pcus.value.data if k.pcus else 0,
                pmus=k.total_pmus,
                pmu_bytes=sum(per_operand) + result_bytes + probe_pmu_bytes(k),
                tiles=num_tiles(k.domain_sizes, k.tile_sizes) if k.kind.data != rdu.Pattern.SCAN else 1,
                int_ops=kernel_int_ops(k),
            )
        )
    for op in section.body.block.ops:
        if isinstance(op, rdu.StoreOp):
            traffic[str(op.tier.data.value)] += math.prod(rdu.shape_of(op.result.type)) * itemsize(op.result.type)
    return SectionLoad(section.sym_name.data, tuple(kernels), traffic["hbm"], traffic["ddr"], max_link_bytes, gathers)


def section_network(section: rdu.SectionOp, fabric: Fabric) -> Any:
    """The placed section's link loads (`placement.NetworkLoad`), or None if unplaced.

    Routes are re-derived from the recorded sites, AGCUs and routing, with the
    bytes of `passes.placement_ir` (the traffic counted here, per section execution).
    """
    from rdu_compiler.passes.placement_ir import section_network as network
    from rdu_compiler.plan.placement import Grid

    return network(section, Grid.from_fabric(fabric))


def network_report(net: Any, cost: dict[str, Any], fabric: Fabric) -> dict[str, Any]:
    """Max link load, its ratio to the link bandwidth over the section's steady state, and
    traffic x hops (bytes x links) of one section; zeros when not placed."""
    link_bytes_per_s = fabric.link_bytes_per_cycle * fabric.clock_hz
    steady = max(cost[f"{b}_s"] for b in ("compute", "pmu", "hbm", "ddr", "agcu", "network"))
    max_link = net.max_link_bytes if net is not None else 0.0
    return {
        "max_link_bytes": max_link,
        "link_bytes_per_s": link_bytes_per_s,
        "network_s": max_link / link_bytes_per_s,
        "link_utilization": (max_link / link_bytes_per_s) / steady if steady else 0.0,
        "traffic_hop_bytes": net.traffic_hops if net is not None else 0.0,
    }


def _main(module: ModuleOp) -> func.FuncOp:
    fns = [op for op in module.ops if isinstance(op, func.FuncOp)]
    return fns[0]


def _tensor_bytes(values: list[SSAValue]) -> int:
    return sum(math.prod(rdu.shape_of(v.type)) * itemsize(v.type) for v in values)


def _compulsory_bytes(fn: func.FuncOp, sections: list[rdu.SectionOp]) -> int:
    """Bytes any execution must move: each argument read once, each result written once;
    an argument only ever gathered from (an embedding table) counts the rows gathered; one
    only loaded as a probe index kept resident across calls (`resident_across_calls`) counts
    nothing per call."""
    gathered: dict[SSAValue, int] = {}
    streamed: set[SSAValue] = set()
    resident: set[SSAValue] = set()
    for s in sections:
        for op in s.body.block.ops:
            if isinstance(op, rdu.LoadOp):
                if op.result.uses and all(isinstance(u.operation, rdu.KernelOp) and u.index == 1
                                          and resident_across_calls(u.operation) for u in op.result.uses):
                    resident.add(op.source)
                    continue
                streamed.add(op.source)
            elif isinstance(op, rdu.KernelOp) and len(op.captures):
                tables = [c for c in op.captures if rdu.shape_of(c.type) or isinstance(c.type, TensorType)]  # not fill scalars
                for c in tables:
                    gathered[c] = gathered.get(c, 0) + gathered_bytes(op) // len(tables)
    total = 0
    for arg in fn.body.block.args:
        if arg in resident and arg not in streamed and arg not in gathered:
            continue
        if arg in gathered and arg not in streamed:
            total += min(gathered[arg], _tensor_bytes([arg]))
        else:
            total += _tensor_bytes([arg])
    ret = fn.body.block.last_op
    return total + _tensor_bytes(list(ret.operands) if ret else [])


def tiering_report(assumption: str, sections: list[rdu.SectionOp]) -> dict[str, Any]:
    """What `rdu-tier-rows` placed: per tiered row gather, the table's rows, hot rows (HBM),
    expected hot share of its row reads, and the table bytes stored in HBM and DDR."""
    tables = []
    for s in sections:
        for k in s.kernels():
            if k.hot_rows is None or k.hot_fraction is None:
                continue
            rows, cols = rdu.shape_of(k.captures[0].type)
            row_bytes = cols * itemsize(k.captures[0].type)
            hot = k.hot_rows.value.data
            tables.append({"kernel": k.label, "rows": rows, "hot_rows": hot, "hot_fraction": k.hot_fraction.value.data,
                           "hbm_bytes": hot * row_bytes, "ddr_bytes": (rows - hot) * row_bytes})
    return {"assumption": assumption, "tables": tables,
            "stored_bytes": {t: sum(x[f"{t}_bytes"] for x in tables) for t in ("hbm", "ddr")}}


def mixed_roofline(loads: list[SectionLoad], compulsory_bytes: int, fabric: Fabric) -> Roofline:
    """The roofline with every kernel's FLOPs at the peak of its own dtype.

    A bf16 model keeps some kernels in fp32 (norms, softmax); charging all FLOPs at one
    rate would misstate the bound. compute_s = sum_k flops_k / peak(dtype_k).
    """
    per_dtype: dict[str, int] = {}
    for ld in loads:
        for k in ld.kernels:
            if k.flops:
                per_dtype[k.dtype] = per_dtype.get(k.dtype, 0) + k.flops
    compute_s = sum(roofline(f, 0, d, fabric).compute_s for d, f in per_dtype.items())
    memory_s = roofline(0, compulsory_bytes, "f32", fabric).memory_s
    bound = "compute" if compute_s >= memory_s else "hbm"
    return Roofline(sum(per_dtype.values()), compulsory_bytes, compute_s, memory_s, max(compute_s, memory_s), bound)


def build_report(module: ModuleOp, fabric: Fabric, opt_level: int, fn: func.FuncOp | None = None) -> dict[str, Any]:
    """The compile report: sections, kernels, units, bytes per tier, time, roofline (of
    `fn`, by default the module's first function: one stage program, `cost.pipeline`).

    Times are the static bandwidth model's estimates (seconds) on `fabric`; bytes are
    bytes; the roofline is FLOPs / peak and compulsory bytes (arguments read once,
    results written once) / HBM bandwidth. A program `rdu-kernel-loop` annotated is
    charged as looped calls (`cost.kloop`: `report["kernel_loops"]`).
    """
    fn = fn if fn is not None else _main(module)
    sections = [op for op in fn.body.block.ops if isinstance(op, rdu.SectionOp)]
    networks = [section_network(s, fabric) for s in sections]
    loads = [section_load(s, n.max_link_bytes if n is not None else 0, fabric) for s, n in zip(sections, networks, strict=True)]
    cost = program_cost(loads, fabric)
    flops = sum(k.flops for ld in loads for k in ld.kernels)
    compulsory = _compulsory_bytes(fn, sections)
    roof = mixed_roofline(loads, compulsory, fabric)
    kinds = Counter(k.kind.data.value for s in sections for k in s.kernels())
    hbm_peak = module.attributes.get("rdu.hbm_peak_bytes")
    ddr_peak = module.attributes.get("rdu.ddr_peak_bytes")
    report_sections = []
    for s, ld, sc, net in zip(sections, loads, cost.sections, networks, strict=True):
        report_sections.append(
            {
                "name": ld.name,
                "kernels": [kl.to_dict() for kl in ld.kernels],
                "pcus": sum(kl.pcus for kl in ld.kernels),
                "pmus": sum(kl.pmus for kl in ld.kernels),
                "hbm_bytes": ld.hbm_bytes,
                "ddr_bytes": ld.ddr_bytes,
                "gather_bytes": ld.gather_bytes,
                "cost": sc.to_dict(),
                "network": network_report(net, sc.to_dict(), fabric),
                "reason": s.reason.data if s.reason else "",
            }
        )
    total = cost.total_s
    report = {
        "fabric": {"name": fabric.name, "pcus": fabric.num_pcus, "pmus": fabric.num_pmus, "source": fabric.source},
        "opt_level": opt_level,
        "sections": report_sections,
        "totals": {
            "sections": len(sections),
            "kernels": sum(len(ld.kernels) for ld in loads),
            "kernel_kinds": dict(kinds),
            "flops": flops,
            "hbm_bytes": sum(ld.hbm_bytes for ld in loads),
            "ddr_bytes": sum(ld.ddr_bytes for ld in loads),
            "gather_bytes": {t: {w: sum(ld.gather_bytes[t][w] for ld in loads if ld.gather_bytes) for w in ("requested", "charged")}
                             for t in ("hbm", "ddr")},
            "hbm_peak_bytes": hbm_peak.value.data if isinstance(hbm_peak, IntegerAttr) else 0,
            "ddr_peak_bytes": ddr_peak.value.data if isinstance(ddr_peak, IntegerAttr) else 0,
            "estimated_s": total,
            "launch_s": sum(sc.launch_s for sc in cost.sections),
            "max_link_bytes": max((ld.max_link_bytes for ld in loads), default=0),
            "traffic_hop_bytes": sum(n.traffic_hops for n in networks if n is not None),
        },
        "roofline": roof.to_dict(),
        "roofline_fraction": (roof.bound_s / total) if total else 0.0,
    }
    tiering = module.attributes.get("rdu.tier_rows")
    if isinstance(tiering, StringAttr):
        report["tiering"] = tiering_report(tiering.data, sections)
    if fn is _main(module):  # rdu-kernel-loop ran: one looped call per loop (no-op otherwise)
        from rdu_compiler.cost.kloop import apply_kernel_loops

        apply_kernel_loops(report, module, fabric)
    if RESIDENT_INDEX_ATTR in module.attributes:  # rdu-tile{resident_index=true}
        from rdu_compiler.cost.residency import residency_report

        report["resident_index"] = residency_report(sections, fabric, report["totals"]["estimated_s"])
    return report
