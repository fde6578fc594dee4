"""Running a compiled ONNX program as onnxruntime does (`api.OnnxProgram.run`), the named ONNX
rewrites (`frontend/onnx/prepare.py`), `--check` naming its reference, and the frontend's
imports (no API, CLI or runtime below it)."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch_mlir")
onnx = pytest.importorskip("onnx")
from onnx import ModelProto, TensorProto, helper  # noqa: E402

import rdu_compiler  # noqa: E402
from rdu_compiler.errors import RduError  # noqa: E402
from rdu_compiler.frontend.errors import FrontendError  # noqa: E402
from rdu_compiler.frontend.onnx.prepare import STEPS, prepare, step_names  # noqa: E402
from rdu_compiler.tools.rdu_compile import main  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def _binary(op: str, elem: int, shape: list[int]) -> ModelProto:
    vis = [helper.make_tensor_value_info(n, elem, shape) for n in ("x", "y", "z")]
    graph = helper.make_graph([helper.make_node(op, ["x", "y"], ["z"])], "g", vis[:2], vis[2:])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_run_is_numpy_in_numpy_out_in_the_declared_uint8() -> None:
    """Before: `.run` returned a torch tensor (numpy only through the separate `run_onnx`);
    now a list of numpy arrays in the declared dtypes, as onnxruntime's `run`."""
    program = rdu_compiler.compile_onnx(_binary("Add", TensorProto.UINT8, [4]))
    out = program.run(np.array([250, 1, 2, 3], np.uint8), np.array([3, 1, 2, 9], np.uint8))
    assert isinstance(out, list) and len(out) == 1
    assert isinstance(out[0], np.ndarray) and out[0].dtype == np.uint8
    assert out[0].tolist() == [253, 2, 4, 12]


def test_run_returns_bfloat16_as_ml_dtypes() -> None:
    """Before: a torch.bfloat16 tensor, which `.numpy()` cannot convert."""
    import ml_dtypes

    program = rdu_compiler.compile_onnx(_binary("Mul", TensorProto.BFLOAT16, [2, 3]))
    x = np.array([[1.5, -2, 3], [0.25, 8, -1]], dtype=ml_dtypes.bfloat16)
    y = np.array([[2, 2, 0.5], [4, 0.125, -3]], dtype=ml_dtypes.bfloat16)
    (z,) = program.run(x, y)
    assert isinstance(z, np.ndarray) and z.dtype == np.dtype(ml_dtypes.bfloat16)
    np.testing.assert_array_equal(z.astype(np.float32), (x.astype(np.float32) * y.astype(np.float32)))


def test_run_takes_feeds_by_name_and_refuses_other_dtypes() -> None:
    program = rdu_compiler.compile_onnx(_binary("Sub", TensorProto.FLOAT, [3]))
    x, y = np.array([1, 2, 3], np.float32), np.array([0.5, 0.5, 4], np.float32)
    (by_name,) = program.run({"y": y, "x": x})
    np.testing.assert_array_equal(by_name, x - y)
    with pytest.raises(RduError, match="has dtype float64 but the model was compiled for float32"):
        program.run(x.astype(np.float64), y)
    with pytest.raises(RduError, match="takes 2 input"):
        program.run(x)
    with pytest.raises(RduError, match="pass one array per graph input"):
        program.run({"x": x})


def test_cli_check_on_onnx_names_the_reference(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Before: an ONNX model's --check printed 'check against PyTorch eager'."""
    path = tmp_path / "add.onnx"
    onnx.save(_binary("Add", TensorProto.FLOAT, [2, 3]), str(path))
    out = tmp_path / "out"
    with _no_exit():
        main([str(path), "--fabric", "tiny", "--check", "-o", str(out)])
    stdout = capsys.readouterr().out
    assert "check against onnx.reference.ReferenceEvaluator" in " ".join(stdout.split())
    assert "PyTorch eager" not in stdout
    assert "ReferenceEvaluator" in json.loads((out / "report.json").read_text())["check"]["reference"]


class _no_exit:  # noqa: N801 - a context manager that fails the test on SystemExit
    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, value: object, tb: object) -> bool:
        if isinstance(value, SystemExit):
            pytest.fail(f"rdu-compile exited with {value.code}")
        return False


# ------------------------------------------------------------------ the named ONNX rewrites


def test_prepare_steps_are_a_named_documented_list() -> None:
    names = step_names()
    assert names[0] == "expand-functions" and names[-1] == "refuse-unsupported-types"
    assert len(set(names)) == len(names) == len(STEPS)
    for step in STEPS:
        assert step.doc and "\n" not in step.doc, step.name


def _clip_model() -> ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])
    lo = onnx.numpy_helper.from_array(np.array(0.0, np.float32), "lo")
    hi = onnx.numpy_helper.from_array(np.array(1.0, np.float32), "hi")
    graph = helper.make_graph([helper.make_node("Clip", ["x", "lo", "hi"], ["y"])], "g", [x], [y], [lo, hi])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_prepare_runs_every_step_in_order_and_can_skip_one() -> None:
    seen: list[str] = []
    state = prepare(_clip_model(), (), "test", on_step=lambda name, _model: seen.append(name))
    assert seen == step_names()
    assert "IsNaN" in {n.op_type for n in state.model.graph.node}  # decompose: Clip keeps NaN
    skipped = prepare(_clip_model(), (), "test", skip=("decompose",))
    assert "IsNaN" not in {n.op_type for n in skipped.model.graph.node}
    with pytest.raises(FrontendError, match="no ONNX preparation step named 'nope'; the steps are expand-functions"):
        prepare(_clip_model(), (), "test", skip=("nope",))


# ------------------------------------------------------------------ the frontend's imports


def test_frontend_imports_no_api_tools_or_runtime() -> None:
    """The frontend produces linalg text: it must not import the API, the CLI or the runtime
    (an import circle api -> frontend -> api existed through the ONNX importer)."""
    bad = []
    for path in sorted((ROOT / "rdu_compiler" / "frontend").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            for name in names:
                if name in ("rdu_compiler.api", "rdu_compiler.tools", "rdu_compiler.runtime") or name.startswith(
                    ("rdu_compiler.api.", "rdu_compiler.tools.", "rdu_compiler.runtime.")
                ):
                    bad.append(f"{path.relative_to(ROOT)}: {name}")
    assert not bad, bad
