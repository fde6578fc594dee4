"""Pipeline parallelism (issue 13): where rdu-pipeline cuts (`plan.stages`), the channel
check on direct calls, the stage programs on the emulator against the unstaged program,
and the pipeline's cost with micro-batches."""

from __future__ import annotations

import pytest

from rdu_compiler.errors import RduError
from rdu_compiler.plan.stages import plan_stages

# three "layers" of four kernels: 10 bytes cross a layer boundary, 100 a cut inside a layer
LAYERS = [0] + [10 if c % 4 == 0 else 100 for c in range(1, 12)]


def test_cuts_balance_first_then_go_where_fewest_bytes_cross() -> None:
    plan = plan_stages([1.0] * 12, LAYERS, 3)
    assert plan.starts == (0, 4, 8) and plan.crossing_bytes == (10, 10)
    heavy_head = plan_stages([1.0] * 12 + [2.0], [*LAYERS, 10], 3)  # an LM head on the last stage
    assert heavy_head.starts == (0, 4, 8) and heavy_head.stage_work == (4.0, 4.0, 6.0)  # within 25% of W* = 5
    strict = plan_stages([1.0] * 12 + [2.0], [*LAYERS, 10], 3, imbalance=0.0)  # balance only: a cut inside a layer
    assert max(strict.stage_work) == pytest.approx(5.0) and 100 in strict.crossing_bytes
    lopsided = plan_stages([1.0, 1.0, 1.0, 9.0], [0, 1, 1, 1], 2)
    assert lopsided.starts == (0, 3) and lopsided.best_max_work == pytest.approx(9.0)


def test_too_many_stages_are_refused() -> None:
    with pytest.raises(ValueError, match="cannot cut 2 kernels into 3 stages"):
        plan_stages([1.0, 1.0], [0, 0], 3)


def test_channel_check_is_an_rdu_error_naming_the_channel() -> None:
    from rdu_compiler.dialects import rdu
    from rdu_compiler.ir import parse_module

    text = """
    func.func @s0(%x: tensor<4xf32>) attributes {rdu.stage = 0 : i64} {
      rdu.send %x to 1 channel 5 : tensor<4xf32>
      func.return
    }
    func.func @s1() attributes {rdu.stage = 1 : i64} {
      func.return
    }"""
    module = parse_module(text)
    with pytest.raises(RduError, match="channel 5 has 1 rdu.send and 0 rdu.recv"):
        rdu.verify_channels(module)
