"""Composition of Experts figures (issue 14): switching time, footprint, per-request
breakdown and overall speedup of Llama-2-7B experts on an SN40L node against DGX boxes.

    python benchmarks/coe.py [--experts 150] [--requests 500] [--prompt 512] [--json FILE]

The overall speedup is given with and without prefetch (`runtime.simulate`: the next
request's expert copied during the current run when it fits beside it), on both machines.

Derived from specs (no compile): switching time, footprint. From the compiler's cost model
(a decoder layer compiled on meta tensors with `rdu-shard{tp=8}`, `coe.llama.rdu_tp_step_s`) and the
GPU rooflines (`coe.gpu`): the breakdown and the speedups.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

from rdu_compiler.coe.config import CoEConfig
from rdu_compiler.coe.footprint import footprint
from rdu_compiler.coe.gpu import DGX_A100, DGX_H100
from rdu_compiler.coe.llama import LLAMA2_7B, GpuLlamaTiming, RduLlamaTiming
from rdu_compiler.coe.runtime import Request, switch_seconds
from rdu_compiler.coe.study import run_study
from rdu_compiler.fabric import load_fabric

NODE = "sn40l-node8"


def switching() -> list[dict[str, object]]:
    node = load_fabric(NODE).node
    rdu = switch_seconds(LLAMA2_7B.weight_bytes, node.ddr_to_hbm_bytes_per_s, node.sockets)
    rows: list[dict[str, object]] = [{"machine": NODE, "links": node.sockets, "switch_ms": rdu * 1e3, "ratio": 1.0}]
    for gpu in (DGX_H100, DGX_A100):
        for links in (1, 8):
            g = dataclasses.replace(gpu, host_links_per_copy=links)
            s = g.switch_s(LLAMA2_7B.weight_bytes)
            rows.append({"machine": gpu.name, "links": links, "switch_ms": s * 1e3, "ratio": s / rdu})
    return rows


def footprints() -> list[dict[str, object]]:
    fab = load_fabric(NODE)
    kv = LLAMA2_7B.kv_bytes(4096)  # one 4K-token sequence reserved per box (assumption)
    out = []
    for n in (1, 40, 150, 500, 850):
        for gpu in (DGX_H100, DGX_A100):
            out.append(footprint(n, LLAMA2_7B.weight_bytes, LLAMA2_7B.weight_bytes, fab, gpu, kv).to_dict())
    return out


def breakdown(prompt: int) -> list[dict[str, object]]:
    """One request whose expert is not resident: router, switch, execution (seconds)."""
    node = load_fabric(NODE).node
    rows = []
    rdu_t = RduLlamaTiming(LLAMA2_7B, LLAMA2_7B, NODE, 8)
    for batch in (1, 8):
        for output in (20, 200):
            r = Request(0, prompt, output, batch)
            rows.append({"machine": NODE, "batch": batch, "output": output, "router_s": rdu_t.router_s(r),
                         "switch_s": switch_seconds(LLAMA2_7B.weight_bytes, node.ddr_to_hbm_bytes_per_s, 8),
                         "exec_s": rdu_t.exec_s(r)})
            for gpu in (DGX_H100, DGX_A100):
                t = GpuLlamaTiming(LLAMA2_7B, LLAMA2_7B, gpu)
                rows.append({"machine": gpu.name, "batch": batch, "output": output, "router_s": t.router_s(r),
                             "switch_s": gpu.switch_s(LLAMA2_7B.weight_bytes), "exec_s": t.exec_s(r)})
    return rows


def speedups(experts: int, requests: int, prompt: int) -> list[dict[str, object]]:
    rows = []
    for batch in (1, 8):
        for output in (20, 200):
            cfg = CoEConfig("benchmarks/coe.py", NODE, None, "llama2-7b", None, "llama2-7b", experts, (), requests,
                            "uniform", 1.0, None, None, prompt, output, batch, 0)
            for eff, prefetch in ((1.0, False), (0.21, False), (1.0, True), (0.21, True)):
                gpus = [dataclasses.replace(g, hbm_efficiency=eff) for g in (DGX_H100, DGX_A100)]
                r = run_study(cfg, compare=gpus, prefetch=prefetch)
                rows.append({"batch": batch, "output": output, "gpu_hbm_efficiency": eff, "prefetch": prefetch,
                             "rdu_total_s": r["rdu"]["totals"]["total_s"], "rdu_hit_rate": r["rdu"]["hit_rate"],
                             "rdu_switch_s": r["rdu"]["totals"]["switch_s"],
                             "rdu_hidden_switch_s": r["rdu"]["totals"]["hidden_switch_s"],
                             **{f"{g}_{k}": v for g in ("dgx-h100", "dgx-a100")
                                for k, v in (("machine", r[g]["machine"]), ("total_s", r[g]["totals"]["total_s"]),
                                             ("switch_s", r[g]["totals"]["switch_s"]), ("hit_rate", r[g]["hit_rate"]),
                                             ("hidden_switch_s", r[g]["totals"]["hidden_switch_s"]),
                                             ("speedup", r["speedup"][g]))}})
    return rows


def plot_prefetch(rows: list[dict[str, object]], path: str) -> None:
    """Total time of the request mix per machine, without and with prefetch (GPU at its
    roofline), split into router, exposed switch and execution; hidden switch hatched."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sel = [r for r in rows if r["gpu_hbm_efficiency"] == 1.0 and r["batch"] == 1]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    for ax, output in zip(axes, (20, 200), strict=True):
        labels, parts = [], []
        for prefetch in (False, True):
            r = next(x for x in sel if x["output"] == output and x["prefetch"] == prefetch)
            for m, key in ((NODE, "rdu"), ("DGX H100 x2", "dgx-h100"), ("DGX A100 x3", "dgx-a100")):
                total = float(r[f"{key}_total_s"])  # type: ignore[arg-type]
                switch = float(r[f"{key}_switch_s"])  # type: ignore[arg-type]
                hidden = float(r[f"{key}_hidden_switch_s"])  # type: ignore[arg-type]
                labels.append(f"{m}\n{'prefetch' if prefetch else 'no prefetch'}")
                parts.append((total - switch, switch, hidden))
        xs = range(len(labels))
        ax.bar(xs, [p[0] for p in parts], label="router + execution")
        ax.bar(xs, [p[1] for p in parts], bottom=[p[0] for p in parts], label="switch (waited for)")
        ax.bar(xs, [p[2] for p in parts], bottom=[p[0] + p[1] for p in parts], fill=False, hatch="//",
               label="switch hidden behind the previous run")
        ax.set_ylim(0, 1.05 * max(p[0] + p[1] + p[2] for p in parts))
        ax.set_xticks(list(xs), labels, fontsize=6.5)
        ax.set_ylabel("seconds for the mix")
        ax.set_title(f"500 requests, 150 experts, batch 1, {output} output tokens", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--experts", type=int, default=150)
    p.add_argument("--requests", type=int, default=500)
    p.add_argument("--prompt", type=int, default=512)
    p.add_argument("--json", default=None)
    p.add_argument("--plot-prefetch", default=None, help="write the with/without prefetch figure (PNG) here")
    a = p.parse_args()
    t0 = time.time()
    result = {"switching": switching(), "footprint": footprints(), "breakdown": breakdown(a.prompt),
              "speedup": speedups(a.experts, a.requests, a.prompt)}
    result["wall_s"] = time.time() - t0
    print("## switching one Llama-2-7B expert (%.2f GB)" % (LLAMA2_7B.weight_bytes / 1e9))
    for r in result["switching"]:
        print(f"| {r['machine']} | {r['links']} | {r['switch_ms']:.1f} ms | {r['ratio']:.1f}x |")
    print("## footprint")
    for r in result["footprint"]:
        print(f"| {r['experts']} | {r['rdu_nodes']} | {r['gpu']} | {r['gpu_boxes_hbm']} | {r['gpu_boxes_host']} |")
    print("## breakdown, one miss (ms)")
    for r in result["breakdown"]:
        print(f"| {r['machine']} | {r['batch']} | {r['output']} | {r['router_s'] * 1e3:.1f} | {r['switch_s'] * 1e3:.1f} | "
              f"{r['exec_s'] * 1e3:.1f} |")
    print("## one miss: GPU total / RDU total")
    rows = result["breakdown"]
    for i in range(0, len(rows), 3):
        tot = [r["router_s"] + r["switch_s"] + r["exec_s"] for r in rows[i:i + 3]]
        print(f"| batch {rows[i]['batch']} | {rows[i]['output']} tokens | H100 {tot[1] / tot[0]:.2f}x | A100 {tot[2] / tot[0]:.2f}x |")
    print("## speedup (prefetch: next request's expert copied during the current run)")
    for r in result["speedup"]:
        print(f"| {'on' if r['prefetch'] else 'off'} | {r['batch']} | {r['output']} | {r['gpu_hbm_efficiency']} | "
              f"{r['rdu_total_s']:.2f} s (switch {r['rdu_switch_s']:.2f} s exposed, {r['rdu_hidden_switch_s']:.2f} s hidden) | "
              f"{r['rdu_hit_rate']:.1%} | {r['dgx-h100_machine']} {r['dgx-h100_total_s']:.2f} s "
              f"{r['dgx-h100_hit_rate']:.1%} {r['dgx-h100_speedup']:.2f}x | {r['dgx-a100_machine']} "
              f"{r['dgx-a100_total_s']:.2f} s {r['dgx-a100_hit_rate']:.1%} {r['dgx-a100_speedup']:.2f}x |")
    print(f"wall {result['wall_s']:.0f} s")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=2)
    if a.plot_prefetch:
        plot_prefetch(result["speedup"], a.plot_prefetch)  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
