"""Issue 15 figures on several sockets: engine-level disaggregation against nexus, and the
compiled mixed-batch program of chunked prefill against its composed estimate.

    python benchmarks/serving_node.py [--duration 60] [--sockets 1,2,4] [--seeds 0]
                                      [--json docs/serving_node_results.json]

1. Builds (or reads from the cache) the Llama-3.1-8B latency model on `sn40l` (one socket
   of `sn40l-node8`), and prints the mixed-batch points: compiled, composed, fitted.
2. For the conversation and code traces (Poisson, per seed), the goodput (highest rate with
   >= 90 % of requests meeting TTFT <= 0.5 s and TPOT <= 50 ms; bisection in
   [0, 16 x sockets] req/s, 8 steps) of: `nexus` and `chunked` replicated on N sockets, and
   `disaggregated:P:D` for every split of N >= 2 sockets (the best split kept), with the
   KV transfers over `sn40l-node8`'s links.
3. Nexus's claim, "matches engine-level disaggregation with half the GPUs", is read as
   goodput(nexus on N) / goodput(best disaggregated on 2N).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time
from typing import Any

from rdu_compiler.fabric import load_fabric
from rdu_compiler.serve import generate, simulate_node
from rdu_compiler.serve.latency import build_latency_model

SHARES = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
SLO_TTFT, SLO_TBT = 0.5, 0.05


def goodput(trace: str, seed: int, duration: float, lm: Any, node: Any, policy: str, sockets: int, steps: int = 8) -> float:
    lo, hi = 0.0, 16.0 * sockets
    for _ in range(steps):
        mid = (lo + hi) / 2
        m = simulate_node(generate(trace, mid, duration, seed=seed), lm, policy, sockets=sockets, node=node,
                          slo_ttft=SLO_TTFT, slo_tbt=SLO_TBT).metrics
        lo, hi = (mid, hi) if m["slo_attainment"] >= 0.9 else (lo, mid)
    return lo


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--sockets", default="1,2,4", help="socket counts for nexus/chunked (disaggregated: those >= 2)")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--json", default="docs/serving_node_results.json")
    args = ap.parse_args()
    counts = [int(x) for x in args.sockets.split(",")]
    seeds = [int(x) for x in args.seeds.split(",")]
    t0 = time.time()
    lm = build_latency_model("llama3.1-8b", "sn40l", SHARES)
    node = load_fabric("sn40l-node8").node
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False).stdout.strip()
    out: dict[str, Any] = {"commit": commit, "machine": f"{platform.machine()}, {os.cpu_count()} cores",
                           "load_avg_start": os.getloadavg()[0], "slo": {"ttft_s": SLO_TTFT, "tpot_s": SLO_TBT},
                           "node": {"topology": node.topology, "link_bytes_per_s": node.link_bytes_per_s,
                                    "hop_latency_s": node.hop_latency_s},
                           "mixed_points": [p for p in lm.points if p["phase"] == "mixed"],
                           "mixed_fit_error": lm.fit_error[lm.base_rows], "goodput_rps": {}, "transfers": {}}
    print("mixed-batch layer (ms): point (L, P, B, C), compiled, composed, fitted")
    for p in out["mixed_points"]:
        print(f"  {tuple(p['point'])!s:24s} {p['estimated_s'] * 1e3:7.3f} {p['composed_s'] * 1e3:7.3f} "
              f"{p['fitted_s'] * 1e3:7.3f}{'  (check)' if p['check'] else ''}")
    for trace in ("conversation", "code"):
        for seed in seeds:
            key = f"{trace}/seed{seed}"
            res: dict[str, float] = {}
            for n in counts:
                for pol in ("nexus", "chunked"):
                    res[f"{pol} x{n}"] = goodput(trace, seed, args.duration, lm, node, pol, n)
                    print(f"{key:20s} {pol} x{n}: {res[f'{pol} x{n}']:.2f} req/s  [{time.time() - t0:.0f}s]", flush=True)
            for n in sorted({c for c in counts if c >= 2} | {2 * c for c in counts}):
                for p in range(1, n):
                    name = f"disaggregated:{p}:{n - p}"
                    res[name] = goodput(trace, seed, args.duration, lm, node, name, n)
                    print(f"{key:20s} {name}: {res[name]:.2f} req/s  [{time.time() - t0:.0f}s]", flush=True)
                best = max((v, k) for k, v in res.items() if k.startswith("disaggregated:") and sum(map(int, k.split(":")[1:])) == n)
                res[f"best disaggregated x{n}"] = best[0]
                out.setdefault("best_split", {})[f"{key} x{n}"] = best[1]
            out["goodput_rps"][key] = res
            rate = 0.8 * res.get("best disaggregated x2", 0.0) or 1.0
            r = simulate_node(generate(trace, rate, args.duration, seed=seed), lm, out["best_split"].get(f"{key} x2", "disaggregated:1:1"),
                              sockets=2, node=node, slo_ttft=SLO_TTFT, slo_tbt=SLO_TBT)
            trs = r.transfers
            out["transfers"][key] = {"rate_rps": rate, "count": len(trs), "mb_mean": sum(t.nbytes for t in trs) / max(1, len(trs)) / 1e6,
                                     "ms_mean": 1e3 * sum(t.end - t.start for t in trs) / max(1, len(trs)),
                                     "ttft_p50_ms": r.metrics["ttft_s"]["p50"] * 1e3}
    out["load_avg_end"] = os.getloadavg()[0]
    out["wall_s"] = time.time() - t0
    tmp = f"{args.json}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=1)
    os.replace(tmp, args.json)
    print(f"wrote {args.json} in {out['wall_s']:.0f} s")


if __name__ == "__main__":
    main()
