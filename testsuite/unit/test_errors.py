"""Errors a user can act on: for each kind of failure, rdu-compile exits with status 2 and
prints one paragraph that says what failed, where, and what to do (no traceback unless
--debug), and writes no output folder.

One test per kind: a missing or unreadable file; a model.py without a model; an export
failure (data-dependent control flow); an op the compiler does not lower (op, model line
or ONNX node, nearest supported alternative); a dynamic shape (ONNX); an invalid fabric
spec (field and file); a model larger than the fabric's DDR (with the rdu-opt command that
reproduces the failing pass); a program the emulator refuses.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rdu_compiler.errors import RduError
from rdu_compiler.tools.rdu_compile import main

ROOT = Path(__file__).resolve().parents[2]
MLP = str(ROOT / "examples" / "mlp.py")
TINY_TOML = ROOT / "rdu_compiler" / "fabric" / "presets" / "tiny.toml"


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """rdu-compile in-process with a wide terminal; (exit status, stderr joined to one line)."""
    try:
        main(argv)
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    _, err = capsys.readouterr()
    assert err.lstrip().startswith("error:") or code == 0, err
    assert "Traceback" not in err
    assert "\n\n" not in err.strip(), f"more than one paragraph:\n{err}"
    return code, " ".join(err.split())


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "400")


def write(path: str, text: str) -> str:
    Path(path).write_text(textwrap.dedent(text))
    return path


# ------------------------------------------------------------------------------ files


@pytest.mark.parametrize("name", ["missing.py", "missing.onnx"])
def test_missing_file(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_cli([name, "-o", "out"], capsys)
    assert code == 2
    assert name in err and "does not exist" in err
    assert not Path("out").exists()


def test_unreadable_onnx_file(capsys: pytest.CaptureFixture[str]) -> None:
    Path("garbage.onnx").write_bytes(b"\x08\xff\xff\xff this is not a protobuf" * 20)
    code, err = run_cli(["garbage.onnx", "-o", "out"], capsys)
    assert code == 2
    assert "garbage.onnx" in err and "could not be read as an ONNX model" in err
    assert "re-export" in err
    assert not Path("out").exists()


def test_not_a_model_file(capsys: pytest.CaptureFixture[str]) -> None:
    Path("notes.txt").write_text("hello\n")
    code, err = run_cli(["notes.txt", "-o", "out"], capsys)
    assert code == 2
    assert "notes.txt" in err and "not a Python (.py) file" in err


# ------------------------------------------------------------------------------ model.py


def test_model_py_without_a_model(capsys: pytest.CaptureFixture[str]) -> None:
    write("nomodel.py", "import torch\nx = torch.zeros(3)\n")
    code, err = run_cli(["nomodel.py", "-o", "out"], capsys)
    assert code == 2
    assert "nomodel.py" in err and "get_model()" in err and "example_inputs" in err


def test_export_failure_data_dependent_branch(capsys: pytest.CaptureFixture[str]) -> None:
    write(
        "branchy.py",
        """\
        import torch
        from torch import nn


        class Branchy(nn.Module):
            def forward(self, x):
                if x.sum() > 0:
                    return x * 2
                return x - 1


        model = Branchy()
        example_inputs = (torch.randn(4),)
        """,
    )
    code, err = run_cli(["branchy.py", "-o", "out"], capsys)
    assert code == 2
    assert "Branchy" in err
    assert "branchy.py:7" in err  # the `if` line
    assert "torch.where" in err  # what to do
    assert not Path("out").exists()


# ------------------------------------------------------------------------------ ops


def test_op_not_lowered_torch_names_line_and_alternative(capsys: pytest.CaptureFixture[str]) -> None:
    write(
        "noisy.py",
        """\
        import torch
        from torch import nn


        class Noisy(nn.Module):
            def forward(self, x):
                noise = torch.rand_like(x)
                return x + noise


        model = Noisy()
        example_inputs = (torch.randn(4, 8),)
        """,
    )
    code, err = run_cli(["noisy.py", "-o", "out"], capsys)
    assert code == 2
    assert "ml_program.global_load" in err and "no rdu lowering" in err
    assert "noisy.py:7" in err and "torch.rand_like" in err  # where
    assert "nearest supported alternative: random values passed as an input" in err  # what to do
    assert "Reproduce with: rdu-opt" in err
    assert not Path("out").exists()


def test_op_not_lowered_onnx_names_node_and_alternative(capsys: pytest.CaptureFixture[str]) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 6, 6])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 4, 4])
    node = helper.make_node("LpPool", ["x"], ["y"], name="pool1", kernel_shape=[2, 2], dilations=[2, 2], p=2)
    model = helper.make_model(helper.make_graph([node], "g", [x], [y]), opset_imports=[helper.make_opsetid("", 19)])
    model.ir_version = 8
    onnx.save(model, "lp.onnx")
    code, err = run_cli(["lp.onnx", "-o", "out"], capsys)
    assert code == 2
    assert "'LpPool'" in err and "node 'pool1'" in err
    assert "Nearest supported alternative: AveragePool" in err


def test_dynamic_shape_onnx(capsys: pytest.CaptureFixture[str]) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("tokens", TensorProto.FLOAT, ["batch", 16])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 16])
    model = helper.make_model(
        helper.make_graph([helper.make_node("Relu", ["tokens"], ["y"])], "g", [x], [y]),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    model.ir_version = 8
    onnx.save(model, "dyn.onnx")
    code, err = run_cli(["dyn.onnx", "-o", "out"], capsys)
    assert code == 2
    assert "'tokens'" in err and "dynamic dimension 0" in err and "'batch'" in err
    assert "--input-shape tokens=1x16" in err


# ------------------------------------------------------------------------------ fabric


def test_invalid_fabric_spec_names_field_and_file(capsys: pytest.CaptureFixture[str]) -> None:
    Path("broken.toml").write_text(TINY_TOML.read_text().replace("\nstages = 6\n", "\nstages = \"six\"\n"))
    code, err = run_cli([MLP, "--fabric", "broken.toml", "-o", "out"], capsys)
    assert code == 2
    assert "broken.toml" in err and "stages" in err
    assert not Path("out").exists()


def test_model_larger_than_ddr_with_reproducer(capsys: pytest.CaptureFixture[str]) -> None:
    text = TINY_TOML.read_text()
    assert "capacity_bytes = 268435456" in text
    Path("small_ddr.toml").write_text(text.replace("capacity_bytes = 268435456", "capacity_bytes = 4096").replace('name = "tiny"', 'name = "small_ddr"'))
    code, err = run_cli([MLP, "--fabric", "small_ddr.toml", "-o", "out"], capsys)
    assert code == 2
    assert "rdu-allocate" in err and "does not fit" in err
    assert "DDR (4096 B)" in err and "small_ddr" in err
    assert "more DDR" in err  # what to do
    assert not Path("out").exists()
    # The failing pass's input was written and the printed command reproduces the failure.
    command = err.split("Reproduce with: ", 1)[1]
    argv = shlex.split(command)
    assert argv[0] == "rdu-opt" and Path(argv[1]).is_file()
    proc = subprocess.run(
        [sys.executable, "-m", "rdu_compiler.tools.rdu_opt", *argv[1:]],
        capture_output=True, text=True, timeout=300, check=False, env={**os.environ, "COLUMNS": "400"},
    )
    assert proc.returncode == 2, proc.stderr
    assert "does not fit" in proc.stderr


# ------------------------------------------------------------------------------ emulator


def test_program_the_emulator_refuses(capsys: pytest.CaptureFixture[str]) -> None:
    write(
        "lookup.py",
        """\
        import torch
        from torch import nn


        class Lookup(nn.Module):
            def __init__(self):
                super().__init__()
                self.emb = nn.Embedding(10, 4)

            def forward(self, ids):
                return self.emb(ids)


        model = Lookup().eval()
        example_inputs = (torch.tensor([[1, 2, 42]]),)
        """,
    )
    code, err = run_cli(["lookup.py", "-o", "out"], capsys)
    assert code == 2
    assert "kernel 'k" in err and "runtime check failed" in err
    assert "emulator refuses" in err and "indices within the table size" in err
    assert not Path("out").exists()


def test_debug_shows_the_exception(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(RduError, match="does not exist"):
        main(["missing.py", "--debug"])
