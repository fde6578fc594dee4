"""Issue 15 figures: Llama-3.1-8B on one sn40l socket, nexus vs chunked vs static:F.

    python benchmarks/serving.py [--duration 60] [--json docs/serving_results.json]
                                 [--plot docs/serving_share_curve.png]

1. Builds (or reads from the cache) the latency model: one decoder layer at prefill and
   decode points and the LM head on shares 0.1..1.0 of the grid (`serve.latency`), and prints
   the diminishing-returns curve (per-layer seconds against share) and the fit errors on
   validation compiles.
2. For the conversation and code traces (Poisson arrivals, seed 0), runs every policy at a
   few rates and reports P95 TTFT/TBT, throughput and SLO attainment, then each policy's
   goodput: the highest rate with >= 90 % of requests meeting TTFT <= 0.5 s and TPOT <= 50 ms
   (bisection in [0, 32] req/s, 7 steps: 0.25 req/s resolution).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from typing import Any

from rdu_compiler.serve import generate, simulate
from rdu_compiler.serve.latency import build_latency_model

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


def goodput(reqs_at: Any, lm: Any, policy: str, hi: float = 32.0, steps: int = 7) -> float:
    lo = 0.0
    for _ in range(steps):
        mid = (lo + hi) / 2
        m = simulate(reqs_at(mid), lm, policy, slo_ttft=SLO_TTFT, slo_tbt=SLO_TBT).metrics
        lo, hi = (mid, hi) if m["slo_attainment"] >= 0.9 else (lo, mid)
    return lo


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
    for trace in ("conversation", "code"):

        def reqs_at(rate: float, trace: str = trace) -> Any:
            return generate(trace, rate, args.duration, seed=0)

        for rate in RATES:
            reqs = reqs_at(rate)
            for pol in policies:
                m = simulate(reqs, lm, pol, slo_ttft=SLO_TTFT, slo_tbt=SLO_TBT).metrics
                results["runs"].append({"trace": trace, "rate": rate, "policy": pol, "ttft_p95_s": m["ttft_s"]["p95"],
                                        "tbt_p95_s": m["tbt_s"]["p95"], "ttft_p50_s": m["ttft_s"]["p50"], "tbt_p50_s": m["tbt_s"]["p50"],
                                        "throughput_rps": m["throughput_rps"], "slo_attainment": m["slo_attainment"],
                                        "preemptions": m["preemptions"]})
                print(f"{trace:12s} {rate:5.1f} {pol:11s} TTFT p95 {m['ttft_s']['p95'] * 1e3:9.0f} ms  TBT p95 {m['tbt_s']['p95'] * 1e3:6.1f} ms  "
                      f"{m['throughput_rps']:6.2f} req/s  SLO {m['slo_attainment'] * 100:5.1f} %", flush=True)
        results["goodput_rps"][trace] = {}
        for pol in policies:
            g = goodput(reqs_at, lm, pol)
            results["goodput_rps"][trace][pol] = g
            print(f"{trace:12s} goodput {pol:11s} {g:6.2f} req/s", flush=True)
    results["total_s"] = time.time() - t0
    tmp = f"{args.json}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(results, f, indent=1)
    os.replace(tmp, args.json)
    plot(curve, args.plot)
    print(f"wrote {args.json} and {args.plot} in {results['total_s']:.0f} s")


if __name__ == "__main__":
    main()
