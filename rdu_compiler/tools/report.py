"""Print a compile report as rich tables."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

MAX_ROWS = 40


def _bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return f"{n:.2f} TiB"


def _time(s: float) -> str:
    if s >= 1:
        return f"{s:.3f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.3f} ms"
    return f"{s * 1e6:.2f} µs"


def _short_reason(reason: str) -> str:
    """The table's few words for why a section ends (the full sentence is in report.json)."""
    if reason.startswith("fabric full"):
        needs = reason.split("needs ", 1)[-1].split(",", 1)[0]
        return f"full; next: {needs}"
    if reason.startswith("-O0"):
        return "-O0"
    return reason


def print_report(console: Console, report: dict[str, Any], title: str) -> None:
    """Sections (kernels, units, bytes per tier, estimated time, what binds), totals, roofline."""
    fab = report["fabric"]
    t = report["totals"]
    table = Table(title=f"{title} on {fab['name']} (-O{report['opt_level']}): {t['sections']} sections, {t['kernels']} kernels")
    for col in ("section", "kernels", "PCUs", "PMUs", "HBM", "DDR", "max link", "link util", "est. time", "bound", "cut because"):
        table.add_column(col, justify="left" if col in ("section", "bound", "cut because") else "right", no_wrap=True)
    sections = report["sections"]
    shown = sections if len(sections) <= MAX_ROWS else sections[: MAX_ROWS // 2] + [None] + sections[-MAX_ROWS // 2 :]
    for s in shown:
        if s is None:
            table.add_row("…", f"({len(sections) - MAX_ROWS} more)", "", "", "", "", "", "", "", "", "")
            continue
        c = s["cost"]
        net = s.get("network", {})
        table.add_row(
            s["name"], str(len(s["kernels"])), f"{s['pcus']}/{fab['pcus']}", f"{s['pmus']}/{fab['pmus']}",
            _bytes(s["hbm_bytes"]), _bytes(s["ddr_bytes"]), _bytes(net.get("max_link_bytes", 0)),
            f"{net.get('link_utilization', 0) * 100:.0f} %", _time(c["total_s"]), c["bound"], _short_reason(s["reason"]),
        )
    console.print(table)
    roof = report["roofline"]
    summary = Table(title="totals", show_header=False)
    summary.add_column("what")
    summary.add_column("value", justify="right")
    summary.add_row("FLOPs", f"{t['flops']:.3e}")
    summary.add_row("kernels by pattern", ", ".join(f"{k} {v}" for k, v in sorted(t["kernel_kinds"].items())))
    summary.add_row("HBM traffic / DDR traffic", f"{_bytes(t['hbm_bytes'])} / {_bytes(t['ddr_bytes'])}")
    summary.add_row("peak HBM / DDR footprint", f"{_bytes(t['hbm_peak_bytes'])} / {_bytes(t['ddr_peak_bytes'])}")
    if "max_link_bytes" in t:
        summary.add_row("max link load / traffic x hops", f"{_bytes(t['max_link_bytes'])} / {t['traffic_hop_bytes']:.3e} B x hops")
    summary.add_row("estimated time (static model)", _time(t["estimated_s"]))
    summary.add_row("  of which launch overhead", _time(t["launch_s"]))
    summary.add_row(f"roofline bound ({roof['bound']})", _time(roof["bound_s"]))
    summary.add_row("roofline / estimate", f"{report['roofline_fraction'] * 100:.1f} %")
    emu = report.get("emulator")
    if emu:
        summary.add_row("emulator: tiles, wall time", f"{emu['tiles']}, {_time(emu['wall_s'])}")
        summary.add_row("emulator: HBM / DDR bytes measured", f"{_bytes(emu['hbm_bytes'])} / {_bytes(emu['ddr_bytes'])}")
    console.print(summary)


def print_check(console: Console, check: dict[str, Any]) -> None:
    status = "[green]OK[/]" if check["ok"] else "[red]FAILED[/]"
    console.print(
        f"check against {check.get('reference', 'PyTorch eager')}: max abs error {check['max_abs_error']:.3e}, "
        f"relative L2 error {check['rel_l2']:.3e} (tolerance {check['tolerance']:.0e}) {status}"
    )
