"""Fused-kernel benchmarks: compile a module at -O0 and -O1 and compare what the chip would do.

    from rdu_compiler import bench
    result = bench.compare(model, example_inputs, fabric="sn40l")
    bench.print_table(result)

Shapes are enough: a module and inputs on the meta device compile (the cost model needs
no weights), so a 7B-class decoder layer benchmarks on a small machine. The emulator runs
only when the weights are real and `run_emulator` is set.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch


@dataclass
class LevelResult:
    """One opt level's figures (seconds, bytes, fractions in [0, 1])."""

    opt_level: int
    sections: int  # = kernel launches (one per section)
    kernels: int
    estimated_s: float
    roofline_s: float
    roofline_bound: str
    roofline_fraction: float  # roofline / estimate
    pcu_utilization: float  # time-weighted fraction of PCUs assigned
    pmu_utilization: float  # time-weighted fraction of PMUs assigned
    hbm_bytes: int
    ddr_bytes: int
    bounds: dict[str, int]  # sections bound by each resource
    binding: str  # the resource bounding most of the estimated time
    compile_s: float
    emulator_s: float | None = None
    launches: int = 0  # section launches per call: sections, less those kernel looping saves
    kernel_loops: int | None = None  # loops found with kernel looping (None: not asked for)


@dataclass
class BenchResult:
    """-O0 vs -O1 on one fabric."""

    name: str
    fabric: str
    levels: list[LevelResult] = field(default_factory=list)

    @property
    def speedup(self) -> float | None:
        """Estimated -O0 time over -O1 time (None unless both levels were compiled)."""
        if len(self.levels) < 2:
            return None
        return self.levels[0].estimated_s / self.levels[1].estimated_s

    @property
    def launch_ratio(self) -> float | None:
        """-O0 kernel launches over -O1 launches (None unless both levels were compiled)."""
        if len(self.levels) < 2:
            return None
        return self.levels[0].launches / self.levels[1].launches

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "fabric": self.fabric,
            "speedup": self.speedup,
            "launch_ratio": self.launch_ratio,
            "levels": [asdict(lv) for lv in self.levels],
        }


def _is_meta(module: torch.nn.Module, inputs: tuple[Any, ...]) -> bool:
    tensors = [*module.parameters(), *module.buffers(), *(i for i in inputs if isinstance(i, torch.Tensor))]
    return any(t.is_meta for t in tensors)


def level_figures(report: dict[str, Any], opt_level: int, compile_s: float) -> LevelResult:
    """Summarise a compile report into one LevelResult."""
    fab = report["fabric"]
    total = report["totals"]["estimated_s"] or 1e-30
    pcu = sum(s["cost"]["total_s"] * s["pcus"] / fab["pcus"] for s in report["sections"]) / total
    pmu = sum(s["cost"]["total_s"] * s["pmus"] / fab["pmus"] for s in report["sections"]) / total
    bounds: dict[str, int] = {}
    time_by_bound: dict[str, float] = {}
    for s in report["sections"]:
        b = s["cost"]["bound"]
        bounds[b] = bounds.get(b, 0) + 1
        time_by_bound[b] = time_by_bound.get(b, 0.0) + s["cost"]["total_s"]
    launch = report["totals"]["launch_s"]
    binding = max(time_by_bound, key=lambda b: time_by_bound[b]) if time_by_bound else "none"
    if launch > total / 2:
        binding = f"launch overhead ({launch / total:.0%} of the time)"
    roof = report["roofline"]
    return LevelResult(
        opt_level=opt_level,
        sections=report["totals"]["sections"],
        kernels=report["totals"]["kernels"],
        estimated_s=report["totals"]["estimated_s"],
        roofline_s=roof["bound_s"],
        roofline_bound=roof["bound"],
        roofline_fraction=report["roofline_fraction"],
        pcu_utilization=pcu,
        pmu_utilization=pmu,
        hbm_bytes=report["totals"]["hbm_bytes"],
        ddr_bytes=report["totals"]["ddr_bytes"],
        bounds=bounds,
        binding=binding,
        compile_s=compile_s,
        launches=report.get("kernel_loops", {}).get("section_launches", report["totals"]["sections"]),
        kernel_loops=report["kernel_loops"]["count"] if "kernel_loops" in report else None,
    )


def compare(
    module: torch.nn.Module,
    example_inputs: tuple[Any, ...],
    fabric: str = "sn40l",
    name: str = "model",
    run_emulator: bool = False,
    *,
    tp: int = 1,
    sockets: int | None = None,
    kernel_looping: bool = False,
    levels: tuple[int, ...] = (0, 1),
) -> BenchResult:
    """Compile at each of `levels` (-O0 and -O1 by default; with `tp`, `sockets` and
    `kernel_looping` as `api.compile`, so "sn40l" with 16 sockets is "sn40l-rack16") and
    return each level's figures.

    Raises:
        RduError: the model does not compile for `fabric`, or `levels` is not a non-empty
            subset of (0, 1).
    """
    from rdu_compiler import api
    from rdu_compiler.errors import RduError
    from rdu_compiler.fabric import node_fabric

    if not levels or any(lv not in (0, 1) for lv in levels) or len(set(levels)) != len(levels):
        raise RduError(f"levels must be 0, 1 or both (each once), got {list(levels)}")
    fabric = node_fabric(fabric, tp, sockets)
    meta = _is_meta(module, example_inputs)
    result = BenchResult(name, fabric)
    for level in sorted(levels):
        t0 = time.perf_counter()
        program = api.compile(module, example_inputs, fabric=fabric, opt_level=level, tp=tp, sockets=sockets,
                              kernel_looping=kernel_looping)
        figures = level_figures(program.report, level, time.perf_counter() - t0)
        if run_emulator and not meta:
            t0 = time.perf_counter()
            program.run(*example_inputs)
            figures.emulator_s = time.perf_counter() - t0
        result.levels.append(figures)
    return result


def print_table(result: BenchResult, console: Any = None) -> None:
    """The -O0 / -O1 comparison as a rich table."""
    from rich.console import Console
    from rich.table import Table

    from rdu_compiler.units import format_bytes as _bytes
    from rdu_compiler.units import format_seconds as _time

    console = console or Console()
    title = f"{result.name} on {result.fabric}"
    if result.speedup is not None and result.launch_ratio is not None:
        title += f": -O1 {result.speedup:.2f}x faster, {result.launch_ratio:.1f}x fewer launches"
    table = Table(title=title)
    table.add_column("")
    for lv in result.levels:
        table.add_column(f"-O{lv.opt_level}", justify="right")
    rows: list[tuple[str, Any]] = [
        ("sections", lambda lv: str(lv.sections)),
        ("launches" + (" (kernel looping)" if result.levels[0].kernel_loops is not None else ""),
         lambda lv: str(lv.launches) + (f" ({lv.kernel_loops} loops)" if lv.kernel_loops is not None else "")),
        ("kernels", lambda lv: str(lv.kernels)),
        ("estimated time", lambda lv: _time(lv.estimated_s)),
        ("roofline bound", lambda lv: f"{_time(lv.roofline_s)} ({lv.roofline_bound})"),
        ("% of roofline", lambda lv: f"{lv.roofline_fraction * 100:.1f} %"),
        ("PCU / PMU utilization", lambda lv: f"{lv.pcu_utilization * 100:.0f} % / {lv.pmu_utilization * 100:.0f} %"),
        ("HBM / DDR bytes", lambda lv: f"{_bytes(lv.hbm_bytes)} / {_bytes(lv.ddr_bytes)}"),
        ("sections bound by", lambda lv: ", ".join(f"{k} {v}" for k, v in sorted(lv.bounds.items()))),
        ("binding resource", lambda lv: lv.binding),
        ("compile time", lambda lv: _time(lv.compile_s)),
        ("emulator time", lambda lv: _time(lv.emulator_s) if lv.emulator_s is not None else "-"),
    ]
    for label, fn in rows:
        table.add_row(label, *(fn(lv) for lv in result.levels))
    console.print(table)
