"""The driver verifies once at the end (fast) and still names the pass that broke the IR."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from xdsl.dialects.builtin import DenseArrayBase, ModuleOp, i64
from xdsl.passes import ModulePass

import rdu_compiler.passes as registry_module
from rdu_compiler.dialects import rdu
from rdu_compiler.errors import CompileError
from rdu_compiler.ir import parse_module
from rdu_compiler.pipeline import pipeline, run_pipeline

SMALL = """
func.func @main(%x: tensor<16x32xf32>) -> tensor<16x32xf32> {
  %e = tensor.empty() : tensor<16x32xf32>
  %r = linalg.generic {indexing_maps = [affine_map<(i, j) -> (i, j)>, affine_map<(i, j) -> (i, j)>],
                       iterator_types = ["parallel", "parallel"]} ins(%x : tensor<16x32xf32>) outs(%e : tensor<16x32xf32>) {
  ^bb0(%a: f32, %b: f32):
    %n = arith.negf %a : f32
    linalg.yield %n : f32
  } -> tensor<16x32xf32>
  return %r : tensor<16x32xf32>
}
"""


@dataclass(frozen=True)
class _BreakTiles(ModulePass):
    """A pass with a bug: it gives every kernel a zero tile (the verifier refuses it)."""

    name = "test-break-tiles"

    def apply(self, ctx: object, op: ModuleOp) -> None:
        for k in op.walk():
            if isinstance(k, rdu.KernelOp):
                k.tile = DenseArrayBase.from_list(i64, [0] * len(k.domain_sizes))


@pytest.mark.parametrize("verify_each", [False, True])
def test_an_invalid_module_is_blamed_on_the_pass_that_made_it(monkeypatch: pytest.MonkeyPatch, verify_each: bool) -> None:
    real = registry_module.get_all_passes
    monkeypatch.setattr(registry_module, "get_all_passes", lambda: {**real(), "test-break-tiles": lambda: _BreakTiles})
    passes = pipeline("tiny", 1)
    at = next(i for i, p in enumerate(passes) if p.startswith("rdu-tile"))
    passes.insert(at + 1, "test-break-tiles")  # a broken pass mid-pipeline, before section/allocate/place
    with pytest.raises(CompileError) as info:
        run_pipeline(parse_module(SMALL), passes, verify_each=verify_each)
    assert info.value.pass_name == "test-break-tiles"
    assert "k1_map" in str(info.value) and "tile [0, 0]" in str(info.value)


def test_a_valid_pipeline_verifies_at_the_end_only() -> None:
    module = parse_module(SMALL)
    run_pipeline(module, pipeline("tiny", 1), verify_each=False)
    module.verify()
    assert "rdu.section" in str(module)


@pytest.mark.parametrize("verify_each", [False, True])
def test_the_reproducer_is_the_failing_pass_input_rebuilt_from_source(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object, verify_each: bool
) -> None:
    """No pass's input is kept: on a failure the earlier passes run again on `source()`
    and that module is the reproducer (it has tiles, from rdu-tile, and no sections yet)."""
    real = registry_module.get_all_passes
    monkeypatch.setattr(registry_module, "get_all_passes", lambda: {**real(), "test-break-tiles": lambda: _BreakTiles})
    passes = pipeline("tiny", 1)
    at = next(i for i, p in enumerate(passes) if p.startswith("rdu-tile"))
    passes.insert(at + 1, "test-break-tiles")
    calls: list[int] = []

    def source() -> ModuleOp:
        calls.append(1)
        return parse_module(SMALL)

    with pytest.raises(CompileError) as info:
        run_pipeline(parse_module(SMALL), passes, verify_each=verify_each, source=source, repro_dir=str(tmp_path))
    assert calls, "the input is rebuilt from source on a failure"
    text = open(info.value.reproducer or "").read()
    assert "rdu.kernel" in text and "tile = array<i64: 16, 32>" in text
    assert "rdu.section" not in text and "linalg.generic" not in text


def test_a_passing_pipeline_neither_clones_nor_calls_source(monkeypatch: pytest.MonkeyPatch) -> None:
    clones: list[int] = []
    real_clone = ModuleOp.clone

    def counting_clone(self: ModuleOp, *a: object, **k: object) -> ModuleOp:
        clones.append(1)
        return real_clone(self, *a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(ModuleOp, "clone", counting_clone)
    module = parse_module(SMALL)
    run_pipeline(module, pipeline("tiny", 1), verify_each=True, source=lambda: pytest.fail("source called"))
    assert clones == []
