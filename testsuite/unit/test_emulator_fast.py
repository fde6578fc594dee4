"""The prepared kernel executor against the general one: the same bits, the same stats.

`Emulator(..., prepared=True)` (the default) runs kernels with
`interpreters.kernel_fast.PreparedKernelExecutor`; `prepared=False` with the general
`KernelExecutor`. On the example models (fp32 and bf16) every output must be bitwise equal
and every traffic counter equal, on the first run and on a second run of the same
emulator (which reuses what the first prepared). Outputs handed back must not share
memory with the inputs, the kept constants or the next run's outputs.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import rdu_compiler
from rdu_compiler.frontend.torch.model_file import load_model_file
from rdu_compiler.interpreters.kernel_fast import PreparedKernelExecutor
from rdu_compiler.runtime.emulator import Emulator, EmulatorStats


def _counters(stats: EmulatorStats) -> list[tuple[object, ...]]:
    return [(s.name, s.hbm_bytes, s.ddr_bytes, s.pmu_bytes, s.tiles) for s in stats.sections]


def _bits(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(a).view(np.uint8).tobytes()


def _same(xs: list[np.ndarray], ys: list[np.ndarray]) -> None:
    assert len(xs) == len(ys)
    for x, y in zip(xs, ys, strict=True):
        assert (x.dtype, x.shape) == (y.dtype, y.shape)
        assert _bits(x) == _bits(y)


MODELS = [
    ("examples/llama_2layer.py", None),
    ("examples/bert_2layer.py", None),
    ("examples/gpt2_2layer.py", None),
    ("examples/mlp.py", None),
    ("examples/cnn.py", None),
    ("examples/llama_2layer.py", torch.bfloat16),
    ("examples/gpt2_2layer.py", torch.bfloat16),
]


@pytest.mark.parametrize(("path", "dtype"), MODELS, ids=[f"{p.split('/')[-1][:-3]}-{d or 'f32'}" for p, d in MODELS])
def test_prepared_executor_is_bitwise_the_general_one(path: str, dtype: torch.dtype | None) -> None:
    model, inputs = load_model_file(path)
    if dtype is not None:
        model = model.to(dtype)
        inputs = tuple(x.to(dtype) if x.is_floating_point() else x for x in inputs)
    program = rdu_compiler.compile(model, inputs, fabric="sn40l")
    args = program._arguments(inputs)
    general = Emulator(program.module, program.fabric, prepared=False)
    prepared = Emulator(program.module, program.fabric)
    ref, ref_stats = general.run(args)
    first, first_stats = prepared.run(args)
    _same(ref, first)
    assert _counters(ref_stats) == _counters(first_stats)
    kept = [o.copy() for o in first]
    for o in first:  # a caller may write into what it got back
        if o.size:
            o.reshape(-1)[0] = 12345
    second, second_stats = prepared.run(args)  # the prepared plans, reused
    _same(ref, second)
    _same(kept, second)
    assert _counters(ref_stats) == _counters(second_stats)
    for o in second:
        assert not any(np.may_share_memory(o, a) for a in args if isinstance(a, np.ndarray))
        assert not any(np.may_share_memory(o, f) for f in first)
    if dtype is torch.bfloat16:  # the case the whole-operand conversion serves
        assert any(o.dtype.name == "bfloat16" for o in ref) or any(a.dtype.name == "bfloat16" for a in args)


def test_prepared_executor_on_tiled_contractions_and_gathers() -> None:
    """The tiny fabric tiles the reduction dims (k-tile sums in place) and the parallel dims."""
    from rdu_compiler.fabric import load_fabric
    from testsuite.unit.test_emulator import compile_text  # noqa: PLC0415

    text = """
    func.func @f(%a: tensor<96x200xf32>, %b: tensor<200x72xbf16>, %ids: tensor<40xi64>, %t: tensor<64x72xf32>) -> (tensor<96x72xf32>, tensor<40x72xf32>) {
      %z = arith.constant 0.0 : f32
      %e = tensor.empty() : tensor<96x72xf32>
      %f = linalg.fill ins(%z : f32) outs(%e : tensor<96x72xf32>) -> tensor<96x72xf32>
      %bf = tensor.empty() : tensor<200x72xf32>
      %bw = linalg.generic {indexing_maps = [affine_map<(i, j) -> (i, j)>, affine_map<(i, j) -> (i, j)>], iterator_types = ["parallel", "parallel"]}
          ins(%b : tensor<200x72xbf16>) outs(%bf : tensor<200x72xf32>) {
        ^bb0(%x: bf16, %o: f32):
          %w = arith.extf %x : bf16 to f32
          linalg.yield %w : f32
      } -> tensor<200x72xf32>
      %m = linalg.matmul ins(%a, %bw : tensor<96x200xf32>, tensor<200x72xf32>) outs(%f : tensor<96x72xf32>) -> tensor<96x72xf32>
      %ge = tensor.empty() : tensor<40x72xf32>
      %g = linalg.generic {indexing_maps = [affine_map<(i, j) -> (i)>, affine_map<(i, j) -> (i, j)>], iterator_types = ["parallel", "parallel"]}
          ins(%ids : tensor<40xi64>) outs(%ge : tensor<40x72xf32>) {
        ^bb0(%id: i64, %o: f32):
          %r = arith.index_cast %id : i64 to index
          %c = linalg.index 1 : index
          %v = tensor.extract %t[%r, %c] : tensor<64x72xf32>
          linalg.yield %v : f32
      } -> tensor<40x72xf32>
      return %m, %g : tensor<96x72xf32>, tensor<40x72xf32>
    }
    """
    import ml_dtypes

    module = compile_text(text)
    tiny = load_fabric("tiny")
    rng = np.random.default_rng(0)
    args = [
        rng.standard_normal((96, 200)).astype(np.float32),
        rng.standard_normal((200, 72)).astype(ml_dtypes.bfloat16),
        rng.integers(0, 64, 40).astype(np.int64),
        rng.standard_normal((64, 72)).astype(np.float32),
    ]
    ref, ref_stats = Emulator(module, tiny, prepared=False).run(args)
    prepared = Emulator(module, tiny)
    for _ in range(2):
        out, stats = prepared.run(args)
        _same(ref, out)
        assert _counters(ref_stats) == _counters(stats)
    assert max(sum(s.tiles.values()) for s in stats.sections) > 1  # the point: more than one tile


class _Dots(torch.nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return a @ b, (a * w).sum(0, keepdim=True)  # a 0-d contraction, and a 1-element one


def test_prepared_executor_writes_one_element_contractions() -> None:
    """A contraction whose result slice is one element (`a @ b` of two vectors is 0-d) was
    summed with `out=result[index]`, which is a numpy scalar there, not a view: a TypeError
    in ONNX's matmul_1d_1d, layer-norm-axis-0 and weighted-NLL cases."""
    a, b, w = torch.randn(7), torch.randn(7), torch.randn(7)
    program = rdu_compiler.compile(_Dots(), (a, b, w), fabric="sn40l")
    args = program._arguments((a, b, w))
    ref, _ = Emulator(program.module, program.fabric, prepared=False).run(args)
    got, _ = Emulator(program.module, program.fabric).run(args)
    _same(ref, got)
    np.testing.assert_allclose(np.asarray(got[0]), float(a @ b), rtol=1e-6)


def test_weights_changed_between_runs_are_seen() -> None:
    """The API keeps each weight's numpy view between runs (`api._weight_view`): an in-place
    update shows through it, a tensor given new memory (`.data =`) is read again."""
    torch.manual_seed(0)
    model = torch.nn.Linear(8, 4)
    x = torch.randn(2, 8)
    program = rdu_compiler.compile(model, (x,), fabric="sn40l")
    with torch.no_grad():
        first = program.run(x)
        name = next(n for n, w in program.imported.weights.items() if tuple(w.shape) == (4, 8))
        w = program.imported.weights[name]
        w.mul_(2.0)  # in place: the same memory
        second = program.run(x)
        assert np.allclose(second.numpy(), (x @ w.T + model.bias).numpy(), atol=1e-5)
        assert not np.allclose(first.numpy(), second.numpy())
        w.data = torch.zeros(4, 8)  # new memory
        third = program.run(x)
        b = program.imported.weights[next(n for n, v in program.imported.weights.items() if tuple(v.shape) == (4,))]
        assert np.allclose(third.numpy(), np.broadcast_to(b.numpy(), (2, 4)), atol=1e-6)


def test_a_rounding_cast_on_a_contraction_operand_is_applied() -> None:
    """`x.to(bf16) @ w` with x an f32 argument: rdu-fuse folds the truncf into the matmul's
    payload, and both executors must round x to bf16 before the product (they once
    multiplied the unrounded f32 x: every output matched `x @ w` instead)."""

    class CastMatmul(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.randn(256, 64).to(torch.bfloat16))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return (x.to(torch.bfloat16) @ self.w).float()

    torch.manual_seed(0)
    model, x = CastMatmul(), torch.randn(32, 256)
    program = rdu_compiler.compile(model, (x,), fabric="sn40l")
    assert "arith.truncf" in str(program.ir).split("pattern<matmul>")[1].split("rdu.yield")[0]
    args = program._arguments((x,))
    general, _ = Emulator(program.module, program.fabric, prepared=False).run(args)
    prepared, _ = Emulator(program.module, program.fabric).run(args)
    _same(general, prepared)
    got = np.asarray(prepared[0], dtype=np.float32)
    w = model.w.detach().double()
    rounded = (x.to(torch.bfloat16).double() @ w).to(torch.bfloat16).float().numpy()
    unrounded = (x.double() @ w).to(torch.bfloat16).float().numpy()
    assert np.mean(got == rounded) >= 0.99
    assert np.mean(got == unrounded) < 0.9


def test_cast_only_maps_write_each_tile_into_the_result(monkeypatch: pytest.MonkeyPatch) -> None:
    """f32 -> bf16 and bf16 -> f32 over several tiles (and a transposed one, which takes the
    general store), special values included: bitwise the general executor's."""

    class Casts(torch.nn.Module):
        def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, ...]:
            return x.to(torch.bfloat16), y.float(), x.t().to(torch.bfloat16)

    x = torch.randn(128, 20000)
    flat = x.view(-1)
    flat[:8] = torch.tensor([float("nan"), float("inf"), -float("inf"), -0.0, 1e-40, -1e-40, 3.4e38, 1.00390625])
    flat[8:16] = torch.from_numpy(np.array([0x7F800001, 0xFFC00001, 0x3F808000, 0x3F818000, 0x00008000, 0x7F7FFFFF,
                                            0x80000001, 0x3F80FFFF], dtype=np.uint32).view(np.float32))
    y = torch.randn(128, 20000).to(torch.bfloat16)
    program = rdu_compiler.compile(Casts(), (x, y), fabric="sn40l")
    args = program._arguments((x, y))
    whole: list[bool] = []
    real = PreparedKernelExecutor._cast_whole
    monkeypatch.setattr(PreparedKernelExecutor, "_cast_whole", lambda self, *a: whole.append((r := real(self, *a)) is not None) or r)
    ref, ref_stats = Emulator(program.module, program.fabric, prepared=False).run(args)
    for _ in range(2):
        got, stats = Emulator(program.module, program.fabric).run(args)
        _same(ref, got)
        assert _counters(ref_stats) == _counters(stats)
    assert whole.count(True) == 4, whole  # each plain cast, on each run, as one cast of the whole argument
    written: list[bool] = []
    into = PreparedKernelExecutor._cast_into
    monkeypatch.setattr(PreparedKernelExecutor, "_cast_whole", lambda self, *a: None)  # the tile-by-tile way
    monkeypatch.setattr(PreparedKernelExecutor, "_cast_into", lambda self, *a: written.append(into(self, *a)) or written[-1])
    got, stats = Emulator(program.module, program.fabric).run(args)
    _same(ref, got)
    assert _counters(ref_stats) == _counters(stats)
    assert written.count(True) >= 4, written  # several tiles of each plain cast went in place
