"""A hand-made LatencyModel for the serving-loop tests (the loop's logic, not the compiler's
numbers: test_serve_latency.py checks the fitted model against real compiles)."""

from __future__ import annotations

from rdu_compiler.serve.latency import LatencyModel, ShareModel
from rdu_compiler.serve.programs import MODELS


def synthetic_model(base_rows: int = 8, hbm_bytes_per_s: float = 1e9) -> LatencyModel:
    """Shares of 2, 4, 6, 8 rows: prefill compute-bound (time ~ 1/rows), decode memory-bound
    (saturating at 4 rows), per-layer seconds and HBM bytes in the DistServe forms."""
    shares = {}
    for rows in (2, 4, 6, 8):
        scale = base_rows / rows
        shares[rows] = ShareModel(
            rows, rows / base_rows,
            prefill_s=[2e-5, 2e-7 * scale, 1e-10 * scale], prefill_bytes=[2e4, 1e2, 0.0],
            decode_s=[2e-5 * max(1.0, 4 / rows), 1e-8, 1e-7 * scale], decode_bytes=[2e4, 10.0, 50.0],
            head_s=[1e-5, 1e-8], head_bytes=[1e4, 0.0],
        )
    return LatencyModel(MODELS["tiny"], "synthetic", base_rows, hbm_bytes_per_s, 1 << 26, shares, {}, 1 << 16, [])
