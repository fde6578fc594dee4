"""Print a compile report as rich tables."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Console
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from rdu_compiler.units import compact_bytes, compact_seconds, format_bytes, format_seconds

MAX_ROWS = 40


#: Why a section ends, as the table's one word (the sentence is printed below the table).
CUTS = (("fabric full", "full"), ("cost model", "cost"), ("-O0", "-O0"), ("end of program", "end"))


def _cut(reason: str) -> str:
    """The table's one word for why a section ends: full, cost, -O0, end (else `other`)."""
    return next((word for prefix, word in CUTS if reason.startswith(prefix)), "other")


def print_report(console: Console, report: dict[str, Any], title: str) -> None:
    """Sections (kernels, units, bytes per tier, link use, estimated time, what binds, why
    the section ends), then why each section ends in full, totals and the roofline.

    The section table fits 80 columns (values are at most 8 characters wide; the reasons
    for each cut are printed below it, wrapped to the console), so it stays readable in a
    narrow terminal and when piped. Long programs show the first and last MAX_ROWS/2
    sections and say how many are left out."""
    fab = report["fabric"]
    t = report["totals"]
    table = Table(
        title=f"{title} on {fab['name']} (-O{report['opt_level']}): {t['sections']} sections, {t['kernels']} kernels "
              f"(fabric: {fab['pcus']} PCUs, {fab['pmus']} PMUs)",
        box=box.SIMPLE_HEAD, collapse_padding=True, pad_edge=False,
    )
    for col in ("section", "kern", "PCUs", "PMUs", "HBM", "DDR", "link", "time", "bound", "cut"):
        table.add_column(col, justify="left" if col in ("section", "bound", "cut") else "right", no_wrap=True)
    sections = report["sections"]
    shown = sections if len(sections) <= MAX_ROWS else sections[: MAX_ROWS // 2] + [None] + sections[-MAX_ROWS // 2 :]
    for s in shown:
        if s is None:
            table.add_row("…", "", "", "", "", "", "", f"{len(sections) - MAX_ROWS} more", "", "")
            continue
        c = s["cost"]
        net = s.get("network", {})
        table.add_row(
            s["name"], str(len(s["kernels"])), str(s["pcus"]), str(s["pmus"]),
            compact_bytes(s["hbm_bytes"]), compact_bytes(s["ddr_bytes"]),
            f"{net.get('link_utilization', 0) * 100:.0f}%", compact_seconds(c["total_s"]), c["bound"], _cut(s["reason"]),
        )
    console.print(table)
    console.print("time: the cost model's estimate. link: link util, the busiest on-chip link's share of its "
                  "bandwidth over the section's time (its bytes per run, max link, are in report.json).", highlight=False)
    console.print("[bold]why each section ends[/]")
    for s in shown:
        if s is None:
            console.print(f"  … ({len(sections) - MAX_ROWS} more sections: every reason is in report.json)", highlight=False)
            continue
        console.print(Padding(Text(f"{s['name']}: {s['reason']}"), (0, 0, 0, 2)), highlight=False)
    roof = report["roofline"]
    summary = Table(title="totals", show_header=False)
    summary.add_column("what")
    summary.add_column("value", justify="right")
    summary.add_row("FLOPs", f"{t['flops']:.3e}")
    summary.add_row("kernels by pattern", ", ".join(f"{k} {v}" for k, v in sorted(t["kernel_kinds"].items())))
    summary.add_row("HBM traffic / DDR traffic", f"{format_bytes(t['hbm_bytes'])} / {format_bytes(t['ddr_bytes'])}")
    summary.add_row("peak HBM / DDR footprint", f"{format_bytes(t['hbm_peak_bytes'])} / {format_bytes(t['ddr_peak_bytes'])}")
    tiering = report.get("tiering")
    if tiering:  # rdu-tier-rows: table rows per tier, and the expected hot share of the row reads
        tabs = tiering["tables"]
        hot = sum(x["hot_rows"] for x in tabs)
        summary.add_row("row tiering (" + tiering["assumption"] + ")",
                        f"{len(tabs)} tables, {hot} of {sum(x['rows'] for x in tabs)} rows in HBM: "
                        f"{format_bytes(tiering['stored_bytes']['hbm'])} HBM / {format_bytes(tiering['stored_bytes']['ddr'])} DDR")
    if "max_link_bytes" in t:
        summary.add_row("max link load / traffic x hops", f"{format_bytes(t['max_link_bytes'])} / {t['traffic_hop_bytes']:.3e} B x hops")
    summary.add_row("estimated time (static model)", format_seconds(t["estimated_s"]))
    if "collectives_s" in t:  # a tensor-parallel program: the node's time (cost/node.py)
        summary.add_row("  one socket's sections", format_seconds(t["socket_sections_s"]))
        summary.add_row(f"  collectives ({len(report.get('collectives', []))}) / sync",
                        f"{format_seconds(t['collectives_s'])} / {format_seconds(t['sync_s'])}")
    summary.add_row("  of which launch overhead", format_seconds(t["launch_s"]))
    loops = report.get("kernel_loops")
    if loops is not None:  # --kernel-looping: what rdu-kernel-loop found (cost/kloop.py)
        summary.add_row(f"kernel loops: {loops['count']}, launches saved",
                        f"{loops['launches_saved']} of {loops['section_launches_unlooped']} ({format_seconds(loops['saved_s'])})")
    summary.add_row(f"roofline bound ({roof['bound']})", format_seconds(roof["bound_s"]))
    summary.add_row("roofline / estimate", f"{report['roofline_fraction'] * 100:.1f} %")
    emu = report.get("emulator")
    if emu:
        summary.add_row("emulator: tiles, wall time", f"{emu['tiles']}, {format_seconds(emu['wall_s'])}")
        summary.add_row("emulator: HBM / DDR bytes measured", f"{format_bytes(emu['hbm_bytes'])} / {format_bytes(emu['ddr_bytes'])}")
        if emu.get("rows_read"):
            h = sum(r["hbm"] for r in emu["rows_read"].values())
            d = sum(r["ddr"] for r in emu["rows_read"].values())
            summary.add_row("emulator: rows read HBM / DDR", f"{h} / {d} ({h / max(1, h + d):.1%} hot)")
    console.print(summary)
    if loops is not None and not loops["count"]:
        console.print(f"[bold]kernel looping:[/] {loops['note']}", highlight=False)
    note = report.get("node", {}).get("note")
    if note:
        console.print(f"[bold]node:[/] {note}", highlight=False)


def print_check(console: Console, check: dict[str, Any]) -> None:
    status = "[green]OK[/]" if check["ok"] else "[red]FAILED[/]"
    console.print(
        f"check against {check.get('reference', 'PyTorch eager')}: max abs error {check['max_abs_error']:.3e}, "
        f"relative L2 error {check['rel_l2']:.3e} (tolerance {check['tolerance']:.0e}) {status}"
    )
