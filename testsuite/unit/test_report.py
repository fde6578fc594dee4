"""The terminal report: readable in a narrow terminal and when piped (issue 12)."""

from __future__ import annotations

import io

import pytest
import torch
from rich.console import Console

import rdu_compiler
from rdu_compiler.tools.report import _cut, print_report
from rdu_compiler.units import compact_bytes as _compact_bytes
from rdu_compiler.units import compact_seconds as _compact_time


class _Mlp(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = torch.nn.Linear(64, 128), torch.nn.Linear(128, 64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.b(torch.relu(self.a(x))), -1) + x.mean(-1, keepdim=True)


@pytest.fixture(scope="module", params=["tiny", "sn40l"])
def tiny_report(request: pytest.FixtureRequest) -> dict:
    """The report of a small MLP on `tiny` (many sections) and on `sn40l` (4-digit unit counts)."""
    torch.manual_seed(0)
    return rdu_compiler.compile(_Mlp(), (torch.randn(16, 64),), fabric=request.param, opt_level=1).report


@pytest.mark.parametrize("width", [80, 100])
def test_section_table_fits_the_terminal_and_keeps_every_number(tiny_report: dict, width: int) -> None:
    buf = io.StringIO()
    print_report(Console(file=buf, width=width), tiny_report, "mlp.py")
    lines = buf.getvalue().splitlines()
    assert max(map(len, lines)) <= width
    rows = [line for line in lines if line.lstrip().startswith("s") and line.split()[0] in
            {s["name"] for s in tiny_report["sections"]}]
    assert len(rows) == len(tiny_report["sections"])
    for row, s in zip(rows, tiny_report["sections"], strict=True):
        assert "…" not in row  # no starved column
        assert _compact_time(s["cost"]["total_s"]) in row and _compact_bytes(s["hbm_bytes"]) in row
        assert row.rstrip().endswith(_cut(s["reason"]))
    text = " ".join(" ".join(lines).split())  # the reasons, re-joined across wrapped lines
    for s in tiny_report["sections"]:
        assert f"{s['name']}: {' '.join(s['reason'].split())}" in text


def test_compact_units() -> None:
    assert [_compact_bytes(n) for n in (0, 896, 1000, 12_700, 9 * 2**20)] == ["0 B", "896 B", "0.977 KiB", "12.4 KiB", "9 MiB"]
    assert [_compact_time(t) for t in (1.234, 0.0885, 4.12e-4, 3.1e-9)] == ["1.23 s", "88.5 ms", "412 µs", "3.1 ns"]
    assert [_cut(r) for r in ("fabric full: adding 'k1'", "cost model: cutting", "-O0: one kernel", "end of program", "?")] == [
        "full", "cost", "-O0", "end", "other"]


class _Rope(torch.nn.Module):
    """A RoPE-like table computed from arange and a lifted constant tensor."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("inv_freq", 1.0 / (10000 ** (torch.arange(0, 8, 2).float() / 8)), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = torch.arange(x.shape[0], dtype=torch.float32)
        ang = torch.outer(t, self.inv_freq)
        return x * torch.cat([ang.cos(), ang.sin()], -1) + torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0])


def test_report_says_where_constant_data_lives() -> None:
    x = (torch.randn(16, 8),)
    plain = rdu_compiler.compile(_Rope(), x, fabric="tiny").report["constants"]
    assert plain["weight_bytes"] == {"buffer": 16, "constant": 32}  # inv_freq; the lifted literal
    assert plain["constants_as_weights_bytes"] == 32 and plain["largest_ir_literal_bytes"] <= 64
    folded = rdu_compiler.compile(_Rope(), x, fabric="tiny", fold_constants=True).report["constants"]
    assert folded["constants_as_weights_bytes"] >= 16 * 8 * 4  # the table became a weight


class _TwoLines(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(8, 8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x @ self.w  # LINE-MATMUL
        return torch.softmax(y, -1)  # LINE-SOFTMAX


def test_kernels_name_their_model_line_in_report_trace_and_emitted_ir(tmp_path) -> None:
    from rdu_compiler.runtime.trace import trace_events

    program = rdu_compiler.compile(_TwoLines(), (torch.randn(4, 8),), fabric="tiny", opt_level=0)
    kernels = [k for s in program.report["sections"] for k in s["kernels"]]
    matmul = next(k for k in kernels if "matmul" in k["name"])
    assert "LINE-MATMUL" in matmul["source"] and "test_report.py:" in matmul["source"]
    assert any("LINE-SOFTMAX" in k.get("source", "") for k in kernels if k is not matmul)
    sliced = [e for e in trace_events(program.report) if e["ph"] == "X" and e["name"] == matmul["name"] and e["tid"] > 0]
    assert "LINE-MATMUL" in sliced[0]["args"]["source"]
    program.save(str(tmp_path))
    text = (tmp_path / "model.mlir").read_text()
    assert f"// {matmul['name']}: " in text and "LINE-MATMUL" in text.split("builtin.module", 1)[0]
