"""Design-space sweeps (issue 17): the spec, the executors agree, resume recomputes nothing,
a failed job is a row."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rdu_compiler import sweep
from rdu_compiler.tools.rdu_sweep import main

ROOT = Path(__file__).resolve().parents[2]
SPEC = f"""
[sweep]
name = "t"
[[model]]
file = "{ROOT / 'examples' / 'mlp.py'}"
[fabric]
base = "tiny"
[axes]
"pmu.capacity_bytes" = [8192, 16384]
opt_level = [1]
"""


def _spec(tmp_path: Path, text: str = SPEC) -> sweep.SweepSpec:
    (tmp_path / "sweep.toml").write_text(text)
    return sweep.load_spec(tmp_path / "sweep.toml")


def _figures(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "compile_s"} for r in rows]  # wall clock differs


def test_spec_is_the_product_of_the_axes(tmp_path: Path) -> None:
    spec = _spec(tmp_path, SPEC.replace("opt_level = [1]", "opt_level = [0, 1]\n\"hbm.bytes_per_s\" = [3.2e10, 6.4e10]"))
    assert len(spec.jobs) == 2 * 2 * 2
    assert len({j.key("c") for j in spec.jobs}) == 8 and spec.jobs[0].key("c") != spec.jobs[0].key("d")
    listed = _spec(tmp_path, SPEC + '[[jobs]]\n"pmu.capacity_bytes" = 8192\nopt_level = 0\n')
    assert [dict(j.axes) for j in listed.jobs] == [{"pmu.capacity_bytes": 8192, "opt_level": 0}]


@pytest.mark.parametrize(("text", "match"), [
    ("[[model]]\nbuiltin = 'x'\n", "builtin 'x' is not one of"),
    ("[[model]]\nfile = 'a.py'\nonnx = 'b.onnx'\n", "exactly one of builtin, file, onnx"),
    ("[[model]]\nfile = 'missing.py'\n", "no file"),
    (SPEC + "[oops]\n", "unknown table"),
    (SPEC.replace('"pmu.capacity_bytes"', '"pmu.capacity"'), "not a field of a fabric spec"),
    (SPEC.replace("opt_level = [1]", "opt_level = []"), "non-empty list"),
    (SPEC.replace("opt_level = [1]", "seq = [1, 2]"), "needs a builtin model"),
    ("[[model]\n", "invalid TOML"),
])
def test_bad_specs_say_what_and_where(tmp_path: Path, text: str, match: str) -> None:
    with pytest.raises(sweep.SweepSpecError, match=match):
        _spec(tmp_path, text)


def test_serial_process_and_ray_give_identical_rows(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    serial = sweep.run(spec, "serial", tmp_path / "serial")
    process = sweep.run(spec, "process", tmp_path / "process", workers=2)
    ray_rows = sweep.run(spec, "ray", tmp_path / "ray", workers=2)
    assert all(not r["error"] for r in serial) and len(serial) == 2
    assert _figures(serial) == _figures(process) == _figures(ray_rows)
    assert serial[0]["estimated_s"] != serial[1]["estimated_s"]  # the axis changes the answer


def test_resume_recomputes_nothing_and_finishes_what_was_cut(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    out = tmp_path / "out"
    first = sweep.run(spec, "serial", out)
    ran: list[int] = []
    again = sweep.run(spec, "serial", out, on_row=lambda r, d, t: ran.append(r["index"]))
    assert ran == [] and again == first
    lines = (out / "results.jsonl").read_text().splitlines()
    (out / "results.jsonl").write_text(lines[0] + "\n" + lines[1][:10])  # killed while writing the second row
    sweep.run(spec, "serial", out, on_row=lambda r, d, t: ran.append(r["index"]))
    assert ran == [json.loads(lines[1])["index"]]


def test_a_failed_job_is_a_row_and_the_sweep_goes_on(tmp_path: Path) -> None:
    spec = _spec(tmp_path, SPEC.replace('"pmu.capacity_bytes" = [8192, 16384]',
                                        '"ddr.capacity_bytes" = [4096, 268435456]'))  # the MLP does not fit 4 KiB
    rows = sweep.run(spec, "serial", tmp_path / "out")
    assert "does not fit" in rows[0]["error"] and rows[0]["estimated_s"] is None
    assert not rows[1]["error"] and rows[1]["estimated_s"] > 0
    assert "error" in (tmp_path / "out" / "results.csv").read_text().splitlines()[0]


def test_cli_refuses_bad_input_with_status_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "bad.toml").write_text("[[model]]\nbuiltin = 'nope'\n")
    with pytest.raises(SystemExit) as e:
        main([str(tmp_path / "bad.toml"), "-o", str(tmp_path / "out")])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "error:" in err and "Traceback" not in err and not (tmp_path / "out").exists()
