"""The ONNX frontend: compile_onnx, weights as arguments, shapes, errors, rdu-compile model.onnx.

The example models (examples/mlp.py, examples/cnn.py) are exported with
examples/export_onnx.py into a temporary folder and must give the same numbers as the
PyTorch path (`rdu_compiler.compile` on the module) and PyTorch eager.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import rdu_compiler  # noqa: E402
from rdu_compiler.errors import CompileError  # noqa: E402
from rdu_compiler.frontend.errors import FrontendError  # noqa: E402
from rdu_compiler.frontend.onnx.errors import OnnxImportError  # noqa: E402
from rdu_compiler.frontend.onnx.importer import import_onnx  # noqa: E402
from rdu_compiler.frontend.onnx.load import compile_time_inputs  # noqa: E402
from rdu_compiler.frontend.torch.model_file import load_model_file  # noqa: E402
from rdu_compiler.tools.check import parse_input_shape  # noqa: E402
from rdu_compiler.tools.rdu_compile import main  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def _export_module():
    spec = importlib.util.spec_from_file_location("export_onnx", EXAMPLES / "export_onnx.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("onnx")
    exporter = _export_module()
    return {name: exporter.export(name, out) for name in ("mlp", "cnn")}


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        main(argv)
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def flat(text: str) -> str:
    return " ".join(text.split())


def one_paragraph(err: str) -> None:
    assert err.lstrip().startswith("error:"), err
    assert "Traceback" not in err
    assert "\n\n" not in err.strip(), err


def model_of(nodes, inputs, outputs, initializers=(), opset=17) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


# ---------------------------------------------------------------------------- examples


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_example_same_numbers_as_pytorch_path(name: str, exported: dict[str, Path]) -> None:
    model, example_inputs = load_model_file(EXAMPLES / f"{name}.py")
    via_onnx = rdu_compiler.compile_onnx(str(exported[name]), fabric="sn40l")
    via_torch = rdu_compiler.compile(model, example_inputs, fabric="sn40l")
    (got,) = via_onnx.run(*example_inputs)  # an ONNX program: a list of numpy arrays
    want = via_torch.run(*example_inputs)
    with torch.no_grad():
        eager = model(*example_inputs)
    assert got.shape == tuple(eager.shape)
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got, eager.numpy(), rtol=1e-5, atol=1e-6)


def test_initializers_are_arguments_not_ir(exported: dict[str, Path]) -> None:
    imported = import_onnx(exported["mlp"])
    params = [n for n, k in zip(imported.arg_names, imported.arg_kinds, strict=True) if k == "parameter"]
    assert sorted(params) == sorted(["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "fc3.weight", "fc3.bias"])
    assert imported.input_names == ["x"] and imported.arg_kinds[0] == "input"
    assert tuple(imported.weights["fc1.weight"].shape) == (128, 64)
    # No weight values in the text: no dense literal with more than a handful of elements.
    for literal in re.findall(r"dense<\[([^>]*)\]>", imported.mlir_text):
        assert literal.count(",") < 64
    assert "dense_resource" not in imported.mlir_text
    # The function's signature takes the weights.
    assert "tensor<128x64xf32>" in imported.mlir_text.split("^bb0", 1)[1].split("\n", 1)[0]


def test_save_writes_weights(tmp_path: Path, exported: dict[str, Path]) -> None:
    from safetensors.numpy import load_file

    program = rdu_compiler.compile_onnx(exported["cnn"], fabric="tiny")
    program.save(str(tmp_path / "out"))
    weights = load_file(str(tmp_path / "out" / "weights.safetensors"))
    assert sorted(weights) == sorted(n for n, k in zip(program.imported.arg_names, program.imported.arg_kinds, strict=True) if k == "parameter")


# ---------------------------------------------------------------------------- shapes


def _dynamic_model() -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])
    w = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(4, 3), "w")
    return model_of([helper.make_node("MatMul", ["x", "w"], ["y"])], [x], [y], [w])


def test_dynamic_dim_needs_input_shape() -> None:
    with pytest.raises(FrontendError) as info:
        rdu_compiler.compile_onnx(_dynamic_model())
    message = str(info.value)
    assert "'x'" in message and "dynamic dimension 0" in message and "'batch'" in message
    assert "--input-shape x=1x4" in message
    assert "input_shapes=" in message


def test_input_shapes_make_it_static() -> None:
    program = rdu_compiler.compile_onnx(_dynamic_model(), input_shapes={"x": (5, 4)})
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    (y,) = program.run(x)
    np.testing.assert_allclose(y, x @ np.arange(12, dtype=np.float32).reshape(4, 3), rtol=1e-5)


def test_input_shape_errors() -> None:
    with pytest.raises(FrontendError, match="not an input of the model"):
        rdu_compiler.compile_onnx(_dynamic_model(), input_shapes={"nope": (1, 4)})
    with pytest.raises(FrontendError, match="rank 2"):
        rdu_compiler.compile_onnx(_dynamic_model(), input_shapes={"x": (1, 2, 4)})
    assert parse_input_shape("x=1x3x224x224") == ("x", (1, 3, 224, 224))
    assert parse_input_shape("a=b=2x2") == ("a=b", (2, 2))
    for bad in ("x", "x=1xz", "x=0x3", "=3"):
        with pytest.raises(FrontendError):
            parse_input_shape(bad)


def test_compile_time_inputs_and_constant_inputs() -> None:
    """A Reshape whose shape is a graph input: named by compile_time_inputs, bound by constant_inputs."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 6])
    s = helper.make_tensor_value_info("shape", TensorProto.INT64, [2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 4])
    model = model_of([helper.make_node("Reshape", ["x", "shape"], ["y"])], [x, s], [y])
    assert compile_time_inputs(model) == ["shape"]
    program = rdu_compiler.compile_onnx(model, constant_inputs={"shape": np.array([3, 4])})
    assert program.imported.input_names == ["x"]
    data = np.arange(12, dtype=np.float32).reshape(2, 6)
    np.testing.assert_array_equal(program.run(data)[0], data.reshape(3, 4))


def test_constant_subgraph_is_folded() -> None:
    """Shape -> Gather -> Concat -> Reshape: evaluated at import, the Reshape gets a constant."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 12])
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "zero"], ["b"], axis=0),
        helper.make_node("Concat", ["b", "minus1"], ["shape"], axis=0),
        helper.make_node("Reshape", ["x", "shape"], ["y"]),
    ]
    inits = [numpy_helper.from_array(np.array([0]), "zero"), numpy_helper.from_array(np.array([-1]), "minus1")]
    program = rdu_compiler.compile_onnx(model_of(nodes, [x], [y], inits))
    data = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    np.testing.assert_array_equal(program.run(data)[0], data.reshape(2, 12))


def test_unsigned_output_dtype() -> None:
    x = helper.make_tensor_value_info("x", TensorProto.UINT8, [4])
    y = helper.make_tensor_value_info("y", TensorProto.UINT8, [4])
    program = rdu_compiler.compile_onnx(model_of([helper.make_node("Add", ["x", "x"], ["y"])], [x], [y]))
    (out,) = program.run(np.array([1, 100, 200, 255], dtype=np.uint8))
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, np.array([2, 200, 144, 254], dtype=np.uint8))


def test_function_op_is_expanded() -> None:
    """An op torch-mlir has no conversion for but ONNX defines as a function (opset-24
    Swish) is replaced by its function body."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 5])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 5])
    model = model_of([helper.make_node("Swish", ["x"], ["y"], alpha=1.5)], [x], [y], opset=24)
    program = rdu_compiler.compile_onnx(model)
    data = np.linspace(-3, 3, 10, dtype=np.float32).reshape(2, 5)
    np.testing.assert_allclose(program.run(data)[0], data / (1 + np.exp(-1.5 * data)), rtol=1e-5)


# ---------------------------------------------------------------------------- errors


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(FrontendError, match="does not exist"):
        import_onnx(tmp_path / "nope.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00\xffnot a protobuf at all" * 10)
    with pytest.raises(FrontendError, match="could not be read as an ONNX model"):
        import_onnx(bad)
    with pytest.raises(FrontendError, match="not a file"):
        import_onnx(tmp_path)


def test_unsupported_element_type_named() -> None:
    # uint16 Add is computed exactly on int32 (wrapping), but a uint16 base for Pow is
    # not: the frontend refuses it by name instead of computing on the wrong type.
    x = helper.make_tensor_value_info("x", TensorProto.UINT16, [4])
    y = helper.make_tensor_value_info("y", TensorProto.UINT16, [4])
    with pytest.raises(OnnxImportError, match="'x' has element type uint16"):
        import_onnx(model_of([helper.make_node("Pow", ["x", "x"], ["y"])], [x], [y]))


def test_op_torch_mlir_cannot_lower_names_node_and_alternative() -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 6, 6])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 4, 4])
    node = helper.make_node("LpPool", ["x"], ["y"], name="pool", kernel_shape=[2, 2], dilations=[2, 2], p=2)
    with pytest.raises(OnnxImportError) as info:
        import_onnx(model_of([node], [x], [y], opset=19))
    message = str(info.value)
    assert "ONNX op 'LpPool'" in message and "node 'pool'" in message
    assert "Nearest supported alternative: AveragePool" in message
    assert info.value.op_type == "LpPool"


def test_conversion_refusal_names_onnx_node() -> None:
    """An op torch-mlir lowers but rdu-convert-linalg refuses (Bernoulli reads the random
    state, `ml_program.global_load`) is named with the ONNX node it comes from."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 8])
    node = helper.make_node("Bernoulli", ["x"], ["y"], name="coin")
    with pytest.raises(CompileError) as info:
        rdu_compiler.compile_onnx(model_of([node], [x], [y], opset=15))
    message = str(info.value)
    assert "ml_program.global_load" in message and "nearest supported alternative" in message
    assert "ONNX node 'coin' (Bernoulli)" in message


# ---------------------------------------------------------------------------- rdu-compile


def test_cli_onnx_check(tmp_path: Path, exported: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    code, stdout, err = run_cli([str(exported["cnn"]), "--fabric", "tiny", "--check", "-o", str(out)], capsys)
    assert code == 0, err
    report = json.loads((out / "report.json").read_text())
    assert report["check"]["ok"] is True
    assert "ReferenceEvaluator" in report["check"]["reference"]
    assert sorted(p.name for p in out.iterdir()) == [".rdu_output", "model.mlir", "report.json", "weights.safetensors"]


def test_cli_dynamic_shape_error_and_input_shape(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "dyn.onnx"
    onnx.save(_dynamic_model(), str(path))
    code, _, err = run_cli([str(path), "-o", str(tmp_path / "out")], capsys)
    assert code == 2
    one_paragraph(err)
    assert "--input-shape x=1x4" in flat(err)
    assert not (tmp_path / "out").exists()
    code, _, err = run_cli([str(path), "--input-shape", "x=3x4", "--check", "-o", str(tmp_path / "out")], capsys)
    assert code == 0, err
    code, _, err = run_cli([str(path), "--input-shape", "x=3by4", "-o", str(tmp_path / "out2")], capsys)
    assert code == 2
    one_paragraph(err)


def test_cli_input_shape_rejected_for_model_py(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli([str(EXAMPLES / "mlp.py"), "--input-shape", "x=1x64", "-o", str(tmp_path / "o")], capsys)
    assert code == 2
    assert "ONNX models only" in flat(err)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
