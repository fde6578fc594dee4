"""Pictures of what the compiler decided: placement maps and a program timeline.

`write_plots(module, fabric, report, out_dir)` writes, with matplotlib's Agg backend:

- `<section>_placement.png` / `.svg` per section: the grid, each unit colored by its
  kernel (PCUs solid, PMUs lighter with a dot), every used link shaded by its load
  (bytes per section execution, the larger of its two directions), AGCUs as triangles
  on the edges shaded by their bytes, and the most loaded link circled;
- `timeline.png` / `.svg`: the sections one after another on the cost model's time
  axis, each bar split into steady state (colored by the resource that binds it), fill
  and launch.
"""

from __future__ import annotations

import colorsys
import textwrap
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402
from matplotlib.colors import LinearSegmentedColormap, Normalize  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from xdsl.dialects.builtin import ModuleOp  # noqa: E402

from rdu_compiler.dialects import rdu  # noqa: E402
from rdu_compiler.fabric import Fabric  # noqa: E402
from rdu_compiler.passes.placement_ir import read_placement, section_problem, section_routing  # noqa: E402
from rdu_compiler.plan.placement import Grid, link_loads  # noqa: E402
from rdu_compiler.plan.placement.grid import EAST, SOUTH  # noqa: E402
from rdu_compiler.plan.placement.problem import AGCU  # noqa: E402

BOUND_COLORS = {
    "compute": "#4c72b0",
    "pmu": "#55a868",
    "hbm": "#c44e52",
    "ddr": "#8172b2",
    "agcu": "#ccb974",
    "network": "#dd8452",
}
MAX_SECTION_MAPS = 24
_LINK_CMAP = LinearSegmentedColormap.from_list("link", ["#c8c8c8", "#505050", "#000000", "#d62728"])


def kernel_color(i: int) -> tuple[float, float, float]:
    """A distinct color per kernel index: hues spaced by the golden ratio."""
    hue = (i * 0.618033988749895) % 1.0
    light = 0.45 + 0.12 * ((i // 7) % 3)
    return colorsys.hls_to_rgb(hue, light, 0.75)


def write_plots(
    module: ModuleOp, fabric: Fabric, report: dict[str, Any], out_dir: str | Path, max_maps: int | None = MAX_SECTION_MAPS
) -> list[Path]:
    """Write placement maps (the first `max_maps` placed sections; None: all) and the
    timeline, whose title says when maps were left out (`maps_left_out` says it too).

    Returns the paths written. Sections that are not placed get no map.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    grid = Grid.from_fabric(fabric)
    written: list[Path] = []
    sections = [op for op in module.walk() if isinstance(op, rdu.SectionOp)]
    by_name = {s["name"]: s for s in report.get("sections", [])}
    for section in sections[:max_maps]:
        fig = placement_figure(section, grid, fabric, by_name.get(section.sym_name.data))
        if fig is None:
            continue
        written += _save(fig, out / f"{section.sym_name.data}_placement")
    written += _save(timeline_figure(report, maps_left_out(module, max_maps)), out / "timeline")
    return written


def maps_left_out(module: ModuleOp, max_maps: int | None = MAX_SECTION_MAPS) -> str | None:
    """A sentence naming the sections `write_plots` draws no map for, or None if none."""
    names = [op.sym_name.data for op in module.walk() if isinstance(op, rdu.SectionOp)]
    if max_maps is None or len(names) <= max_maps:
        return None
    return (f"placement maps of the first {max_maps} of {len(names)} sections ({names[0]} to "
            f"{names[max_maps - 1]}); {names[max_maps]} to {names[-1]} have none")


def _save(fig: Any, stem: Path) -> list[Path]:
    paths = [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    fig.savefig(paths[0], dpi=110, bbox_inches="tight")  # the kernel legend sits outside the axes
    fig.savefig(paths[1], bbox_inches="tight")
    plt.close(fig)
    return paths


def placement_figure(section: rdu.SectionOp, grid: Grid, fabric: Fabric, report: dict[str, Any] | None = None) -> Any:
    """The placement map of one section (a matplotlib Figure), or None if not placed."""
    sp = section_problem(section)
    placement = read_placement(sp, grid)
    if placement is None:
        return None
    p = sp.problem
    net = link_loads(grid, p, placement.sites, placement.agcus, section_routing(section))
    cell = 0.26
    fig, ax = plt.subplots(figsize=(max(6.0, (grid.cols + 2) * cell + 2.5), max(4.5, grid.rows * cell + 1.6)))
    image = np.ones((grid.rows, grid.cols, 3)) * 0.94
    for r in range(grid.rows):
        for c in range(grid.cols):
            if not grid.is_pcu((r, c)):
                image[r, c] = 0.88
    pmu_dots = []
    for u, (r, c) in enumerate(placement.sites):
        g = p.groups[p.unit_group[u]]
        color = 0.7 * np.array(kernel_color(g.kernel)) + 0.3
        if g.kind == "pmu":
            color = 0.5 * color + 0.5
            pmu_dots.append((c, r))
        image[r, c] = color
    ax.imshow(image, extent=(-0.5, grid.cols - 0.5, grid.rows - 0.5, -0.5), interpolation="nearest", zorder=0)
    if pmu_dots:
        xs, ys = zip(*pmu_dots, strict=True)
        ax.scatter(xs, ys, s=3, c="#555555", linewidths=0, zorder=1)
    _draw_links(ax, fig, grid, net.link_bytes, fabric)
    _draw_agcus(ax, grid, p, placement.agcus)
    _name_kernels(ax, sp, placement.sites)
    if net.max_link >= 0:
        (r0, c0), (r1, c1) = grid.link_ends(net.max_link)
        ax.scatter([(c0 + c1) / 2], [(r0 + r1) / 2], s=160, facecolors="none", edgecolors="black", linewidths=1.5, zorder=5)
    ax.set_xlim(-1.8, grid.cols + 0.8)
    ax.set_ylim(grid.rows - 0.5, -0.5)
    ax.set_aspect("equal")
    ax.set_xlabel(f"column (AGCUs: triangles at -1 and {grid.cols})")
    ax.set_ylabel("row")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    width = int(fig.get_figwidth() * 13)
    title = "\n".join(textwrap.fill(line, width) for line in _title(section, sp, net.max_link_bytes, fabric, report).split("\n"))
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def _name_kernels(ax: Any, sp: Any, sites: Any) -> None:
    """Each kernel's number at the middle of its units, and a legend number -> kernel name
    in its color (colors repeat every ~20 kernels; numbers do not)."""
    p = sp.problem
    where: dict[int, list[tuple[int, int]]] = {}
    for u, site in enumerate(sites):
        where.setdefault(p.groups[p.unit_group[u]].kernel, []).append(site)
    for k, spots in sorted(where.items()):
        rows, cols = zip(*spots, strict=True)
        ax.text(float(np.mean(cols)), float(np.mean(rows)), str(k), ha="center", va="center", fontsize=6,
                color="black", zorder=6, bbox={"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.7})
    handles = [Rectangle((0, 0), 1, 1, color=0.7 * np.array(kernel_color(k)) + 0.3) for k in sorted(where)]
    labels = [f"{k}: {sp.kernels[k].sym_name.data}" for k in sorted(where)]
    ax.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.2), fontsize=6, frameon=False,
              ncol=min(4, len(labels)), title="kernels (number on the map: name)", title_fontsize=7)


def _title(section: rdu.SectionOp, sp: Any, max_link: float, fabric: Fabric, report: dict[str, Any] | None) -> str:
    link_s = max_link / (fabric.link_bytes_per_cycle * fabric.clock_hz)
    text = (
        f"section {section.sym_name.data}: {len(sp.kernels)} kernels, {sp.problem.num_units} units "
        f"(PCUs solid, PMUs light with a dot); max link {_mib(max_link)} = {link_s * 1e6:.2f} us at link bandwidth"
    )
    if report is not None:
        c = report["cost"]
        text += f"\nestimated {c['total_s'] * 1e6:.1f} us, bound by {c['bound']}; circle: most loaded link"
    return text


def _mib(n: float) -> str:
    return f"{n / 2**20:.2f} MiB" if n >= 2**20 else f"{n / 2**10:.2f} KiB"


def _draw_links(ax: Any, fig: Any, grid: Grid, loads: np.ndarray, fabric: Fabric) -> None:
    segments, values = [], []
    for r in range(grid.rows):
        for c in range(-1, grid.cols + 1):
            for direction, (dr, dc) in ((EAST, (0, 1)), (SOUTH, (1, 0))):
                r2, c2 = r + dr, c + dc
                if r2 >= grid.rows or c2 > grid.cols:
                    continue
                back = grid.link((r2, c2), direction + 1)  # WEST = EAST + 1, NORTH = SOUTH + 1
                load = max(loads[grid.link((r, c), direction)], loads[back])
                if load > 0:
                    segments.append([(c, r), (c2, r2)])
                    values.append(load)
    if not segments:
        return
    vals = np.asarray(values) / 2**20
    norm = Normalize(vmin=0, vmax=float(vals.max()))
    widths = 0.5 + 3.5 * vals / vals.max()
    lines = LineCollection(segments, cmap=_LINK_CMAP, norm=norm, linewidths=widths, zorder=2, capstyle="round")
    lines.set_array(vals)
    ax.add_collection(lines)
    bar = fig.colorbar(lines, ax=ax, fraction=0.03, pad=0.01)
    bar.set_label("link load (MiB per section run)")


def _draw_agcus(ax: Any, grid: Grid, p: Any, agcus: tuple[int, ...]) -> None:
    per_agcu = np.zeros(len(grid.agcus))
    for i, net in enumerate(p.nets):
        if agcus[i] >= 0:
            per_agcu[agcus[i]] += max(b for _, b in net.sinks) if net.source == AGCU else next(b for u, b in net.sinks if u == AGCU)
    for side, marker in ((-1, ">"), (grid.cols, "<")):
        idx = [i for i, (_, c) in enumerate(grid.agcus) if c == side]
        ax.scatter([side] * len(idx), [grid.agcus[i][0] for i in idx], marker=marker, s=60, c=per_agcu[idx] / 2**20,
                   cmap="Blues", vmin=0, vmax=max(float(per_agcu.max()) / 2**20, 1e-9), edgecolors="black", linewidths=0.6, zorder=4)



def timeline_figure(report: dict[str, Any], note: str | None = None) -> Any:
    """Sections in sequence on the cost model's time axis: steady state colored by what
    binds it, then pipeline fill (hatched) and launch overhead (gray). A bar is labelled
    with its section (and bound) only where the label fits inside it, so labels never
    overlap; `note` (say, which sections have placement maps) goes under the title."""
    sections = report.get("sections", [])
    fig, ax = plt.subplots(figsize=(11, 2.6))
    total_s = sum(s["cost"]["total_s"] for s in sections) or 1.0
    start = 0.0
    used = set()
    bars = []
    for s in sections:
        c = s["cost"]
        steady = c["total_s"] - c["fill_s"] - c["launch_s"]
        parts = [(c["launch_s"], "#bbbbbb", None), (steady, BOUND_COLORS.get(c["bound"], "#999999"), None), (c["fill_s"], "white", "///")]
        x = start
        for width, color, hatch in parts:
            ax.barh(0, width * 1e6, left=x * 1e6, height=0.6, color=color, hatch=hatch, edgecolor="black", linewidth=0.3)
            x += width
        used.add(c["bound"])
        bars.append((s["name"], c["bound"], start, c["total_s"]))
        start += c["total_s"]
    fig.tight_layout()
    axis_in = ax.get_position().width * fig.get_figwidth()
    char_in = 7 * 0.62 / 72  # fontsize 7: a character is about 0.62 em wide
    for name, bound, x0, width in bars:
        room = width / total_s * axis_in
        for label in (f"{name} ({bound})", name):
            if (len(label) + 1) * char_in <= room:
                ax.text((x0 + width / 2) * 1e6, 0.36, label, ha="center", fontsize=7)
                break
    handles = [Rectangle((0, 0), 1, 1, color=BOUND_COLORS[b]) for b in BOUND_COLORS if b in used]
    labels = [f"bound: {b}" for b in BOUND_COLORS if b in used]
    handles += [Rectangle((0, 0), 1, 1, facecolor="white", hatch="///", edgecolor="black"), Rectangle((0, 0), 1, 1, color="#bbbbbb")]
    labels += ["pipeline fill", "launch"]
    ax.legend(handles, labels, loc="upper center", ncol=len(labels), fontsize=7, frameon=False)
    ax.set_yticks([])
    ax.set_ylim(-0.45, 1.0)
    ax.set_xlabel("modelled time (us, static cost model)")
    total = report.get("totals", {}).get("estimated_s", start)
    title = f"{len(sections)} sections, {total * 1e6:.1f} us estimated: launch | steady state (bound) | fill"
    unlabelled = sum(1 for t in ax.texts if t.get_text()) < len(bars)
    if unlabelled:
        title += "; narrow sections unlabelled (names in report.json)"
    ax.set_title(title + (f"\n{note}" if note else ""), fontsize=9)
    fig.tight_layout()
    return fig
