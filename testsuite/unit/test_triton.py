"""The Triton backend, kernel kind by kernel kind, on small shapes.

Without a GPU every kernel runs on Triton's interpreter (numpy on the CPU); `prepare()`
sets `TRITON_INTERPRET=1` before Triton is imported. Small PyTorch modules go through
the whole pipeline (for the `tiny` fabric, so kernels are tiled and sectioned) and run
with `target="triton"`, compared with eager PyTorch; hand-written linalg modules check
payload semantics against the emulator (integer division, NaN predicates, scans) and
that an op the generator cannot express fails at generation time, naming the op. The
structure of the generated program is checked too: softmax / layer norm / RMS norm are
one kernel each, a matmul takes its bias, activation and residual as an epilogue, and
transposes feeding a matmul are folded into its loads.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from torch import nn

from rdu_compiler.runtime.triton.settings import prepare

os.environ.setdefault("RDU_TRITON_AUTOTUNE", "0")  # on a GPU: one config per kernel, fast tests
SETTINGS = prepare()  # before anything imports triton: the interpreter without a GPU
pytest.importorskip("triton")
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # masked lanes in the interpreter

import rdu_compiler  # noqa: E402
from rdu_compiler.errors import CompileError  # noqa: E402
from rdu_compiler.fabric import load_fabric  # noqa: E402
from rdu_compiler.ir import parse_module  # noqa: E402
from rdu_compiler.pipeline import pipeline, run_pipeline  # noqa: E402
from rdu_compiler.runtime.emulator import Emulator  # noqa: E402
from rdu_compiler.runtime.triton import TritonSettings, generate  # noqa: E402
from rdu_compiler.runtime.triton.runner import TritonRunner  # noqa: E402


def rel_l2(got: torch.Tensor, want: torch.Tensor) -> float:
    got, want = got.detach().cpu().double(), want.detach().cpu().double()
    return float((got - want).norm() / max(float(want.norm()), 1e-30))


def check_module(module: nn.Module, *inputs: torch.Tensor, fabric: str = "tiny", tol: float = 1e-6) -> rdu_compiler.CompiledProgram:
    """Compile, run on Triton, compare with eager; returns the program (for structure checks)."""
    program = rdu_compiler.compile(module, inputs, fabric=fabric, opt_level=1)
    got = program.run(*inputs, target="triton")
    with torch.no_grad():
        want = module(*inputs)
    got_flat, _ = torch.utils._pytree.tree_flatten(got)
    want_flat, _ = torch.utils._pytree.tree_flatten(want)
    for g, w in zip(got_flat, want_flat, strict=True):
        assert g.shape == w.shape and g.dtype == w.dtype
        if w.dtype.is_floating_point:
            assert rel_l2(g, w) <= tol
        else:
            assert torch.equal(g.cpu(), w)
    return program


def groups(program: rdu_compiler.CompiledProgram) -> list[list[str]]:
    """The rdu kernels each Triton kernel runs."""
    return [members for _, members in program.triton_source().kernels]


def labels(members: list[str]) -> list[str]:
    return [m.split("_", 1)[1] for m in members]


def source(program: rdu_compiler.CompiledProgram) -> str:
    return str(program.triton_source().text)


# --------------------------------------------------------------------------- elementwise


class Elementwise(nn.Module):
    def forward(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        h = x * w + b  # broadcasts over the last dim and the middle dim
        h = nn.functional.gelu(h, approximate="none") + torch.sigmoid(h) * torch.exp(-h * h)
        return torch.where(h > 0.1, nn.functional.silu(h), torch.tanh(h) - 1.0)


def test_elementwise_chain_with_broadcasts_is_one_kernel() -> None:
    x, w, b = torch.randn(3, 5, 24), torch.randn(24), torch.randn(5, 1)
    program = check_module(Elementwise(), x, w, b)
    assert len(groups(program)) == 1


class CausalMask(nn.Module):
    """Index arithmetic in the payload: the mask comes from torch.arange, compared."""

    def forward(self, scores: torch.Tensor) -> torch.Tensor:
        n = scores.shape[-1]
        row = torch.arange(n).unsqueeze(1)
        col = torch.arange(n).unsqueeze(0)
        return scores.masked_fill(col > row, -1e9) * 0.5


def test_index_ops_build_a_causal_mask() -> None:
    check_module(CausalMask(), torch.randn(2, 7, 7))


# --------------------------------------------------------------------------- row reductions


class RMSNorm(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6))


@pytest.mark.parametrize(
    ("name", "module", "shape"),
    [
        ("softmax", nn.Softmax(dim=-1), (6, 10)),  # rows of 10: masked to a block of 16
        ("layer_norm", nn.LayerNorm(24), (2, 5, 24)),
        ("rms_norm", RMSNorm(20), (7, 20)),
    ],
)
def test_row_reduction_with_its_epilogue_is_one_kernel(name: str, module: nn.Module, shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    program = check_module(module.eval(), torch.randn(*shape) * 3)
    kernels = groups(program)
    assert len(kernels) == 1, kernels
    assert any(k.endswith(("reduce", "matmul")) for k in kernels[0])
    assert "tl.reduce(" in source(program)


def test_softmax_keeps_nan_and_inf_semantics() -> None:
    x = torch.randn(4, 9)
    x[1, 3] = float("-inf")
    x[2, :] = float("-inf")  # a fully masked row: NaN in eager too
    x[3, 2] = float("nan")
    program = rdu_compiler.compile(nn.Softmax(dim=-1), (x,), fabric="tiny")
    got = program.run(x, target="triton")
    want = torch.softmax(x, -1)
    assert torch.equal(torch.isnan(got), torch.isnan(want))
    ok = ~torch.isnan(want)
    assert torch.allclose(got[ok], want[ok], rtol=1e-6, atol=1e-7)


# --------------------------------------------------------------------------- matmuls


class LinearEpilogue(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(24, 20)

    def forward(self, x: torch.Tensor, res: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.fc(x)) * 0.5 + res


def test_matmul_takes_bias_activation_and_residual_as_epilogue() -> None:
    torch.manual_seed(0)
    program = check_module(LinearEpilogue(), torch.randn(10, 24), torch.randn(10, 20))
    kernels = groups(program)
    assert len(kernels) == 1 and labels(kernels[0])[0] == "matmul" and len(kernels[0]) >= 2, kernels
    assert "tl.dot(" in source(program) and 'input_precision="ieee"' in source(program)


class BatchedTransposed(nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.bmm(a, b.transpose(1, 2)) / 3.0


def test_batched_matmul_reads_the_transpose_through_its_loads() -> None:
    a, b = torch.randn(3, 10, 12), torch.randn(3, 9, 12)
    program = check_module(BatchedTransposed(), a, b)
    kernels = groups(program)
    assert len(kernels) == 1 and not any("transpose" in k for k in kernels[0]), kernels
    assert "tl.program_id(1)" in source(program)  # the batch


class Attention(nn.Module):
    """Scores, scale, causal mask, softmax, weighted sum: the attention of the models."""

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        s = q @ k.transpose(-1, -2) * 0.25
        n = s.shape[-1]
        s = s.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(1), float("-inf"))
        return torch.softmax(s, -1) @ v


def test_attention_is_three_kernels() -> None:
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 2, 12, 16) for _ in range(3))
    program = check_module(Attention(), q, k, v)
    kinds = [labels(g) for g in groups(program) if any(x.endswith(("matmul", "reduce")) for x in labels(g))]
    assert len(kinds) == 3, groups(program)  # QK^T + scale + mask, softmax, PV


# --------------------------------------------------------------------------- gathers, scans, loops


class Embed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.tok = nn.Embedding(50, 8)
        self.pos = nn.Embedding(6, 8)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.tok(ids) + self.pos(torch.arange(ids.shape[1]))


def test_gather_loads_at_computed_offsets() -> None:
    torch.manual_seed(0)
    ids = torch.tensor([[3, 49, 0, 7, 7, 12], [1, 2, 3, 4, 5, 6]])
    program = check_module(Embed(), ids)
    text = source(program)  # the bounds check of the gather: a flag the launcher raises
    assert "tl.store(chk + " in text and "_raise_failed_checks([" in text


class CumSum(nn.Module):
    def forward(self, x: torch.Tensor, m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.cumsum(x, dim=1), torch.cumsum(m, dim=-1)


def test_cumsum_scans_floats_and_ints() -> None:
    check_module(CumSum(), torch.randn(3, 13), torch.randint(-5, 5, (2, 9)))


class ColumnSum(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.sum(0) + x.amax(0)  # reduced dim is not the innermost one


def test_reduction_over_an_outer_dim_loops() -> None:
    program = check_module(ColumnSum(), torch.randn(37, 6))
    assert "for q0 in range(" in source(program)


def test_rows_wider_than_max_row_loop_instead() -> None:
    torch.manual_seed(0)
    x = torch.randn(3, 40)
    program = rdu_compiler.compile(nn.Softmax(dim=-1), (x,), fabric="tiny")
    narrow = TritonSettings(interpret=True, autotune=False, max_row=16)
    src = generate(program.module, program.imported.arg_names, program.imported.input_names, settings=narrow)
    assert "for q0 in range(" in src.text and len(src.kernels) > 1
    runner = TritonRunner(src, program.imported.weights)
    (got,) = runner.run(x)
    assert rel_l2(got, torch.softmax(x, -1)) <= 1e-6


# --------------------------------------------------------------------------- payload semantics vs the emulator

TINY = load_fabric("tiny")


def triton_vs_emulator(text: str, *args: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
    module = parse_module(text)
    run_pipeline(module, pipeline("tiny", 1))
    want, _ = Emulator(module, TINY).run(list(args))
    src = generate(module)
    got = TritonRunner(src, {}).run(*[torch.from_numpy(a) for a in args])
    return [g.cpu().numpy() for g in got], want


def elementwise(op_lines: str, in_types: list[str], out_type: str, n: int) -> str:
    args = ", ".join(f"%a{i}: tensor<{n}x{t}>" for i, t in enumerate(in_types))
    ins = ", ".join(f"%a{i}" for i in range(len(in_types)))
    in_tensors = ", ".join(f"tensor<{n}x{t}>" for t in in_types)
    block_args = ", ".join(f"%x{i}: {t}" for i, t in enumerate(in_types))
    maps = ", ".join(["affine_map<(d0) -> (d0)>"] * (len(in_types) + 1))
    return f"""
func.func @main({args}) -> tensor<{n}x{out_type}> {{
  %e = tensor.empty() : tensor<{n}x{out_type}>
  %r = linalg.generic {{indexing_maps = [{maps}], iterator_types = ["parallel"]}} ins({ins} : {in_tensors}) outs(%e : tensor<{n}x{out_type}>) {{
  ^bb0({block_args}, %o: {out_type}):
    {op_lines}
    linalg.yield %q : {out_type}
  }} -> tensor<{n}x{out_type}>
  return %r : tensor<{n}x{out_type}>
}}
"""


A_INT = np.array([7, -7, 7, -7, 0, 9, -9, 1], dtype=np.int32)
B_INT = np.array([2, 2, -2, -2, 3, 4, 4, -5], dtype=np.int32)


@pytest.mark.parametrize("op", ["divsi", "remsi", "floordivsi", "ceildivsi", "maxsi", "shrsi", "divui", "remui"])
def test_integer_ops_match_the_emulator(op: str) -> None:
    b = np.abs(B_INT) if op in ("shrsi",) else B_INT
    (got,), (want,) = triton_vs_emulator(elementwise(f"%q = arith.{op} %x0, %x1 : i32", ["i32", "i32"], "i32", 8), A_INT, b)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("pred", ["oeq", "one", "ueq", "une", "olt", "ult", "ord", "uno", "oge", "uge"])
def test_float_predicates_with_nan_match_the_emulator(pred: str) -> None:
    a = np.array([1.0, np.nan, 2.0, np.nan, -0.0, 3.0], dtype=np.float32)
    b = np.array([1.0, 1.0, np.nan, np.nan, 0.0, -3.0], dtype=np.float32)
    text = elementwise(f"%c = arith.cmpf {pred}, %x0, %x1 : f32\n    %q = arith.extui %c : i1 to i32", ["f32", "f32"], "i32", 6)
    (got,), (want,) = triton_vs_emulator(text, a, b)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(
    ("op", "lo", "hi"),
    [("math.tanh", -6, 6), ("math.expm1", -2, 2), ("math.log1p", -0.5, 2), ("math.erf", -3, 3),
     ("math.roundeven", -4, 4), ("math.trunc", -4, 4), ("math.sinh", -3, 3)],
)
def test_math_functions_match_the_emulator(op: str, lo: float, hi: float) -> None:
    x = np.linspace(lo, hi, 41, dtype=np.float32)
    x[20] = 0.0
    (got,), (want,) = triton_vs_emulator(elementwise(f"%q = {op} %x0 : f32", ["f32"], "f32", 41), x)
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-7)


def test_powf_follows_c_semantics() -> None:
    a = np.array([2.0, -2.0, -2.0, 0.0, 4.0, 1.0, -8.0], dtype=np.float32)
    b = np.array([0.5, 3.0, 0.5, -1.0, 0.0, np.nan, 2.0], dtype=np.float32)
    (got,), (want,) = triton_vs_emulator(elementwise("%q = math.powf %x0, %x1 : f32", ["f32", "f32"], "f32", 7), a, b)
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_an_op_without_a_triton_rule_fails_at_generation_naming_it() -> None:
    module = parse_module(elementwise("%q = math.atan %x0 : f32", ["f32"], "f32", 8))
    run_pipeline(module, pipeline("tiny", 1))
    Emulator(module, TINY).run([np.zeros(8, np.float32)])  # the emulator has a rule
    with pytest.raises(CompileError, match="math.atan"):
        generate(module)


def test_bf16_layer_matches_eager_to_bf16_precision() -> None:
    from rdu_compiler.bench.models import LayerShape, llama_layer

    shape = LayerShape(hidden=32, heads=2, kv_heads=1, mlp=64, seq=8)
    model, inputs = llama_layer(shape, dtype=torch.bfloat16, device="cpu")
    program = rdu_compiler.compile(model, inputs, fabric="sn40l")
    got = program.run(*inputs, target="triton")
    with torch.no_grad():
        want = model(*inputs)
    assert got.dtype == torch.bfloat16
    assert rel_l2(got, want) <= 2e-2  # a few bf16 ulps (eps 7.8e-3) from summation order
