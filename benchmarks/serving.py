"""Issue 15 figures: Llama-3.1-8B on one sn40l socket, nexus vs chunked vs static:F.

    python benchmarks/serving.py [--duration 60] [--json docs/serving_results.json]
                                 [--plot docs/serving_share_curve.png] [--executor serial|process|ray]

1. Builds (or reads from the cache) the latency model: one decoder layer at prefill and
   decode points and the LM head on shares 0.1..1.0 of the grid (`serve.latency`), and prints
   the diminishing-returns curve (per-layer seconds against share) and the fit errors on
   validation compiles.
2. For the conversation and code traces (Poisson arrivals, seed 0), runs every policy at a
   few rates and reports P95 TTFT/TBT, throughput and SLO attainment, then each policy's
   goodput: the highest rate with >= 90 % of requests meeting TTFT <= 0.5 s and TPOT <= 50 ms
   (bisection in [0, 32] req/s, 7 steps: 0.25 req/s resolution). The simulations run as jobs
   on `--executor` (`serve.sweep`, on the executors of rdu-sweep).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from typing import Any

from rdu_compiler.serve.latency import build_latency_model
from rdu_compiler.serve.sweep import RatePoint, goodput_sweep, rate_sweep

SHARES = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
STATIC = [0.3, 0.4, 0.5, 0.6, 0.7]
RATES = [4.0, 8.0, 12.0]
SLO_TTFT, SLO_TBT = 0.5, 0.05


def curves(lm: Any) -> dict[str, dict[str, float]]:
    """phase point -> share -> per-layer seconds (compiled, not fitted)."""
    out: dict[str, dict[str, float]] = {}
    for p in lm.points:
        key = f"{p['phase']} {tuple(p['point'])}"
        out.setdefault(key, {})[f"{p['share']:.2f}"] = p["estimated_s"]
    return out


def plot(curve: dict[str, dict[str, float]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for key in ("prefill (512,)", "prefill (2048,)", "decode (32, 1024)", "decode (128, 2048)", "head (1,)"):
        pts = sorted((float(s), t) for s, t in curve[key].items())
        full = pts[-1][1]
        ax.plot([s for s, _ in pts], [full / t for _, t in pts], marker="o", label=key)
    ax.plot([0.1, 1.0], [0.1, 1.0], "k:", label="linear")
    ax.set_xlabel("share of the sn40l grid (rows / 40)")
    ax.set_ylabel("speed relative to the whole grid")
    ax.set_title("Llama-3.1-8B layer: diminishing returns per phase (compiled)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--json", default="docs/serving_results.json")
    ap.add_argument("--plot", default="docs/serving_share_curve.png")
    ap.add_argument("--executor", choices=["serial", "process", "ray"], default="serial",
                    help="where the simulations run (rdu_compiler.parallel, as rdu-sweep)")
    ap.add_argument("--workers", type=int, default=None, help="processes / Ray CPUs (default: all cores)")
    args = ap.parse_args()
    t0 = time.time()
    lm = build_latency_model("llama3.1-8b", "sn40l", SHARES, progress=lambda s: print(f"  [{time.time() - t0:6.1f}s] {s}", flush=True))
    build_s = time.time() - t0
    curve = curves(lm)
    print(f"latency model: {build_s:.0f} s (cache {'hit' if build_s < 30 else 'filled'})")
    for key, row in curve.items():
        print(f"  {key:22s} " + " ".join(f"{v * 1e3:7.3f}" for _, v in sorted(row.items())))
    print("fit error (max relative, validation compiles):", json.dumps({r: {k: round(v, 3) for k, v in e.items()} for r, e in lm.fit_error.items()}))
    results: dict[str, Any] = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, shared with other agents (load avg {os.getloadavg()[0]:.1f})",
                               "latency_model_s": build_s, "curve_per_layer_s": curve, "fit_error": lm.fit_error,
                               "slo": {"ttft_s": SLO_TTFT, "tpot_s": SLO_TBT}, "runs": [], "goodput_rps": {}}
    policies = ["chunked", *(f"static:{f}" for f in STATIC), "nexus"]
    traces = ("conversation", "code")
    points = [RatePoint(trace, rate, pol, args.duration, 0, SLO_TTFT, SLO_TBT)
              for trace in traces for rate in RATES for pol in policies]
    t_sweep = time.time()
    for r in rate_sweep(lm, points, args.executor, workers=args.workers):
        results["runs"].append({k: r[k] for k in ("trace", "rate", "policy", "ttft_p95_s", "tbt_p95_s", "ttft_p50_s",
                                                  "tbt_p50_s", "throughput_rps", "slo_attainment", "preemptions")})
        print(f"{r['trace']:12s} {r['rate']:5.1f} {r['policy']:11s} TTFT p95 {r['ttft_p95_s'] * 1e3:9.0f} ms  "
              f"TBT p95 {r['tbt_p95_s'] * 1e3:6.1f} ms  {r['throughput_rps']:6.2f} req/s  "
              f"SLO {r['slo_attainment'] * 100:5.1f} %", flush=True)
    # goodput: bisection in [0, 32] req/s, 7 steps (0.25 req/s), one job per (trace, policy)
    firsts = [RatePoint(trace, 0.0, pol, args.duration, 0, SLO_TTFT, SLO_TBT) for trace in traces for pol in policies]
    for r in goodput_sweep(lm, firsts, args.executor, workers=args.workers, hi=32.0, steps=7):
        results["goodput_rps"].setdefault(r["trace"], {})[r["policy"]] = r["goodput_rps"]
        print(f"{r['trace']:12s} goodput {r['policy']:11s} {r['goodput_rps']:6.2f} req/s", flush=True)
    results["sweep_s"] = {"executor": args.executor, "seconds": time.time() - t_sweep}
    results["total_s"] = time.time() - t0
    tmp = f"{args.json}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(results, f, indent=1)
    os.replace(tmp, args.json)
    plot(curve, args.plot)
    print(f"wrote {args.json} and {args.plot} in {results['total_s']:.0f} s")


if __name__ == "__main__":
    main()
