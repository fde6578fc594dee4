"""Composition of Experts figures (issue 14): switching time, footprint, per-request
breakdown and overall speedup of Llama-2-7B experts on an SN40L node against DGX boxes.

    python benchmarks/coe.py [--experts 150] [--requests 500] [--prompt 512] [--json FILE]

Derived from specs (no compile): switching time, footprint. From the compiler's cost model
(per-socket TP8 layer programs compiled on meta tensors, `coe.llama.rdu_tp_step_s`) and the
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
            for eff in (1.0, 0.21):
                gpus = [dataclasses.replace(g, hbm_efficiency=eff) for g in (DGX_H100, DGX_A100)]
                r = run_study(cfg, compare=gpus)
                rows.append({"batch": batch, "output": output, "gpu_hbm_efficiency": eff,
                             "rdu_total_s": r["rdu"]["totals"]["total_s"], "rdu_hit_rate": r["rdu"]["hit_rate"],
                             "rdu_switch_s": r["rdu"]["totals"]["switch_s"],
                             **{f"{g}_{k}": v for g in ("dgx-h100", "dgx-a100")
                                for k, v in (("machine", r[g]["machine"]), ("total_s", r[g]["totals"]["total_s"]),
                                             ("switch_s", r[g]["totals"]["switch_s"]), ("hit_rate", r[g]["hit_rate"]),
                                             ("speedup", r["speedup"][g]))}})
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--experts", type=int, default=150)
    p.add_argument("--requests", type=int, default=500)
    p.add_argument("--prompt", type=int, default=512)
    p.add_argument("--json", default=None)
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
    print("## speedup")
    for r in result["speedup"]:
        print(f"| {r['batch']} | {r['output']} | {r['gpu_hbm_efficiency']} | {r['rdu_total_s']:.2f} s | "
              f"{r['rdu_hit_rate']:.1%} | {r['dgx-h100_machine']} {r['dgx-h100_total_s']:.2f} s "
              f"{r['dgx-h100_hit_rate']:.1%} {r['dgx-h100_speedup']:.2f}x | {r['dgx-a100_machine']} "
              f"{r['dgx-a100_total_s']:.2f} s {r['dgx-a100_hit_rate']:.1%} {r['dgx-a100_speedup']:.2f}x |")
    print(f"wall {result['wall_s']:.0f} s")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
