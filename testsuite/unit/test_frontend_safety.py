"""Bad inputs to the frontends end in one clear error, never a crash, a hang or a
silent run-time refusal (issue 10, "whatever compiles runs").

- a native crash of torch-mlir (``scatter_add`` with a negative ``dim`` segfaults it) runs
  in the lowering child: the user's process survives and the error names the op and line;
  and the scatter family with a negative ``dim`` now gets ``dim + rank`` and runs;
- data-dependent shapes (``x[x > 0]``) are refused before lowering (torch-mlir's lowering
  of them grows until the machine runs out of memory);
- a splat constant is never expanded (a 10**12-element ``dense<0.0>`` parses in bytes),
  and a tensor over ``MAX_TENSOR_ELEMENTS`` is refused by name;
- ``nn.EmbeddingBag`` (sum / mean / max, offsets, ``per_sample_weights``,
  ``include_last_offset``, ``padding_idx``) runs on the emulator equal to eager;
- a ``dense_resource`` int64 constant is read; kernels the emulator cannot run are refused
  at compile time, with the model line.

The expected values come from PyTorch eager (torch 2.13) and from numpy.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from rdu_compiler import api
from rdu_compiler.errors import CompileError, RduError
from rdu_compiler.fabric import load_fabric
from rdu_compiler.frontend.errors import FrontendError
from rdu_compiler.frontend.torch.export import import_torch
from rdu_compiler.ir import parse_module
from rdu_compiler.pipeline import pipeline, run_pipeline
from rdu_compiler.runtime.emulator import Emulator

os.environ["HF_HUB_OFFLINE"] = "1"
TINY = load_fabric("tiny")


def compile_text(text: str) -> object:
    module = parse_module(text)
    run_pipeline(module, pipeline("tiny", 1))
    return module


# ------------------------------------------------------------------ native crash


SCATTER_MODEL = textwrap.dedent(
    """\
    import torch


    class M(torch.nn.Module):
        def forward(self, x, idx):
            y = torch.zeros(4, 3).scatter_add(0, idx, x)
            return y.scatter_add(-2, idx, torch.relu(x))


    model = M()
    example_inputs = (torch.randn(2, 3), torch.tensor([[0, 1, 1], [1, 0, 1]]))
    """
)


#: rdu-compile with the frontend's negative-dim decomposition of the scatter family off,
#: so that torch-mlir meets the op that segfaults it.
CRASHING_CLI = (
    "import sys, rdu_compiler.frontend.torch.decompositions as td; td.positive_dim_decompositions = dict; "
    "from rdu_compiler.tools.rdu_compile import main; main(sys.argv[1:])"
)


def test_torch_mlir_crash_is_an_error_naming_the_op_and_line(tmp_path: Path) -> None:
    """torch-mlir segfaults on scatter_add with dim=-2; rdu-compile exits 2 with one
    paragraph naming the op and the model line of that call, not of the first scatter_add
    (it used to die of SIGSEGV silently)."""
    model = tmp_path / "model.py"
    model.write_text(SCATTER_MODEL)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    env.pop("RDU_LOWER_IN_PROCESS", None)
    env.pop("RDU_ONNX_IN_PROCESS", None)
    proc = subprocess.run(
        [sys.executable, "-c", CRASHING_CLI, str(model), "--no-run", "-o", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=600, env=env,
    )
    text = " ".join((proc.stdout + proc.stderr).split())
    assert proc.returncode == 2, (proc.returncode, text[-2000:])
    assert "Traceback" not in text
    assert "crashed (signal SIGSEGV) on op 'aten.scatter_add'" in text
    assert "model.py:7" in text and "scatter_add(-2, idx, torch.relu(x))" in text  # the op's own line


class NegativeDimScatters(torch.nn.Module):
    def forward(self, x: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, ...]:
        z = torch.zeros(4, 3)
        return (
            z.scatter_add(-2, idx, torch.relu(x)),
            z.scatter(-1, idx.clamp(max=2), x),
            z.scatter_reduce(-2, idx, x, "amax", include_self=False),
        )


def test_scatter_with_negative_dim_runs_equal_to_eager() -> None:
    """The scatter family with dim < 0 crashed torch-mlir; the frontend passes dim + rank."""
    torch.manual_seed(0)
    ins = (torch.randn(2, 3), torch.tensor([[0, 1, 3], [1, 0, 3]]))
    model = NegativeDimScatters()
    got = api.compile(model, ins, "tiny").run(*ins)
    for g, w in zip(got, model(*ins), strict=True):
        torch.testing.assert_close(g, w)


# ------------------------------------------------------------ data-dependent shapes


class MaskedSum(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[x > 0].sum()  # the line named in the error


def test_data_dependent_shape_is_refused_before_lowering(monkeypatch: pytest.MonkeyPatch) -> None:
    """`x[x > 0].sum()` used to grow in torch-mlir until killed (219 s); a short lowering
    timeout makes an unfixed frontend fail this test instead of hanging it."""
    monkeypatch.setenv("RDU_LOWERING_TIMEOUT", "60")
    with pytest.raises(FrontendError, match=r"depends on tensor values: op 'aten.index'") as info:
        import_torch(MaskedSum(), (torch.randn(8),))
    assert "test_frontend_safety.py:" in str(info.value) and "x[x > 0].sum()" in str(info.value)


# ------------------------------------------------------------------------ splats


HUGE_SPLAT = """
func.func @main(%arg0: tensor<1000000x1000000xf32>) -> tensor<1000000x1000000xf32> {
  %cst = arith.constant dense<0.0> : tensor<1000000x1000000xf32>
  return %cst : tensor<1000000x1000000xf32>
}
"""


def test_splat_is_never_materialised() -> None:
    module = parse_module(HUGE_SPLAT)  # used to be a MemoryError inside xDSL
    (cst,) = [op for op in module.walk() if op.name == "arith.constant"]
    assert len(cst.value.data.data) == 4  # one f32
    assert "dense<0.000000e+00> : tensor<1000000x1000000xf32>" in str(module)


def test_tensor_over_the_element_bound_is_refused_by_name() -> None:
    with pytest.raises(CompileError, match=r"1,000,000,000,000 elements .* more than the 4,294,967,296"):
        compile_text(HUGE_SPLAT)


def test_large_splat_still_computes() -> None:
    """A splat over SPLAT_EXPAND_LIMIT elements (kept as one element) computes as a splat."""
    text = """
    #map = affine_map<(d0, d1) -> (d0, d1)>
    func.func @main(%x: tensor<256x320xf32>) -> tensor<256x320xf32> {
      %c = arith.constant dense<2.5> : tensor<256x320xf32>
      %e = tensor.empty() : tensor<256x320xf32>
      %r = linalg.generic {indexing_maps = [#map, #map, #map], iterator_types = ["parallel", "parallel"]}
          ins(%x, %c : tensor<256x320xf32>, tensor<256x320xf32>) outs(%e : tensor<256x320xf32>) {
      ^bb0(%a: f32, %b: f32, %o: f32):
        %s = arith.mulf %a, %b : f32
        linalg.yield %s : f32
      } -> tensor<256x320xf32>
      return %r : tensor<256x320xf32>
    }
    """
    x = np.random.default_rng(0).standard_normal((256, 320), dtype=np.float32)
    (out,), _ = Emulator(compile_text(text), TINY).run([x])
    np.testing.assert_array_equal(out, x * np.float32(2.5))


def test_onnx_constant_of_shape_of_10_12_elements_is_refused() -> None:
    """A ~125-byte ONNX file asking for a 10**12-element constant: an RduError naming the
    size, not a MemoryError traceback."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    shape = numpy_helper.from_array(np.array([1000000, 1000000], np.int64), "shape")
    node = helper.make_node(
        "ConstantOfShape", ["shape"], ["c"], value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.0])
    )
    graph = helper.make_graph(
        [node], "g", [], [helper.make_tensor_value_info("c", TensorProto.FLOAT, [1000000, 1000000])], [shape]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    assert len(model.SerializeToString()) < 200
    with pytest.raises(RduError, match=r"1,000,000,000,000 elements"):
        api.compile_onnx(model, "tiny")
    del onnx


# ------------------------------------------------------------------- EmbeddingBag


class Bag(torch.nn.Module):
    def __init__(self, mode: str, include_last_offset: bool = False, padding_idx: int | None = None):
        super().__init__()
        torch.manual_seed(0)
        self.bag = torch.nn.EmbeddingBag(
            12, 8, mode=mode, include_last_offset=include_last_offset, padding_idx=padding_idx
        )

    def forward(self, ids: torch.Tensor, offsets: torch.Tensor, *psw: torch.Tensor) -> torch.Tensor:
        return self.bag(ids, offsets, per_sample_weights=psw[0] if psw else None)


IDS = torch.tensor([1, 2, 4, 5, 4, 3, 2, 9, 0, 11])


@pytest.mark.parametrize(
    ("mode", "offsets", "last", "pad", "weighted"),
    [
        ("sum", [0, 4, 4, 7], False, None, False),  # an empty bag
        ("mean", [0, 4, 4, 7], False, None, False),
        ("max", [0, 4, 4, 7], False, None, False),
        ("sum", [0, 3, 8], False, None, True),  # per_sample_weights
        ("mean", [0, 3, 8, 10], True, 4, False),  # include_last_offset, padding_idx
        ("max", [0, 3, 8], False, 2, False),
    ],
)
def test_embedding_bag_runs_equal_to_eager(mode: str, offsets: list[int], last: bool, pad: int | None, weighted: bool) -> None:
    """It used to compile and then be refused by the emulator (a masked reduction), and
    torch-mlir dropped per_sample_weights without a word."""
    model = Bag(mode, last, pad).eval()
    ins: tuple[torch.Tensor, ...] = (IDS, torch.tensor(offsets))
    if weighted:
        ins = (*ins, torch.rand(len(IDS)))
    prog = api.compile(model, ins, "tiny")
    got = prog.run(*ins)
    want = model(*ins)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_embedding_bag_internal_results_are_refused() -> None:
    class Sizes(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.randn(12, 4))

        def forward(self, ids: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
            return torch.ops.aten._embedding_bag(self.w, ids, offsets, False, 1)[2]

    with pytest.raises(FrontendError, match=r"reads result #2 of op 'aten._embedding_bag'"):
        import_torch(Sizes(), (IDS, torch.tensor([0, 4])))


def test_unrunnable_kernel_is_refused_at_compile_time_with_model_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch-mlir's own embedding_bag lowering (without our decomposition) is a masked
    reduction the emulator cannot run: refused by rdu-convert-linalg, naming the line."""
    import rdu_compiler.frontend.torch.decompositions as td

    monkeypatch.setattr(td, "embedding_bag_decompositions", dict)
    model = Bag("sum").eval()
    with pytest.raises(CompileError, match=r"kernel 'k\d+_\w+'.*refused at compile time.*test_frontend_safety.py:\d+") as info:
        api.compile(model, (IDS, torch.tensor([0, 4])), "tiny")
    assert "self.bag(ids, offsets" in str(info.value)


MASKED_SUM = """
#m0 = affine_map<(d0) -> (d0)>
#m1 = affine_map<(d0) -> ()>
func.func @main(%x: tensor<8xf32>, %m: tensor<8xi1>) -> tensor<f32> {
  %z = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<f32>
  %f = linalg.fill ins(%z : f32) outs(%e : tensor<f32>) -> tensor<f32>
  %r = linalg.generic {indexing_maps = [#m0, #m0, #m1], iterator_types = ["reduction"]}
      ins(%x, %m : tensor<8xf32>, tensor<8xi1>) outs(%f : tensor<f32>) {
  ^bb0(%a: f32, %b: i1, %acc: f32):
    %s = arith.addf %acc, %a : f32
    %t = arith.select %b, %s, %acc : f32
    linalg.yield %t : f32
  } -> tensor<f32>
  return %r : tensor<f32>
}
"""


def test_masked_reduction_is_refused_at_compile_time() -> None:
    with pytest.raises(CompileError, match=r"kernel 'k\d+_reduce': reduction result 0 .*refused at compile time"):
        compile_text(MASKED_SUM)


# ------------------------------------------------------------- dense_resource


RESOURCE_I64 = """
#map = affine_map<(d0) -> (d0)>
module {
  func.func @main(%arg0: tensor<4xi64>) -> tensor<4xi64> {
    %c = arith.constant dense_resource<torch_tensor_4_torch.int64> : tensor<4xi64>
    %e = tensor.empty() : tensor<4xi64>
    %r = linalg.generic {indexing_maps = [#map, #map, #map], iterator_types = ["parallel"]}
        ins(%arg0, %c : tensor<4xi64>, tensor<4xi64>) outs(%e : tensor<4xi64>) {
    ^bb0(%a: i64, %b: i64, %o: i64):
      %s = arith.addi %a, %b : i64
      linalg.yield %s : i64
    } -> tensor<4xi64>
    return %r : tensor<4xi64>
  }
}

{-#
  dialect_resources: {
    builtin: {
      torch_tensor_4_torch.int64: "0x08000000010000000000000002000000000000000300000000000000FFFFFFFFFFFFFFFF"
    }
  }
#-}
"""


def test_dense_resource_int64_constant_is_read() -> None:
    """Used to compile and then be refused by the emulator ('constant dense_resource<...>
    is not supported')."""
    (out,), _ = Emulator(compile_text(RESOURCE_I64), TINY).run([np.arange(4, dtype=np.int64)])
    np.testing.assert_array_equal(out, np.array([1, 3, 5, 2]))


def test_elided_dense_resource_is_refused_at_compile_time() -> None:
    text = RESOURCE_I64.split("{-#")[0].replace("torch_tensor_4_torch.int64", "__elided__")
    with pytest.raises(CompileError, match=r"resource blob whose data the input does not hold"):
        compile_text(text)


# ------------------------------------------------------------- dropped operands


def test_operand_dropped_by_torch_mlir_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch-mlir's own embedding_bag lowering ignores per_sample_weights; with our
    decomposition off, the lowered program never reads that argument: an error."""
    import rdu_compiler.frontend.torch.decompositions as td

    monkeypatch.setattr(td, "embedding_bag_decompositions", dict)
    ins = (IDS, torch.tensor([0, 4]), torch.rand(len(IDS)))
    with pytest.raises(FrontendError, match=r"dropped operand 'psw\w*' of op 'aten._embedding_bag'.*self.bag\(ids"):
        import_torch(Bag("sum").eval(), ins)


def test_argument_read_only_for_its_shape_is_not_a_dropped_operand() -> None:
    class ShapeOnly(torch.nn.Module):
        def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return x + torch.zeros_like(y) + y.new_ones(y.shape)

    prog = import_torch(ShapeOnly(), (torch.randn(3), torch.randn(3)))
    assert prog.input_names == ["x", "y"]


def test_lowering_child_survives_a_segfault_and_restarts(monkeypatch: pytest.MonkeyPatch) -> None:
    from rdu_compiler.frontend.lower_server import Died, call_isolated

    monkeypatch.delenv("RDU_LOWER_IN_PROCESS", raising=False)
    monkeypatch.delenv("RDU_ONNX_IN_PROCESS", raising=False)
    out = call_isolated("ctypes", "string_at", 0)  # reads address 0 in the child
    assert isinstance(out, Died) and out.how == "signal SIGSEGV" and not out.timed_out
    assert call_isolated("math", "sqrt", 4.0) == 2.0  # a fresh child answers
    with pytest.raises(ValueError, match="math domain error"):
        call_isolated("math", "sqrt", -1.0)  # exceptions come back as they were raised


# ------------------------------------------------------------------ the lowering child's protocol


def test_lowering_child_interrupted_mid_call_never_answers_the_next_call() -> None:
    """An interrupt while waiting (Ctrl-C in a notebook) stops the child: the next call gets
    its own answer, not the interrupted call's."""
    import signal

    from rdu_compiler.frontend import lower_server as ls

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    ls.call_isolated("math", "sqrt", 1.0)  # the child is up
    old = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.5)
        with pytest.raises(KeyboardInterrupt):
            ls.call_isolated("time", "sleep", 3.0)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert ls.call_isolated("math", "sqrt", 4.0) == 2.0
    assert ls.call_isolated("math", "sqrt", 9.0) == 3.0


def test_lowering_child_that_hangs_is_stopped_and_replaced() -> None:
    from rdu_compiler.frontend import lower_server as ls

    died = ls.call_isolated("time", "sleep", 30.0, timeout_s=0.5)
    assert isinstance(died, ls.Died) and died.timed_out
    assert ls.call_isolated("math", "sqrt", 16.0) == 4.0


@pytest.mark.parametrize("value", ["abc", "0", "-5"])
def test_bad_lowering_timeout_is_refused(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    from rdu_compiler.frontend import lower_server as ls

    monkeypatch.setenv("RDU_LOWERING_TIMEOUT", value)
    with pytest.raises(FrontendError, match="RDU_LOWERING_TIMEOUT"):
        ls.lowering_timeout_s()


def test_torch_func_grad_in_forward_is_refused_not_silently_zero() -> None:
    """torch.export's single ATen trace of a forward() that calls torch.func.grad_and_value
    returned zeros for the gradient through GELU and LayerNorm (ops this project decomposes):
    a silent wrong number. It is now refused with the make_fx route named."""
    from rdu_compiler.frontend.errors import FrontendError

    ln, lin = torch.nn.LayerNorm(8), torch.nn.Linear(8, 1)

    class GradOfLoss(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            g, v = torch.func.grad_and_value(lambda t: lin(torch.nn.functional.gelu(ln(t))).sum())(x)
            return v, g

    with pytest.raises(FrontendError, match="make_fx"):
        api.compile(GradOfLoss(), (torch.randn(4, 8),))
