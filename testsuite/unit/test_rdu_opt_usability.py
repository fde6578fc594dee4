"""rdu-opt reads what the compiler writes and says how to call its passes (issue 12)."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rdu_compiler.tools.rdu_compile import main

ROOT = Path(__file__).resolve().parents[2]
TINY_TOML = ROOT / "rdu_compiler" / "fabric" / "presets" / "tiny.toml"
ATTENTION = """\
import torch


class Attention(torch.nn.Module):
    def forward(self, q, k, v):
        return torch.softmax(torch.bmm(q, k.transpose(1, 2)), -1) @ v


model = Attention()
example_inputs = (torch.randn(2, 64, 32), torch.randn(2, 64, 32), torch.randn(2, 64, 32))
"""


def _rdu_opt(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rdu_compiler.tools.rdu_opt", *argv], capture_output=True,
                          text=True, timeout=300, check=False, env={**os.environ, "COLUMNS": "400"})


def test_reproducer_of_an_attention_model_reproduces(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """linalg.batch_matmul is not registered with xDSL: the printed command must still run."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "400")
    Path("attn.py").write_text(textwrap.dedent(ATTENTION))
    Path("small_ddr.toml").write_text(TINY_TOML.read_text().replace("capacity_bytes = 268435456", "capacity_bytes = 4096")
                                      .replace('name = "tiny"', 'name = "small_ddr"'))
    with pytest.raises(SystemExit) as e:
        main(["attn.py", "--fabric", "small_ddr.toml", "-O0", "-o", "out"])
    assert e.value.code == 2
    err = " ".join(capsys.readouterr().err.split())
    argv = shlex.split(err.split("Reproduce with: ", 1)[1])
    assert argv[0] == "rdu-opt"
    assert "batch_matmul" in Path(argv[1]).read_text() or "rdu.kernel" in Path(argv[1]).read_text()
    proc = _rdu_opt(*argv[1:])
    assert proc.returncode == 2 and "not registered" not in proc.stderr
    assert "does not fit" in err and "does not fit" in proc.stderr  # the same refusal


def test_emit_linalg_output_reads_back_and_the_error_says_how(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("attn.py").write_text(textwrap.dedent(ATTENTION))
    main(["attn.py", "--no-run", "--emit", "linalg", "-o", "out"])
    linalg = str(tmp_path / "out" / "model.mlir")
    assert "linalg.batch_matmul" in Path(linalg).read_text()
    refused = _rdu_opt(linalg)
    assert refused.returncode == 2 and "--allow-unregistered-dialect" in refused.stderr
    assert "Traceback" not in refused.stderr
    ok = _rdu_opt(linalg, "--allow-unregistered-dialect", "-p", "rdu-convert-linalg")
    assert ok.returncode == 0, ok.stderr
    assert "rdu.kernel" in ok.stdout


def test_help_lists_every_rdu_pass_with_its_options() -> None:
    from rdu_compiler.passes import get_all_passes

    proc = _rdu_opt("--help")
    assert proc.returncode == 0
    for name in get_all_passes():
        assert f"  {name}" in proc.stdout
    assert "rdu-tile{fabric: str = '' max_buffer_pmus: int = 8 resident_index: bool = False}" in proc.stdout
    assert "effort: int = 20" in proc.stdout


def test_a_file_without_the_mlir_extension_is_one_paragraph(tmp_path: Path) -> None:
    path = tmp_path / "program.txt"
    path.write_text("func.func @f() {\n  func.return\n}\n")
    refused = _rdu_opt(str(path))
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "-f mlir" in refused.stderr
    assert _rdu_opt(str(path), "-f", "mlir").returncode == 0
