"""Gathers charged at access granularity (issue 16): a gathered row costs its bytes rounded
up to the tier's burst (`TierSpec.burst_bytes`, 64 B on the presets, [NF]); a gather whose
innermost index comes from data costs a burst per element. The report gives the bytes per
tier as requested and as charged, and the emulator counts the same bytes as it runs.

The expected figures are hand counts: N rows x ceil(row bytes / 64) x 64.
"""

from __future__ import annotations

import math
from importlib import resources

import numpy as np
import pytest

from rdu_compiler.cost.analysis import build_report
from rdu_compiler.dialects import rdu
from rdu_compiler.fabric import load_fabric
from rdu_compiler.fabric.spec import FabricError, _parse_fabric
from rdu_compiler.ir import parse_module
from rdu_compiler.kernel.traffic import gathered_bytes
from rdu_compiler.passes.common import kernels
from rdu_compiler.pipeline import pipeline, run_pipeline
from rdu_compiler.runtime.emulator import Emulator

TINY = load_fabric("tiny")


def row_gather(n: int, d: int, rows: int = 50) -> str:
    return f"""
func.func @main(%table: tensor<{rows}x{d}xf32>, %ids: tensor<{n}xi64>) -> tensor<{n}x{d}xf32> {{
  %e = tensor.empty() : tensor<{n}x{d}xf32>
  %r = linalg.generic {{indexing_maps = [affine_map<(i, j) -> (i)>, affine_map<(i, j) -> (i, j)>], iterator_types = ["parallel", "parallel"]}} ins(%ids : tensor<{n}xi64>) outs(%e : tensor<{n}x{d}xf32>) {{
  ^bb0(%id: i64, %o: f32):
    %row = arith.index_cast %id : i64 to index
    %col = linalg.index 1 : index
    %v = tensor.extract %table[%row, %col] : tensor<{rows}x{d}xf32>
    linalg.yield %v : f32
  }} -> tensor<{n}x{d}xf32>
  return %r : tensor<{n}x{d}xf32>
}}
"""


POINT_GATHER = """
func.func @main(%table: tensor<500xf32>, %ids: tensor<24xi64>) -> tensor<24xf32> {
  %e = tensor.empty() : tensor<24xf32>
  %r = linalg.generic {indexing_maps = [affine_map<(i) -> (i)>, affine_map<(i) -> (i)>], iterator_types = ["parallel"]} ins(%ids : tensor<24xi64>) outs(%e : tensor<24xf32>) {
  ^bb0(%id: i64, %o: f32):
    %at = arith.index_cast %id : i64 to index
    %v = tensor.extract %table[%at] : tensor<500xf32>
    linalg.yield %v : f32
  } -> tensor<24xf32>
  return %r : tensor<24xf32>
}
"""


def _run(text: str, rows: int, width: int | None) -> tuple[dict, int, rdu.KernelOp]:
    module = parse_module(text)
    run_pipeline(module, pipeline("tiny", 1))
    rng = np.random.default_rng(0)
    table = rng.standard_normal((rows, width) if width else (rows,)).astype(np.float32)
    (gather,) = [k for k in kernels(module) if k.captures]
    n = rdu.shape_of(gather.inputs[0].type)[0]
    ids = rng.integers(0, rows, n).astype(np.int64)
    (out,), stats = Emulator(module, TINY).run([table, ids])
    np.testing.assert_array_equal(out, table[ids])
    totals = build_report(module, TINY, 1)["totals"]
    assert (totals["hbm_bytes"], totals["ddr_bytes"]) == (stats.hbm_bytes, stats.ddr_bytes)  # as executed
    return totals, n, gather


@pytest.mark.parametrize(("d", "burst_bytes_per_row"), [(16, 64), (10, 64), (20, 128), (1, 64)])
def test_row_gather_is_charged_in_whole_bursts(d: int, burst_bytes_per_row: int) -> None:
    totals, n, _ = _run(row_gather(24, d), 50, d)
    hbm = totals["gather_bytes"]["hbm"]
    assert hbm["requested"] == 24 * d * 4
    assert hbm["charged"] == 24 * burst_bytes_per_row
    assert totals["gather_bytes"]["ddr"] == {"requested": 0, "charged": 0}


def test_point_gather_costs_a_burst_per_element() -> None:
    totals, n, _ = _run(POINT_GATHER, 500, None)
    assert totals["gather_bytes"]["hbm"] == {"requested": 24 * 4, "charged": 24 * 64}


def test_tiled_row_is_split_into_runs_per_tile() -> None:
    """A 48,004 B row that the tiler splits along the row reads one run per tile (the
    table may sit in HBM or DDR on tiny: both bursts are 64 B)."""
    totals, n, k = _run(row_gather(1, 12001, rows=1), 1, 12001)
    t = min(k.tile_sizes[1], 12001)
    assert t < 12001  # tiny's 16 KiB PMUs force a split
    full, rest = divmod(12001, t)
    per_row = full * math.ceil(t * 4 / 64) * 64 + (math.ceil(rest * 4 / 64) * 64 if rest else 0)
    assert per_row > 12001 * 4  # the split costs partial bursts
    assert sum(v["charged"] for v in totals["gather_bytes"].values()) == per_row
    assert gathered_bytes(k, 1) == 12001 * 4


def test_burst_bytes_is_read_from_the_spec_and_bounded() -> None:
    text = resources.files("rdu_compiler.fabric").joinpath("presets/tiny.toml").read_text()
    fab = _parse_fabric(text.replace("bytes_per_s = 64e9", "bytes_per_s = 64e9\nburst_bytes = 128"), "t", "t.toml")
    assert fab.hbm.burst_bytes == 128 and fab.ddr.burst_bytes == 64
    with pytest.raises(FabricError, match=r"\[hbm\]\.burst_bytes"):
        _parse_fabric(text.replace("bytes_per_s = 64e9", "bytes_per_s = 64e9\nburst_bytes = 0"), "t", "t.toml")
