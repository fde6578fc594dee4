"""Tests of the PyTorch frontend: model loading, torch.export -> linalg import, weights files,
and the FrontendError messages for the ways a user's model can fail.

Needs torch, torch-mlir and transformers (HF models are built from configs, offline).
"""

from __future__ import annotations

import json
import os
import re
import textwrap
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

torch = pytest.importorskip("torch")
pytest.importorskip("torch_mlir")

from rdu_compiler.frontend import (  # noqa: E402
    FrontendError,
    ImportedProgram,
    import_torch,
    load_model_file,
    load_weights,
    save_weights,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SMALL_EXAMPLES = ["mlp", "cnn", "gpt2_2layer", "llama_2layer", "bert_2layer"]
HF_EXAMPLES = {"gpt2_2layer", "llama_2layer", "bert_2layer"}

_TENSOR_TYPE_RE = re.compile(r"tensor<([^>]*)>")
_DTYPES = {
    "f32": torch.float32,
    "f16": torch.float16,
    "bf16": torch.bfloat16,
    "f64": torch.float64,
    "i64": torch.int64,
    "i32": torch.int32,
    "i1": torch.bool,
}


def _main_arg_types(mlir_text: str) -> list[tuple[tuple[int, ...], str]]:
    """(shape, element type) of each argument of @main, from its function_type attribute."""
    m = re.search(r"function_type = \((.*?)\) ->", mlir_text)
    assert m, "no function_type in the MLIR text"
    out = []
    for body in _TENSOR_TYPE_RE.findall(m.group(1)):
        *dims, elt = body.split("x")
        out.append((tuple(int(d) for d in dims), elt))
    return out


def _write(tmp_path: Path, name: str, src: str) -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(src))
    return p


_CACHE: dict[str, tuple[torch.nn.Module, tuple, ImportedProgram]] = {}


def _imported(name: str) -> tuple[torch.nn.Module, tuple, ImportedProgram]:
    """Load and import one example once per test session."""
    if name not in _CACHE:
        if name in HF_EXAMPLES:
            pytest.importorskip("transformers")
        model, inputs = load_model_file(EXAMPLES / f"{name}.py")
        _CACHE[name] = (model, inputs, import_torch(model, inputs))
    return _CACHE[name]


# --------------------------------------------------------------------------------------
# Examples import
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SMALL_EXAMPLES)
def test_example_imports_to_linalg(name: str) -> None:
    model, inputs, prog = _imported(name)
    text = prog.mlir_text
    assert "dense_resource" not in text
    assert '"torch.' not in text and "torch.vtensor" not in text and "!torch." not in text
    assert '"func.func"' in text and 'sym_name = "main"' in text
    assert "linalg." in text
    assert not model.training

    # Arguments: names, kinds, weights and MLIR types agree.
    assert len(prog.arg_names) == len(prog.arg_kinds) == len(set(prog.arg_names))
    assert set(prog.arg_kinds) <= {"parameter", "buffer", "constant", "input"}
    types = _main_arg_types(text)
    assert len(types) == len(prog.arg_names)
    assert prog.input_names == [
        n for n, k in zip(prog.arg_names, prog.arg_kinds, strict=True) if k == "input"
    ]
    flat_inputs = torch.utils._pytree.tree_leaves(inputs)
    assert len(prog.input_names) == len(flat_inputs)
    assert set(prog.weights) == {
        n for n, k in zip(prog.arg_names, prog.arg_kinds, strict=True) if k != "input"
    }
    feeds = dict(zip(prog.input_names, flat_inputs, strict=True))
    for name_, kind, (shape, elt) in zip(prog.arg_names, prog.arg_kinds, types, strict=True):
        t = prog.weights[name_] if kind != "input" else feeds[name_]
        assert tuple(t.shape) == shape, name_
        assert t.dtype == _DTYPES[elt], name_
        if kind != "input":
            assert t.is_contiguous() and not t.requires_grad
    assert prog.num_outputs == 1
    assert text.count('"func.return"') == 1


@pytest.mark.parametrize("name", SMALL_EXAMPLES)
def test_graph_module_matches_model(name: str) -> None:
    """The FX graph that was lowered (decompositions + constant folding) is exact."""
    model, inputs, prog = _imported(name)
    feeds = dict(zip(prog.input_names, inputs, strict=True))
    args = [
        prog.weights[n] if k != "input" else feeds[n]
        for n, k in zip(prog.arg_names, prog.arg_kinds, strict=True)
    ]
    with torch.no_grad():
        ref = model(*inputs)
        out = prog.graph_module(*args)
    rebuilt = torch.utils._pytree.tree_unflatten(list(out), prog.out_spec)
    torch.testing.assert_close(rebuilt, ref, rtol=1e-5, atol=1e-5)


def test_llama_non_persistent_buffer_and_folding() -> None:
    _, _, prog = _imported("llama_2layer")
    # inv_freq (non-persistent) fed the RoPE tables; they are folded into constants.
    assert "constant" in prog.arg_kinds
    assert "tm_tensor" not in prog.mlir_text
    assert "f64>" not in prog.mlir_text  # var/RMSNorm stay f32 (no f64 tensors)


def test_raw_import_without_folding_keeps_buffers() -> None:
    """fold_constants=False keeps the non-persistent inv_freq as a 'buffer' argument."""
    pytest.importorskip("transformers")
    model, inputs = load_model_file(EXAMPLES / "llama_2layer.py")
    prog = import_torch(model, inputs, fold_constants=False)
    buffers = [n for n, k in zip(prog.arg_names, prog.arg_kinds, strict=True) if k == "buffer"]
    assert any("inv_freq" in n for n in buffers)
    assert "dense_resource" not in prog.mlir_text


def test_output_structure_round_trips(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "model.py",
        """
        import torch

        class M(torch.nn.Module):
            def forward(self, x, y):
                return {"sum": x + y, "pair": (x * y, x - y)}

        model = M()
        example_inputs = (torch.randn(2, 3), torch.randn(2, 3))
        """,
    )
    model, inputs = load_model_file(path)
    prog = import_torch(model, inputs)
    assert prog.num_outputs == 3
    assert prog.input_names == ["x", "y"]
    out = torch.utils._pytree.tree_unflatten(list(prog.graph_module(*inputs)), prog.out_spec)
    assert set(out) == {"sum", "pair"} and len(out["pair"]) == 2


def test_get_model_form(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "model.py",
        """
        import torch

        def get_model():
            return torch.nn.Linear(4, 2).eval(), (torch.randn(3, 4),)
        """,
    )
    model, inputs = load_model_file(path)
    assert isinstance(model, torch.nn.Linear) and inputs[0].shape == (3, 4)


# --------------------------------------------------------------------------------------
# Weights files
# --------------------------------------------------------------------------------------


def test_save_load_weights_tied_gpt2(tmp_path: Path) -> None:
    _, _, prog = _imported("gpt2_2layer")
    wte = next(n for n in prog.arg_names if n.endswith("wte_weight"))
    head = next(n for n in prog.arg_names if n.endswith("lm_head_weight"))
    assert prog.weights[wte].data_ptr() == prog.weights[head].data_ptr()  # tied

    path = tmp_path / "weights.safetensors"
    save_weights(path, prog)
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        stored = set(f.keys())
        aliases = json.loads(f.metadata()["rdu_aliases"])
    assert len(stored) == len(prog.weights) - 1  # the tied matrix is stored once
    assert aliases == {head: wte}
    vocab, hidden = prog.weights[wte].shape
    assert path.stat().st_size < sum(t.nbytes for t in prog.weights.values()) - vocab * hidden * 2

    loaded = load_weights(path)
    assert set(loaded) == set(prog.weights)
    for name, t in prog.weights.items():
        assert isinstance(loaded[name], np.ndarray)
        assert loaded[name].dtype == t.numpy().dtype
        np.testing.assert_array_equal(loaded[name], t.numpy())
    assert loaded[head] is loaded[wte]


def test_save_load_weights_bfloat16(tmp_path: Path) -> None:
    ml_dtypes = pytest.importorskip("ml_dtypes")
    model = torch.nn.Linear(4, 3).to(torch.bfloat16).eval()
    prog = import_torch(model, (torch.randn(2, 4, dtype=torch.bfloat16),))
    path = tmp_path / "w.safetensors"
    save_weights(path, prog)
    loaded = load_weights(path)
    for name, t in prog.weights.items():
        assert loaded[name].dtype == ml_dtypes.bfloat16
        np.testing.assert_array_equal(loaded[name].astype(np.float32), t.float().numpy())


def test_load_weights_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FrontendError, match="does not exist"):
        load_weights(tmp_path / "nope.safetensors")


# --------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------


def _assert_one_paragraph(msg: str) -> None:
    assert "Traceback" not in msg
    assert "\n" not in msg.strip()
    assert len(msg) < 1200


def test_missing_model_file(tmp_path: Path) -> None:
    with pytest.raises(FrontendError, match="does not exist") as ei:
        load_model_file(tmp_path / "model.py")
    _assert_one_paragraph(str(ei.value))


def test_model_file_without_model(tmp_path: Path) -> None:
    path = _write(tmp_path, "model.py", "import torch\nx = torch.randn(3)\n")
    with pytest.raises(FrontendError, match="get_model") as ei:
        load_model_file(path)
    _assert_one_paragraph(str(ei.value))


def test_model_file_without_example_inputs(tmp_path: Path) -> None:
    path = _write(tmp_path, "model.py", "import torch\nmodel = torch.nn.Linear(3, 3)\n")
    with pytest.raises(FrontendError, match="example_inputs"):
        load_model_file(path)


def test_model_file_syntax_error(tmp_path: Path) -> None:
    path = _write(tmp_path, "model.py", "import torch\ndef f(:\n    pass\n")
    with pytest.raises(FrontendError, match=r"syntax error at model\.py:2") as ei:
        load_model_file(path)
    _assert_one_paragraph(str(ei.value))


def test_model_file_import_error(tmp_path: Path) -> None:
    path = _write(tmp_path, "model.py", "import torch\nimport no_such_package_rdu\n")
    with pytest.raises(FrontendError, match=r"model\.py:2.*no_such_package_rdu") as ei:
        load_model_file(path)
    _assert_one_paragraph(str(ei.value))


def test_example_inputs_not_a_tuple(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "model.py",
        "import torch\nmodel = torch.nn.Linear(3, 3)\nexample_inputs = torch.randn(2, 3)\n",
    )
    with pytest.raises(FrontendError, match="not a tuple"):
        load_model_file(path)


def test_model_not_a_module(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "model.py",
        "import torch\nmodel = lambda x: x\nexample_inputs = (torch.randn(2),)\n",
    )
    with pytest.raises(FrontendError, match="not a torch.nn.Module"):
        load_model_file(path)


def test_non_tensor_example_input() -> None:
    class M(torch.nn.Module):
        def forward(self, x: torch.Tensor, k: int) -> torch.Tensor:
            return x * k

    with pytest.raises(FrontendError, match="only tensor inputs"):
        import_torch(M(), (torch.randn(2), 3))


def test_export_failure_data_dependent_control_flow(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    path = _write(
        tmp_path,
        "model.py",
        """
        import torch

        class Branchy(torch.nn.Module):
            def forward(self, x):
                if x.sum() > 0:
                    return x * 2
                return x - 1

        model = Branchy()
        example_inputs = (torch.randn(4, 4),)
        """,
    )
    model, inputs = load_model_file(path)
    with pytest.raises(FrontendError) as ei:
        import_torch(model, inputs)
    msg = str(ei.value)
    _assert_one_paragraph(msg)
    assert "model.py:6" in msg and "if x.sum() > 0:" in msg
    assert "data-dependent" in msg or "depends on tensor values" in msg
    assert "torch.where" in msg
    assert "def forward" not in capfd.readouterr().err  # torch's graph dump is silenced


def test_training_mode_batchnorm_is_reported() -> None:
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    with pytest.raises(FrontendError, match=r"model\.eval\(\)"):
        import_torch(model, (torch.randn(2, 3, 8, 8),))


@pytest.mark.parametrize(
    ("expr", "op"),
    [
        # Lowering to linalg fails: torch-mlir has torch.aten.erfinv but no linalg pattern.
        ("torch.erfinv(x)", "aten.erfinv"),
        # Import-to-backend fails: torch-mlir has no op definition (opaque torch.operator).
        ("torch.lgamma(x)", "aten.lgamma"),
    ],
)
def test_unsupported_op_names_op_and_source_line(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], expr: str, op: str
) -> None:
    path = _write(
        tmp_path,
        "model.py",
        f"""
        import torch

        class Special(torch.nn.Module):
            def forward(self, x):
                y = x * 0.5
                z = {expr}
                return z + y

        model = Special().eval()
        example_inputs = (torch.rand(4, 4),)
        """,
    )
    model, inputs = load_model_file(path)
    with pytest.raises(FrontendError) as ei:
        import_torch(model, inputs)
    msg = str(ei.value)
    _assert_one_paragraph(msg)
    assert f"'{op}'" in msg
    assert "model.py:7" in msg and expr in msg
    assert "error:" not in capfd.readouterr().err  # MLIR diagnostics are not printed


def test_side_effecting_op_is_reported() -> None:
    class Inv(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.linalg.inv(x)

    with pytest.raises(FrontendError, match="side effects"):
        import_torch(Inv(), (torch.eye(4) + torch.rand(4, 4) * 0.1,))


def test_frontend_package_does_not_import_torch_mlir_eagerly() -> None:
    import subprocess
    import sys

    code = (
        "import sys, rdu_compiler.frontend as f; "
        "assert 'torch_mlir' not in sys.modules; f.FrontendError; "
        "assert 'torch_mlir' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("correction", [0, 1])
@pytest.mark.parametrize("keepdim", [False, True])
@pytest.mark.parametrize("dim", [None, 1, (0, 2)])
def test_float32_var_mean_decomposition(correction: int, keepdim: bool, dim: object) -> None:
    """The frontend's var_mean decomposition (kept in f32) matches torch.var_mean."""
    from rdu_compiler.frontend.torch.decompositions import _var_mean_same_dtype

    x = torch.randn(3, 5, 7)
    var, mean = _var_mean_same_dtype(x, dim, correction=correction, keepdim=keepdim)
    ref_var, ref_mean = torch.var_mean(x, dim=dim, correction=correction, keepdim=keepdim)
    assert var.dtype == torch.float32
    torch.testing.assert_close(var, ref_var)
    torch.testing.assert_close(mean, ref_mean)
