"""pipeline.stages is the one list of stages: the API and the CLI report exactly those."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import rdu_compiler
from rdu_compiler.pipeline import IMPORT, LOAD, pipeline, stages

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("opt_level", [0, 1])
def test_api_reports_every_stage_in_order(opt_level: int) -> None:
    seen: list[str] = []
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.GELU())
    rdu_compiler.compile(model, (torch.randn(4, 8),), fabric="tiny", opt_level=opt_level, on_stage=seen.append)
    assert seen == stages("tiny", opt_level)[1:]
    assert seen[0] == IMPORT and "rdu-place" in seen
    assert [s for s in seen if s.startswith("rdu-")] == [p.split("{")[0] for p in pipeline("tiny", opt_level)]


def test_cli_times_every_stage(tmp_path: Path) -> None:
    from rdu_compiler.tools.rdu_compile import main

    main([str(ROOT / "examples" / "mlp.py"), "--fabric", "tiny", "--check", "-o", str(tmp_path / "out")])
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert list(report["compile_stages_s"]) == stages("tiny", 1, run=True, check=True)
    assert list(report["compile_stages_s"])[0] == LOAD and "rdu-fold-views" in report["compile_stages_s"]
