"""The static bandwidth model: plain section loads in, seconds out.

SN40L §VII calls a static bandwidth model in the compiler "essential" for
first-order performance analysis. This one follows DESIGN.md "The cost model":
a section runs as one streaming pipeline, so its steady state is as slow as its
most loaded resource --

    section time = max(slowest kernel's compute on its PCUs,
                       slowest kernel's PMU traffic on its PMUs,
                       HBM bytes / HBM bandwidth,
                       DDR bytes / DDR bandwidth,
                       off-chip bytes / AGCU bandwidth,
                       most loaded link's bytes / link bandwidth)
                   + pipeline fill + launch overhead

where pipeline fill = sum(firsts) - max(firsts), firsts = [each kernel's time /
its tiles]: the first tile's trip through the stages, less the largest first-tile
time, which is counted as already inside the steady-state max (so a one-kernel
section has no fill) -- and program time is the sum over sections. The roofline
(FLOPs / peak, compulsory bytes / HBM bandwidth) is the physical limit shown
beside it.

Units throughout: seconds, bytes, FLOPs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from rdu_compiler.fabric import Fabric

# Resources a section can be bound by, in tie-break order.
BOUNDS = ("compute", "pmu", "hbm", "ddr", "agcu", "network")


@dataclass(frozen=True)
class KernelLoad:
    """The work of one kernel (pipeline stage) of a section.

    flops: FLOPs of the whole kernel; pcus/pmus: units assigned (>= 1 each);
    pmu_bytes: bytes read + written through its PMU buffers over the whole
    kernel; tiles: tiles the kernel is executed in (>= 1); int_ops: integer
    operations of the kernel's pattern (a hash probe's hashes and compares),
    charged at the PCUs' integer rate (`flops_per_cycle_for("i64")`).
    """

    name: str
    kind: str
    dtype: str
    flops: int
    pcus: int
    pmus: int
    pmu_bytes: int
    tiles: int
    int_ops: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SectionLoad:
    """One section: its kernels and its off-chip traffic (loads + stores) in bytes.

    max_link_bytes: bytes per section execution on the most loaded network link after
    placement and routing (`rdu_compiler.plan.placement`); 0 when not placed.
    """

    name: str
    kernels: tuple[KernelLoad, ...]
    hbm_bytes: int
    ddr_bytes: int
    max_link_bytes: float = 0
    #: {tier: {"requested": B, "charged": B}}: gathered bytes (included in hbm/ddr_bytes)
    #: as requested and as charged at the tier's access granularity; None: not counted.
    gather_bytes: dict[str, dict[str, int]] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kernels": [k.to_dict() for k in self.kernels],
            "hbm_bytes": self.hbm_bytes,
            "ddr_bytes": self.ddr_bytes,
            "max_link_bytes": self.max_link_bytes,
            "gather_bytes": self.gather_bytes,
        }


@dataclass(frozen=True)
class KernelCost:
    """Seconds of one kernel on its own units; time_s = max(compute_s, pmu_s)."""

    name: str
    compute_s: float
    pmu_s: float
    time_s: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SectionCost:
    """Seconds of one section, per resource, and the resource that binds.

    total_s = max(compute_s, pmu_s, hbm_s, ddr_s, agcu_s, network_s) + fill_s + launch_s,
    where fill_s = sum(firsts) - max(firsts) over firsts = [kernel time_s / tiles];
    bound names the max (ties: first of BOUNDS). network_s = max link bytes / link
    bytes/s (0 for an unplaced section).
    """

    name: str
    kernels: tuple[KernelCost, ...]
    compute_s: float
    pmu_s: float
    hbm_s: float
    ddr_s: float
    agcu_s: float
    fill_s: float
    launch_s: float
    total_s: float
    bound: str
    network_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["kernels"] = [k.to_dict() for k in self.kernels]
        return out


@dataclass(frozen=True)
class ProgramCost:
    """Seconds of a whole program: the sum of its sections' total_s."""

    sections: tuple[SectionCost, ...]
    total_s: float

    def to_dict(self) -> dict[str, Any]:
        return {"sections": [s.to_dict() for s in self.sections], "total_s": self.total_s}


@dataclass(frozen=True)
class Roofline:
    """The physical limit: compute_s = flops / peak FLOP/s of the whole fabric,
    memory_s = compulsory_bytes / HBM bytes/s, bound_s = the larger; bound is
    "compute" or "hbm" (ties: "compute")."""

    flops: int
    compulsory_bytes: int
    compute_s: float
    memory_s: float
    bound_s: float
    bound: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def kernel_cost(kernel: KernelLoad, fabric: Fabric) -> KernelCost:
    """Seconds of one kernel on its own PCUs and PMUs.

    compute_s = flops / (pcus * FLOP/cycle(dtype) * clock_hz)
                + int_ops / (pcus * op/cycle("i64") * clock_hz), each term 0 when its count is 0
                (integer ops take the "int" entry of [pcu.flops_per_cycle], else the fp32 one);
    pmu_s = pmu_bytes / (pmus * pmu.bytes_per_cycle * clock_hz);
    time_s = max(compute_s, pmu_s).

    Raises:
        ValueError: the kernel has no PCUs or PMUs, negative work, or tiles < 1.
        FabricError: the fabric has no FLOP/cycle entry for the kernel's dtype.
    """
    _check_kernel(kernel)
    compute_s = _compute_s(kernel, fabric)
    pmu_s = kernel.pmu_bytes / (kernel.pmus * fabric.pmu.bytes_per_cycle * fabric.clock_hz)
    return KernelCost(kernel.name, compute_s, pmu_s, max(compute_s, pmu_s))


def _compute_s(kernel: KernelLoad, fabric: Fabric) -> float:
    out = 0.0
    if kernel.flops:
        out += kernel.flops / (kernel.pcus * fabric.pcu.flops_per_cycle_for(kernel.dtype) * fabric.clock_hz)
    if kernel.int_ops:
        out += kernel.int_ops / (kernel.pcus * fabric.pcu.flops_per_cycle_for("i64") * fabric.clock_hz)
    return out


def _check_kernel(kernel: KernelLoad) -> None:
    if kernel.pcus <= 0 or kernel.pmus <= 0:
        raise ValueError(
            f"kernel {kernel.name!r} has {kernel.pcus} PCUs and {kernel.pmus} PMUs; "
            f"a kernel needs at least one of each: allocate units before costing"
        )
    if kernel.flops < 0 or kernel.pmu_bytes < 0 or kernel.int_ops < 0:
        raise ValueError(
            f"kernel {kernel.name!r} has negative work (flops={kernel.flops}, "
            f"pmu_bytes={kernel.pmu_bytes}); counts must be >= 0"
        )
    if kernel.tiles < 1:
        raise ValueError(f"kernel {kernel.name!r} has tiles={kernel.tiles}; it needs >= 1 tile")


def section_cost(load: SectionLoad, fabric: Fabric) -> SectionCost:
    """Seconds of one section under the static bandwidth model (SN40L §VII).

    compute_s / pmu_s: of the slowest kernel (the pipeline runs at its pace);
    hbm_s, ddr_s: section bytes / tier bytes_per_s;
    agcu_s: (hbm_bytes + ddr_bytes) / (agcu.count * agcu.bytes_per_cycle * clock_hz);
    network_s: max_link_bytes / (link_bytes_per_cycle * clock_hz): the section is no
        faster than its most loaded link allows;
    fill_s: time for the first tile to reach the last stage: with
        firsts = [time_s / tiles per kernel], fill_s = sum(firsts) - max(firsts)
        (the largest first-tile time is counted as already inside the steady
        state), so a one-kernel section, and an empty one, has fill_s = 0;
    launch_s: fabric.launch_overhead_s (program load + argument load).

    Raises:
        ValueError: a kernel without PCUs/PMUs or with invalid counts, or
            negative off-chip or link bytes.
        FabricError: the fabric has no FLOP/cycle entry for a kernel's dtype.
    """
    if load.hbm_bytes < 0 or load.ddr_bytes < 0 or load.max_link_bytes < 0:
        raise ValueError(
            f"section {load.name!r} has negative bytes (hbm={load.hbm_bytes}, "
            f"ddr={load.ddr_bytes}, max link={load.max_link_bytes}); counts must be >= 0"
        )
    kernels = tuple(kernel_cost(k, fabric) for k in load.kernels)
    agcu_bytes_per_s = fabric.agcu.count * fabric.agcu.bytes_per_cycle * fabric.clock_hz
    times = {
        "compute": max((k.compute_s for k in kernels), default=0.0),
        "pmu": max((k.pmu_s for k in kernels), default=0.0),
        "hbm": load.hbm_bytes / fabric.hbm.bytes_per_s,
        "ddr": load.ddr_bytes / fabric.ddr.bytes_per_s,
        "agcu": (load.hbm_bytes + load.ddr_bytes) / agcu_bytes_per_s,
        "network": load.max_link_bytes / (fabric.link_bytes_per_cycle * fabric.clock_hz),
    }
    bound = max(BOUNDS, key=lambda b: times[b])  # max() keeps the first of equals
    firsts = [k.time_s / kl.tiles for k, kl in zip(kernels, load.kernels, strict=True)]
    fill_s = sum(firsts) - max(firsts, default=0.0)
    launch_s = fabric.launch_overhead_s
    return SectionCost(
        name=load.name,
        kernels=kernels,
        compute_s=times["compute"],
        pmu_s=times["pmu"],
        hbm_s=times["hbm"],
        ddr_s=times["ddr"],
        agcu_s=times["agcu"],
        fill_s=fill_s,
        launch_s=launch_s,
        total_s=times[bound] + fill_s + launch_s,
        bound=bound,
        network_s=times["network"],
    )


def program_cost(loads: Sequence[SectionLoad], fabric: Fabric) -> ProgramCost:
    """Seconds of a program: sections run one after another, so the sum of
    section_cost(...).total_s. Raises as section_cost."""
    sections = tuple(section_cost(load, fabric) for load in loads)
    return ProgramCost(sections, sum(s.total_s for s in sections))


def roofline(flops: int, compulsory_bytes: int, dtype: str, fabric: Fabric) -> Roofline:
    """The roofline bound of a program (DESIGN.md "The cost model").

    compute_s = flops / fabric.peak_flops(dtype) (every PCU of the socket);
    memory_s = compulsory_bytes / hbm.bytes_per_s; bound_s = max of the two.

    Raises:
        ValueError: negative flops or bytes.
        FabricError: the fabric has no FLOP/cycle entry for ``dtype``.
    """
    if flops < 0 or compulsory_bytes < 0:
        raise ValueError(
            f"roofline needs flops >= 0 and compulsory_bytes >= 0, "
            f"got {flops} and {compulsory_bytes}"
        )
    compute_s = flops / fabric.peak_flops(dtype) if flops else 0.0
    memory_s = compulsory_bytes / fabric.hbm.bytes_per_s
    bound = "compute" if compute_s >= memory_s else "hbm"
    return Roofline(flops, compulsory_bytes, compute_s, memory_s, max(compute_s, memory_s), bound)
