"""Pictures a user reads (issue 12): kernels named on placement maps, readable timelines,
and maps that say when sections were left out."""

from __future__ import annotations

import pytest
import torch

import rdu_compiler
from rdu_compiler.tools.plots import (
    MAX_SECTION_MAPS,
    maps_left_out,
    placement_figure,
    timeline_figure,
)


class _Chain(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(6):
            x = torch.softmax(x @ x.T, -1) @ x + x.mean(-1, keepdim=True)
        return x


@pytest.fixture(scope="module")
def program() -> rdu_compiler.CompiledProgram:
    return rdu_compiler.compile(_Chain(), (torch.randn(32, 32),), fabric="tiny", opt_level=0)


def _overlap(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def test_placement_map_names_every_kernel(program) -> None:
    from rdu_compiler.fabric import load_fabric
    from rdu_compiler.passes.placement_ir import section_problem
    from rdu_compiler.plan.placement import Grid

    fabric = load_fabric("tiny")
    section = next(op for op in program.module.walk() if type(op).__name__ == "SectionOp")
    fig = placement_figure(section, Grid.from_fabric(fabric), fabric)
    legend = fig.axes[0].get_legend()
    names = [k.sym_name.data for k in section_problem(section).kernels]
    assert [t.get_text() for t in legend.get_texts()] == [f"{i}: {n}" for i, n in enumerate(names)]
    on_map = {t.get_text() for t in fig.axes[0].texts}
    assert on_map == {str(i) for i in range(len(names))}


def _synthetic_report(widths: list[float]) -> dict:
    sections = [{"name": f"s{i}", "cost": {"total_s": w * 1e-6, "fill_s": 0.1 * w * 1e-6, "launch_s": 0.2e-6,
                                            "bound": ("hbm", "ddr", "compute")[i % 3]}} for i, w in enumerate(widths)]
    return {"sections": sections, "totals": {"estimated_s": sum(widths) * 1e-6}}


@pytest.mark.parametrize("widths", [[1.0] * 37, [1.0, 5.0, 0.5] * 12 + [30.0], [20.0, 1.0, 20.0]])
def test_timeline_labels_never_overlap(widths: list[float]) -> None:
    fig = timeline_figure(_synthetic_report(widths))
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in fig.axes[0].texts]
    assert all(not _overlap(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    if max(widths) >= 20:
        assert boxes  # wide sections keep their labels
    assert ("unlabelled" in fig.axes[0].get_title()) == (len(boxes) < len(widths))


def test_maps_left_out_is_said(program) -> None:
    n = len(program.report["sections"])
    assert n > MAX_SECTION_MAPS
    note = maps_left_out(program.module)
    assert note and f"first {MAX_SECTION_MAPS} of {n} sections" in note
    assert maps_left_out(program.module, max_maps=None) is None
    assert maps_left_out(program.module, max_maps=n) is None
