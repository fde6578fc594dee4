"""rdu-compile: outputs it writes, what --emit puts in model.mlir, and its errors.

Most cases call `rdu_compiler.tools.rdu_compile.main` in-process (SystemExit carries the
exit status, capsys the terminal text); one runs the installed command in a subprocess to
see exactly what a user sees. Errors exit 2 with one paragraph, no traceback, and leave
no output folder behind.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from rdu_compiler.fabric import load_fabric
from rdu_compiler.ir import parse_module
from rdu_compiler.pipeline import pipeline, run_pipeline
from rdu_compiler.runtime.emulator import Emulator
from rdu_compiler.tools.rdu_compile import main

os.environ["HF_HUB_OFFLINE"] = "1"

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
MLP = str(EXAMPLES / "mlp.py")
TINY_TOML = Path(__file__).resolve().parents[2] / "rdu_compiler" / "fabric" / "presets" / "tiny.toml"

ERFINV_MODEL = textwrap.dedent(
    """\
    import torch
    from torch import nn


    class Erfinv(nn.Module):
        def forward(self, x):
            y = x * 0.5
            return torch.erfinv(y)


    model = Erfinv()
    example_inputs = (torch.rand(4, 4),)
    """
)
ERFINV_LINE = 8  # the line of `torch.erfinv` above


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run rdu-compile in-process; (exit status, stdout, stderr)."""
    try:
        main(argv)
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def flat(text: str) -> str:
    """The text with rich's line wrapping undone (one space between words)."""
    return " ".join(text.split())


def assert_one_paragraph_error(err: str) -> None:
    assert err.lstrip().startswith("error:")
    assert "Traceback" not in err
    assert "\n\n" not in err.strip(), f"more than one paragraph:\n{err}"


# ---------------------------------------------------------------------------- success


def test_check_writes_program_weights_and_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    code, stdout, err = run_cli([MLP, "--fabric", "tiny", "--check", "-o", str(out)], capsys)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == [".rdu_output", "model.mlir", "report.json", "weights.safetensors"]  # .rdu_output: the marker (tools.outputs)
    text = (out / "model.mlir").read_text()
    assert "rdu.section" in text
    assert "rdu.kernel" in text
    assert (out / "weights.safetensors").stat().st_size > 0
    report = json.loads((out / "report.json").read_text())
    assert report["check"]["ok"] is True
    assert report["check"]["rel_l2"] <= 1e-5
    assert report["fabric"]["name"] == "tiny"
    assert report["opt_level"] == 1
    assert report["totals"]["hbm_bytes"] == report["emulator"]["hbm_bytes"]
    assert report["totals"]["ddr_bytes"] == report["emulator"]["ddr_bytes"]
    assert "compile_stages_s" in report
    assert "OK" in stdout
    # Nothing else (temporary folders) is left beside the output.
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_saved_program_parses_back(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """model.mlir is the placed program: it parses back and the emulator accepts it for tiny;
    weights.safetensors holds every function argument but the one model input."""
    from safetensors.numpy import load_file

    out = tmp_path / "out"
    code, _, err = run_cli([MLP, "--fabric", "tiny", "-o", str(out)], capsys)
    assert code == 0, err
    module = parse_module((out / "model.mlir").read_text())
    emulator = Emulator(module, load_fabric("tiny"))
    weights = load_file(str(out / "weights.safetensors"))
    assert len(weights) == len(emulator.fn.body.block.args) - 1


def test_emit_linalg(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    code, _, err = run_cli([MLP, "--fabric", "tiny", "--emit", "linalg", "--no-run", "-o", str(out)], capsys)
    assert code == 0, err
    text = (out / "model.mlir").read_text()
    assert "linalg." in text
    assert "rdu." not in text
    report = json.loads((out / "report.json").read_text())
    assert "emulator" not in report  # --no-run
    assert "check" not in report


def test_emit_rdu_is_unplaced_and_resumes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    code, _, err = run_cli([MLP, "--fabric", "tiny", "--emit", "rdu", "--no-run", "-o", str(out)], capsys)
    assert code == 0, err
    text = (out / "model.mlir").read_text()
    assert "rdu.kernel" in text
    assert "rdu.section" not in text
    assert "linalg.generic" not in text
    # The rest of the pipeline runs from it (the -O1 text is taken after rdu-fuse).
    module = parse_module(text)
    rest = [p for p in pipeline("tiny", 1) if not p.startswith(("rdu-convert-linalg", "rdu-fuse"))]
    run_pipeline(module, rest)
    assert "rdu.section" in str(module)


def test_O0_and_default_output_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli([MLP, "--fabric", "sn40l", "-O0", "--no-run"], capsys)
    assert code == 0, err
    report = json.loads((tmp_path / "rdu_out" / "mlp" / "report.json").read_text())
    assert report["opt_level"] == 0
    assert report["totals"]["sections"] == report["totals"]["kernels"]


def test_fabric_from_toml_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "mine.toml"
    spec.write_text(TINY_TOML.read_text().replace('name = "tiny"', 'name = "mine"'))
    out = tmp_path / "out"
    code, _, err = run_cli([MLP, "--fabric", str(spec), "--no-run", "-o", str(out)], capsys)
    assert code == 0, err
    assert json.loads((out / "report.json").read_text())["fabric"]["name"] == "mine"


# ---------------------------------------------------------------------------- errors


def test_missing_model_file(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(["nope.py", "-o", "out"], capsys)
    assert code == 2
    assert_one_paragraph_error(err)
    assert "nope.py" in err
    assert "does not exist" in flat(err)
    assert not (tmp_path / "out").exists()
    assert list(tmp_path.iterdir()) == []


def test_model_file_without_a_model(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty_model.py").write_text("x = 1\n")
    code, _, err = run_cli(["empty_model.py", "-o", "out"], capsys)
    assert code == 2
    assert_one_paragraph_error(err)
    message = flat(err)
    assert "empty_model.py" in message
    assert "get_model()" in message and "example_inputs" in message
    assert not (tmp_path / "out").exists()


def _bad_fabric(tmp_path: Path) -> None:
    text = TINY_TOML.read_text()
    assert "\nlanes = 16\n" in text
    (tmp_path / "bad.toml").write_text(text.replace("\nlanes = 16\n", "\nlanes = -3\n"))


def test_invalid_fabric_toml(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    _bad_fabric(tmp_path)
    code, _, err = run_cli([MLP, "--fabric", "bad.toml", "-o", "out"], capsys)
    assert code == 2
    assert_one_paragraph_error(err)
    message = flat(err)
    assert "bad.toml" in message
    assert "lanes" in message
    assert "-3" in message
    assert not (tmp_path / "out").exists()


def test_invalid_fabric_toml_names_the_table(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    _bad_fabric(tmp_path)
    code, _, err = run_cli([MLP, "--fabric", "bad.toml", "-o", "out"], capsys)
    assert code == 2
    assert "[pcu].lanes" in flat(err)


def test_unknown_preset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli([MLP, "--fabric", "no_such_fabric", "-o", str(tmp_path / "out")], capsys)
    assert code == 2
    assert_one_paragraph_error(err)
    assert "no_such_fabric" in flat(err)
    assert not (tmp_path / "out").exists()


def test_unsupported_op_names_op_and_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "erf.py").write_text(ERFINV_MODEL)
    code, _, err = run_cli(["erf.py", "-o", "out"], capsys)
    assert code == 2
    assert_one_paragraph_error(err)
    message = flat(err)
    assert "erfinv" in message
    assert f"erf.py:{ERFINV_LINE}" in message
    assert not (tmp_path / "out").exists()


def test_failure_keeps_previous_output(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A failed compile neither removes nor half-overwrites an existing output folder."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "model.mlir").write_text("previous")
    (tmp_path / "erf.py").write_text(ERFINV_MODEL)
    code, _, _ = run_cli(["erf.py", "-o", "out"], capsys)
    assert code == 2
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["model.mlir"]
    assert (tmp_path / "out" / "model.mlir").read_text() == "previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["erf.py", "out"]


def test_subprocess_error_exit_status_and_no_traceback(tmp_path: Path) -> None:
    """What a user sees from the installed command: exit 2, one paragraph, nothing written."""
    (tmp_path / "erf.py").write_text(ERFINV_MODEL)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    proc = subprocess.run(
        [sys.executable, "-m", "rdu_compiler.tools.rdu_compile", "erf.py", "-o", "out"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert_one_paragraph_error(proc.stderr)
    assert "erfinv" in proc.stderr
    assert f"erf.py:{ERFINV_LINE}" in flat(proc.stderr)
    assert not (tmp_path / "out").exists()


def test_bad_arguments_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli([MLP, "-O", "3"], capsys)
    assert code == 2
    assert "invalid choice" in err


def test_emulator_outputs_match_saved_weights(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """weights.safetensors holds the model's parameters under the program's argument names."""
    from safetensors.numpy import load_file

    from rdu_compiler.frontend.torch.model_file import load_model_file

    out = tmp_path / "out"
    code, _, err = run_cli([MLP, "--fabric", "tiny", "--no-run", "-o", str(out)], capsys)
    assert code == 0, err
    weights = load_file(str(out / "weights.safetensors"))
    model, _ = load_model_file(MLP)
    params = {n: p.detach().numpy() for n, p in model.named_parameters()}
    saved = sorted(v.shape for v in weights.values())
    assert saved == sorted(p.shape for p in params.values())
    for value in weights.values():
        assert any(v.shape == value.shape and np.array_equal(v, value) for v in params.values())
