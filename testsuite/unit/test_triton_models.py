"""The Triton backend end to end: example models against eager PyTorch, the artifact that
`rdu-compile --target triton` writes, and that it runs with only torch and triton.

On a machine without CUDA every kernel runs on Triton's interpreter; the test marked
`cuda` runs the generated kernels compiled on the GPU when one is present.
"""

from __future__ import annotations

import ast
import functools
import os
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch

from rdu_compiler.runtime.triton.settings import prepare

os.environ.setdefault("RDU_TRITON_AUTOTUNE", "0")  # on a GPU: one config per kernel, fast tests
SETTINGS = prepare()  # before anything imports triton: the interpreter without a GPU
pytest.importorskip("triton")
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # masked lanes in the interpreter

import rdu_compiler  # noqa: E402
from rdu_compiler.frontend.torch.model_file import load_model_file  # noqa: E402
from rdu_compiler.tools.rdu_compile import main  # noqa: E402

os.environ["HF_HUB_OFFLINE"] = "1"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TOLERANCE = 1e-6  # fp32 relative L2 error against eager (measured: ~2e-7)


@functools.cache
def loaded(name: str) -> tuple[torch.nn.Module, tuple[Any, ...], torch.Tensor]:
    model, inputs = load_model_file(str(EXAMPLES / f"{name}.py"))
    with torch.no_grad():
        reference = model(*inputs)
    return model, inputs, reference


@functools.cache
def compiled(name: str, fabric: str, opt_level: int) -> rdu_compiler.CompiledProgram:
    model, inputs, _ = loaded(name)
    return rdu_compiler.compile(model, inputs, fabric=fabric, opt_level=opt_level)


def rel_l2(got: torch.Tensor, want: torch.Tensor) -> float:
    got, want = got.detach().cpu().double(), want.detach().cpu().double()
    return float((got - want).norm() / want.norm())


@pytest.mark.parametrize(
    ("name", "fabric", "opt_level"),
    [("mlp", "sn40l", 1), ("gpt2_2layer", "sn40l", 1), ("llama_2layer", "sn40l", 1), ("gpt2_2layer", "tiny", 0)],
)
def test_model_matches_eager(name: str, fabric: str, opt_level: int) -> None:
    _, inputs, reference = loaded(name)
    program = compiled(name, fabric, opt_level)
    got = program.run(*inputs, target="triton")
    assert got.shape == reference.shape
    assert rel_l2(got, reference) <= TOLERANCE
    src = program.triton_source()
    assert src.fused_kernels < src.rdu_kernels  # fills folded, epilogues and row ops fused


def test_transformer_blocks_fuse_norms_softmax_and_epilogues() -> None:
    src = compiled("gpt2_2layer", "sn40l", 1).triton_source()
    groups = [members for _, members in src.kernels]
    big = [g for g in groups if len(g) >= 4]
    assert len(big) >= 2 * 3 + 1  # per layer: 2 layer norms + softmax; the final norm
    assert sum(1 for g in groups if g[0].endswith("matmul") and len(g) >= 3) >= 4  # bias + residual
    assert not any(m.endswith("transpose") for g in groups for m in g)  # read through the matmul loads


# --------------------------------------------------------------------------- the artifact

BLOCKED = ("rdu_compiler", "xdsl", "torch_mlir", "safetensors", "ml_dtypes", "scipy", "transformers")

STANDALONE = textwrap.dedent(
    """\
    import importlib.abc, importlib.util, sys
    out_dir, site = sys.argv[1], sys.argv[2]
    sys.path.append(site)
    BLOCKED = {blocked!r}

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError("blocked in this test: " + name)
            return None

    sys.meta_path.insert(0, Block())
    import torch
    spec = importlib.util.spec_from_file_location("kernels", out_dir + "/kernels.py")
    kernels = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(kernels)
    weights = kernels.load_weights(out_dir + "/weights.safetensors", "cpu")
    inputs = torch.load(out_dir + "/inputs.pt")
    torch.save(list(kernels.run(weights, *inputs)), out_dir + "/outputs.pt")
    loaded = sorted({{m.split(".")[0] for m in sys.modules}} & BLOCKED)
    assert not loaded, loaded
    print("standalone ok")
    """
).format(blocked=set(BLOCKED))


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("name", ["mlp", "gpt2_2layer"])
def test_cli_writes_kernels_that_run_with_only_torch_and_triton(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    main([str(EXAMPLES / f"{name}.py"), "--target", "triton", "--no-run", "-o", str(out)])
    assert "kernels.py" in capsys.readouterr().out
    assert {"kernels.py", "weights.safetensors", "model.mlir", "report.json"} <= {p.name for p in out.iterdir()}
    assert _imports(out / "kernels.py") <= {"os", "torch", "triton", "json", "struct", "pathlib", "time"}
    _, inputs, reference = loaded(name)
    torch.save(list(inputs), out / "inputs.pt")
    script = tmp_path / "standalone.py"
    script.write_text(STANDALONE)
    site = sysconfig.get_paths()["purelib"]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["TRITON_INTERPRET"] = "1"  # the CPU here; on a GPU machine kernels.py picks CUDA itself
    proc = subprocess.run([sys.executable, "-S", str(script), str(out), site], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (got,) = torch.load(out / "outputs.pt")
    assert rel_l2(got, reference) <= TOLERANCE


def test_cli_check_runs_the_triton_target(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main([str(EXAMPLES / "mlp.py"), "--target", "triton", "--check", "-o", str(tmp_path / "o")])
    text = capsys.readouterr().out
    assert "OK" in text and (tmp_path / "o" / "kernels.py").exists()


# --------------------------------------------------------------------------- a real GPU


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (Triton compiled, not interpreted)")
def test_gpt2_on_the_gpu_matches_eager() -> None:
    model, inputs, _ = loaded("gpt2_2layer")
    program = compiled("gpt2_2layer", "sn40l", 1)
    got = program.run(*[x.cuda() for x in inputs], target="triton")
    assert got.is_cuda
    with torch.no_grad():
        want = model.cuda()(*[x.cuda() for x in inputs])
    model.cpu()
    assert rel_l2(got, want) <= 1e-5


def test_onnx_model_runs_on_triton() -> None:
    np = pytest.importorskip("numpy")
    onnx_file = EXAMPLES / "onnx" / "mlp.onnx"
    if not onnx_file.exists():
        pytest.skip("examples/onnx/mlp.onnx not present")
    program = rdu_compiler.compile_onnx(str(onnx_file))
    xs = [np.random.default_rng(0).standard_normal(s).astype(np.float32) for s in program.imported.input_shapes.values()]
    (want,) = program.run(*xs)
    (got,) = program.run(*xs, target="triton")  # numpy out on both targets
    assert isinstance(got, np.ndarray) and got.dtype == want.dtype
    assert rel_l2(torch.as_tensor(got), torch.as_tensor(want)) <= TOLERANCE


def test_kernels_compile_for_an_h100_without_a_gpu() -> None:
    """The compiled path (not the interpreter): every distinct kernel of a bf16 Llama layer
    (tensor-core tl.dot, row groups, RoPE, gathers) builds for sm_90 with Triton's ptxas."""
    pytest.importorskip("triton.backends.nvidia")
    from rdu_compiler.bench.models import LayerShape, llama_layer
    from rdu_compiler.runtime.triton.aot import compile_kernels

    os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    model, inputs = llama_layer(LayerShape(hidden=64, heads=4, kv_heads=2, mlp=128, seq=16), dtype=torch.bfloat16, device="meta")
    program = rdu_compiler.compile(model, inputs, fabric="sn40l")
    results = compile_kernels(program.triton_source(), arch=90)
    assert len(results) >= 10
    assert not {k: e for k, e in results.items() if e}
