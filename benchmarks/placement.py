"""Placement quality on sn40l: our placer (anneal) vs row-major vs random placement.

For every section of each model, each strategy places the same allocated section; we
print, per strategy: total traffic x hops (sum of link loads, bytes x links, multicast
segments once), the most loaded link (bytes per section run, and that over the link
bandwidth), the sections' estimated time under the static cost model with that
placement (and how many sections the network binds), and the placement wall time.
Each placement is routed both ways (`--routings`): dimension-order (every net XY) and
balanced (each on-chip net XY or YX to even out link loads, what rdu-place records);
the routing changes link loads (and traffic x hops only where multicast branches share
links differently).

Models (shapes only where weights would be large):
  - GPT-2 small, fp32, sequence 128 (examples/gpt2_small.py): 3 sections, each filling
    100% of the fabric (2080 units) -- the ">= 90% of the fabric" case;
  - a Llama-2-7B-shaped decoder layer, bf16 (hidden 4096, 32 heads, MLP 11008), on the
    meta device (rdu_compiler.bench.models.llama_layer), prefill at sequence 128.

    python benchmarks/placement.py [--efforts 20,100] [--routings dimension-order,balanced]
                                   [--seq 128] [--json out.json] [--plot DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _models(seq: int) -> dict[str, Any]:
    from rdu_compiler.bench.models import LayerShape, llama_layer
    from rdu_compiler.frontend.torch.model_file import load_model_file

    return {
        "GPT-2 small (fp32, seq 128)": lambda: load_model_file("examples/gpt2_small.py"),
        f"Llama-2-7B decoder layer (bf16, seq {seq})": lambda: llama_layer(LayerShape(seq=seq)),
    }


def measure(module: Any, fabric: Any, strategy: Any, routing: str) -> dict[str, Any]:
    """Place every section of `module` with `strategy`, route it with `routing`; sum the
    figures over sections."""
    from rdu_compiler.cost.analysis import section_load
    from rdu_compiler.cost.model import section_cost
    from rdu_compiler.dialects import rdu
    from rdu_compiler.passes.placement_ir import section_problem
    from rdu_compiler.plan.placement import Grid, link_loads, place

    grid = Grid.from_fabric(fabric)
    link_bps = fabric.link_bytes_per_cycle * fabric.clock_hz
    rows = []
    for section in [op for op in module.walk() if isinstance(op, rdu.SectionOp)]:
        sp = section_problem(section)
        t0 = time.perf_counter()
        placement = place(sp.problem, grid, strategy)
        wall = time.perf_counter() - t0
        net = link_loads(grid, sp.problem, placement.sites, placement.agcus, routing)
        cost = section_cost(section_load(section, net.max_link_bytes), fabric)
        steady = cost.total_s - cost.fill_s - cost.launch_s
        rows.append({
            "section": section.sym_name.data,
            "units": sp.problem.num_units,
            "fill": sp.problem.num_units / (fabric.num_pcus + fabric.num_pmus),
            "traffic_hops": net.traffic_hops,
            "max_link_bytes": net.max_link_bytes,
            "network_s": net.max_link_bytes / link_bps,
            "link_utilization": (net.max_link_bytes / link_bps) / steady if steady else 0.0,
            "estimated_s": cost.total_s,
            "bound": cost.bound,
            "place_s": wall,
        })
    return {
        "strategy": strategy.name + (f" (effort {strategy.effort:g})" if hasattr(strategy, "effort") else ""),
        "routing": routing,
        "sections": rows,
        "traffic_hops": sum(r["traffic_hops"] for r in rows),
        "max_link_bytes": max(r["max_link_bytes"] for r in rows),
        "max_link_utilization": max(r["link_utilization"] for r in rows),
        "estimated_s": sum(r["estimated_s"] for r in rows),
        "network_bound_sections": sum(r["bound"] == "network" for r in rows),
        "place_s": sum(r["place_s"] for r in rows),
        "max_place_s": max(r["place_s"] for r in rows),
    }


def main() -> None:
    import torch

    import rdu_compiler
    from rdu_compiler.fabric import load_fabric
    from rdu_compiler.plan.placement import Anneal, RandomPlacement, RowMajor

    ap = argparse.ArgumentParser()
    ap.add_argument("--efforts", default="20,100", help="anneal efforts (moves per unit) to measure")
    ap.add_argument("--routings", default="dimension-order,balanced", help="routings to measure each placement with")
    ap.add_argument("--seq", type=int, default=128, help="Llama layer sequence length")
    ap.add_argument("--json", default=None)
    ap.add_argument("--plot", default=None, help="write each model's placement maps (anneal) and timeline here")
    args = ap.parse_args()
    fabric = load_fabric("sn40l")
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    print(f"machine: {machine}\n")
    strategies = [RowMajor(), RandomPlacement(seed=0)] + [Anneal(seed=0, effort=float(e)) for e in args.efforts.split(",")]
    results: dict[str, Any] = {"machine": machine, "models": {}}
    for name, build in _models(args.seq).items():
        model, inputs = build()
        with torch.no_grad():
            program = rdu_compiler.compile(model, inputs, fabric="sn40l", opt_level=1)
        module = program.module
        if args.plot:
            from rdu_compiler.tools.plots import write_plots

            stem = "".join(ch if ch.isalnum() else "_" for ch in name.split(" (")[0]).strip("_").lower()
            write_plots(module, fabric, program.report, os.path.join(args.plot, stem))
        per = [measure(module, fabric, s, r) for s in strategies for r in args.routings.split(",")]
        results["models"][name] = per
        n = len(per[0]["sections"])
        fills = ", ".join(f"{r['units']} ({r['fill']:.0%})" for r in per[0]["sections"])
        print(f"{name}: {n} sections, units per section {fills}")
        base = per[0]["traffic_hops"]
        print(f"  {'strategy':24s} {'routing':15s} {'traffic x hops':>15s} {'vs row-major':>12s} {'max link':>10s} {'link util':>9s} "
              f"{'est. time':>10s} {'net-bound':>9s} {'place (s)':>9s} {'max/section':>11s}")
        for r in per:
            print(f"  {r['strategy']:24s} {r['routing']:15s} {r['traffic_hops']:15.3e} {r['traffic_hops'] / base - 1:+12.0%} "
                  f"{r['max_link_bytes'] / 2**20:7.2f} MiB {r['max_link_utilization']:9.0%} "
                  f"{r['estimated_s'] * 1e6:7.1f} us {r['network_bound_sections']:5d}/{n:<3d} {r['place_s']:9.2f} {r['max_place_s']:11.2f}")
        print()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
