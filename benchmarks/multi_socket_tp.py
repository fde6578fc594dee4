"""Llama-3.1-8B decode (HF `LlamaForCausalLM`, BF16, batch 1, 8K context, on the meta device)
compiled with the real tensor-parallel pass: `rdu_compiler.compile(..., tp=N)` runs
`rdu-shard{tp=N}` on the whole 32-layer program, and the node's time is each socket's
sections plus every collective (`cost.node`), plus one sync per call.

Reported per tp: predicted output tokens/s/user = 1 / the node's time for one decode call,
one socket's sections, the collectives (count, seconds), sync, the HBM bytes one socket
moves and that stream's time at the socket's HBM bandwidth (the decode bound), and the
weight bytes left replicated. Beside it, `benchmarks/multi_socket.py`'s estimate (a
Megatron shard of one layer compiled from shapes) for the same case without kernel looping.

    python benchmarks/multi_socket_tp.py [--tp 1 8 16] [--json FILE]

With `--kernel-looping` each tp is compiled once with `kernel_looping=True`
(`rdu-kernel-loop`, `cost.kloop`); the unlooped time is the looped one plus the report's
`kernel_loops.saved_s` (the same sections, the same collectives). Printed per tp: both
tokens/s/user, the share of the aggregate HBM roofline (the tp = 1 program's compulsory
bytes / (tp x one socket's HBM bandwidth): the batch-1 decode bound of tp sockets), each
socket's time split by resource (`report["sockets"]`), and the gap to the paper's 1042 by
resource. `--sweep` adds, at the largest tp, the modelling choices that decide the answer
(re-costed from the compiled program, no recompile): topology x hop latency (the
collectives on a variant of the node spec), the launch cost P + A and the in-loop section
switch R (the cost model is linear in them: step(P, A, R) = step - launch_s + launches
(P + A) + looped launches R). `kernel_looping_figures.py` has the 70B and -O0/-O1 figures.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import torch
from torch import nn

from rdu_compiler.bench.models import hf_llama31_8b_decode

CONTEXT = 8192
FABRIC = {1: "sn40l", 2: "sn40l-node8", 4: "sn40l-node8", 8: "sn40l-node8", 16: "sn40l-rack16"}


PAPER_8B_16 = 1042.0  # Llama 3.1 8B, 16 sockets, BF16, output tokens/s/user [P] (../shared/reference/workloads.md)
SPLIT = ("hbm_s", "compute_s", "network_s", "launch_s", "collectives_s", "sync_s")


def split_of(report: dict[str, Any]) -> dict[str, float]:
    """One socket's time by resource: `report["sockets"][0]` (tp > 1), or the same sums over
    a one-socket program's sections (each section's time less launch to what binds it)."""
    if "sockets" in report:
        return {k: report["sockets"][0][k] for k in SPLIT}
    from rdu_compiler.cost.node import _CATEGORY

    out: dict[str, float] = dict.fromkeys(SPLIT, 0.0)
    for sec in report["sections"]:
        c = sec["cost"]
        out["launch_s"] += c["launch_s"]
        out[_CATEGORY.get(c["bound"], "compute_s")] += c["total_s"] - c["launch_s"]
    return out


def looping_point(tp: int, imported: object, aggregate_roofline_1: float | None, sweep: bool) -> dict[str, Any]:
    """One tp compiled with kernel looping: looped and unlooped figures (module docstring)."""
    from rdu_compiler.api import compile_imported
    from rdu_compiler.fabric import load_fabric

    fabric = FABRIC[tp]
    t0 = time.perf_counter()
    prog = compile_imported(imported, fabric, 1, tp=tp, kernel_looping=True)
    wall = time.perf_counter() - t0
    r, fab = prog.report, load_fabric(fabric)
    kl, looped = r["kernel_loops"], r["totals"]["estimated_s"]
    unlooped = looped + kl["saved_s"]
    roof1 = aggregate_roofline_1 if aggregate_roofline_1 is not None else r["roofline"]["memory_s"]
    roof = roof1 / tp
    split = split_of(r)
    target = 1 / PAPER_8B_16
    out: dict[str, Any] = {
        "tp": tp, "fabric": fabric, "compile_s": round(wall, 1), "loops": kl["count"], "trips": [lp["trips"] for lp in kl["loops"]],
        "sections_per_iteration": [lp["sections_per_iteration"] for lp in kl["loops"]],
        "launches_unlooped": kl["section_launches_unlooped"], "launches_looped": kl["section_launches"],
        "launches_saved": kl["launches_saved"], "saved_s": kl["saved_s"],
        "fill_saved_s": sum(lp["fill_saved_s"] for lp in kl["loops"]),
        "step_unlooped_s": unlooped, "step_looped_s": looped,
        "tokens_per_s_unlooped": 1 / unlooped, "tokens_per_s_looped": 1 / looped,
        "tokens_per_s_looped_fills_not_overlapped": 1 / (looped + sum(lp["fill_saved_s"] for lp in kl["loops"])),
        "aggregate_hbm_roofline_s": roof, "roofline_share_unlooped": roof / unlooped, "roofline_share_looped": roof / looped,
        "split_looped": split, "gap_to_1042_s": looped - target,
        "collectives": len(r.get("collectives", [])), "hbm_bytes_per_socket": r["totals"]["hbm_bytes"],
        "hbm_stream_s": r["totals"]["hbm_bytes"] / fab.hbm.bytes_per_s, "note": kl["note"],
    }
    if sweep:
        out["sweep"] = sweeps(prog, fabric)
    return out


def sweeps(prog: Any, fabric: str) -> dict[str, Any]:
    """The modelling choices that decide the answer, re-costed on the compiled program."""
    import tempfile
    from pathlib import Path

    from rdu_compiler.cost.node import collective_costs
    from rdu_compiler.fabric import load_fabric

    r = prog.report
    t = r["totals"]
    base_coll = t.get("collectives_s", 0.0)
    rows_net = []
    with tempfile.TemporaryDirectory() as tmp:
        for topo in ("ring", "nodes", "full"):
            for hop in (0.25e-6, 0.5e-6, 1e-6, 2e-6):
                path = Path(tmp) / f"v-{topo}-{hop}.toml"
                path.write_text(f'extends = "{fabric}"\n[sockets]\ntopology = "{topo}"\nhop_latency_s = {hop}\n')
                coll = sum(c["seconds"] for c in collective_costs(prog.module, load_fabric(str(path))))
                step = t["estimated_s"] - base_coll + coll
                rows_net.append({"topology": topo, "hop_latency_s": hop, "collectives_s": coll, "step_s": step,
                                 "tokens_per_s": 1 / step})
    fab = load_fabric(fabric)
    kl = r["kernel_loops"]
    n_all, saved = kl["section_launches_unlooped"], kl["launches_saved"]
    unlooped_0 = t["estimated_s"] + kl["saved_s"]
    p0 = fab.program_load_s
    rows_launch = []
    for p_load in (2.5e-6, 5e-6, 10e-6, 20e-6):
        unl = unlooped_0 + n_all * (p_load - p0)  # every section launched: n_all (P + A)
        for sw in (0.0, fab.argument_load_s, p_load + fab.argument_load_s):
            step = t["estimated_s"] - t["launch_s"] + (n_all - saved) * (p_load + fab.argument_load_s) + saved * sw
            rows_launch.append({"program_load_s": p_load, "section_switch_s": sw, "step_looped_s": step,
                                "tokens_per_s_looped": 1 / step, "step_unlooped_s": unl, "tokens_per_s_unlooped": 1 / unl})
    return {"network": rows_net, "launch": rows_launch}


def point(tp: int, imported: object) -> dict[str, object]:
    from rdu_compiler.api import compile_imported
    from rdu_compiler.fabric import load_fabric

    fabric = FABRIC[tp]
    t0 = time.perf_counter()
    prog = compile_imported(imported, fabric, 1, tp=tp)
    wall = time.perf_counter() - t0
    r, fab = prog.report, load_fabric(fabric)
    t = r["totals"]
    from xdsl.dialects import func

    from rdu_compiler.passes.shard_layout import arg_shards

    fn = next(op for op in prog.module.ops if isinstance(op, func.FuncOp))
    kinds = dict(zip(prog.imported.arg_names, prog.imported.arg_kinds, strict=True))
    replicated = 0
    for name, shard in zip(prog.imported.arg_names, arg_shards(fn), strict=True):
        if kinds[name] != "input" and shard is None and tp > 1:
            w = prog.imported.weights[name]
            replicated += w.numel() * w.element_size()
    colls = r.get("collectives", [])
    return {
        "tp": tp, "fabric": fabric, "compile_s": round(wall, 1), "step_s": t["estimated_s"],
        "tokens_per_s": 1 / t["estimated_s"], "sections_s": t.get("socket_sections_s", t["estimated_s"]),
        "collectives": len(colls), "all_reduces": sum(c["op"] == "rdu.all_reduce" for c in colls),
        "collectives_s": t.get("collectives_s", 0.0), "sync_s": t.get("sync_s", 0.0),
        "hbm_bytes_per_socket": t["hbm_bytes"], "hbm_stream_s": t["hbm_bytes"] / fab.hbm.bytes_per_s,
        "launch_s": t["launch_s"], "sections": t["sections"], "replicated_weight_bytes": replicated,
    }


def llama70b_decode(context: int) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """Llama-3.1-70B's shape (hidden 8192, 64 heads, 8 KV heads, MLP 28672, 80 layers, vocab
    128256) decoding one token after `context`, built with the project's builder
    (`bench.models.llama_model`, RoPE tables as inputs) on the meta device: HF's
    LlamaForCausalLM at 80 layers imports too slowly on this machine."""
    from rdu_compiler.bench.models import LayerShape, llama_model

    shape = LayerShape(hidden=8192, heads=64, kv_heads=8, mlp=28672, seq=1, past=context)
    return llama_model(shape, 80, 128256)


def levels_point(seq: int, past: int, layers: int, tp: int) -> list[dict[str, Any]]:
    """Llama-2-7B (builder, meta, BF16) at -O0 and -O1 (and -O1 with kernel looping) on tp sockets."""
    from rdu_compiler.api import compile_imported, import_model
    from rdu_compiler.bench.models import LayerShape, llama_model

    model, inputs = llama_model(LayerShape(seq=seq, past=past), layers, 32000)
    imported = import_model(model, inputs)
    out = []
    for level, looping in ((0, False), (1, False), (1, True)):
        t0 = time.perf_counter()
        prog = compile_imported(imported, FABRIC[tp], level, tp=tp, kernel_looping=looping)
        r = prog.report
        kl = r.get("kernel_loops", {})
        out.append({"phase": "prefill" if past == 0 else "decode", "seq": seq, "past": past, "layers": layers, "tp": tp,
                    "opt_level": level, "kernel_looping": looping, "step_s": r["totals"]["estimated_s"],
                    "sections": r["totals"]["sections"], "launches": kl.get("section_launches", r["totals"]["sections"]),
                    "launch_s": r["totals"]["launch_s"], "split": split_of(r), "roofline_fraction": r["roofline_fraction"],
                    "compile_s": round(time.perf_counter() - t0, 1)})
        print(json.dumps(out[-1]), flush=True)
    return out


def print_looping(rows: list[dict[str, Any]]) -> None:
    """The looped / unlooped table, the split by resource, and the sweeps, as markdown."""
    ms = 1e3
    print("| tp | loops (trips x sections) | launches | tokens/s/user unlooped | looped | looped, fills not overlapped "
          "| % of aggregate HBM roofline (unlooped / looped) |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for x in rows:
        body = ", ".join(f"{t} x {k}" for t, k in zip(x["trips"], x["sections_per_iteration"], strict=True)) or "0 loops"
        print(f"| {x['tp']} | {body} | {x['launches_unlooped']} -> {x['launches_looped']} | "
              f"{x['tokens_per_s_unlooped']:.0f} | {x['tokens_per_s_looped']:.0f} | "
              f"{1 / (x['step_looped_s'] + x['fill_saved_s']):.0f} | "
              f"{x['roofline_share_unlooped'] * 100:.0f} % / {x['roofline_share_looped'] * 100:.0f} % |")
    print("\n| tp | step (looped) | HBM | compute | on-chip network | launch | collectives | sync | aggregate roofline "
          "| gap to 1/1042 = 0.96 ms |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for x in rows:
        sp = x["split_looped"]
        print(f"| {x['tp']} | {x['step_looped_s'] * ms:.2f} ms | " + " | ".join(f"{sp[k] * ms:.2f}" for k in SPLIT)
              + f" | {x['aggregate_hbm_roofline_s'] * ms:.2f} | {x['gap_to_1042_s'] * ms:+.2f} ms |")
    for x in rows:
        sw = x.get("sweep")
        if not sw:
            continue
        print(f"\nsweep at tp = {x['tp']} (looped): topology x hop latency")
        print("| topology | hop | collectives | tokens/s/user |\n|---|---:|---:|---:|")
        for r in sw["network"]:
            print(f"| {r['topology']} | {r['hop_latency_s'] * 1e6:.2f} µs | {r['collectives_s'] * ms:.2f} ms | "
                  f"{r['tokens_per_s']:.0f} |")
        print("| program load P | switch R | tokens/s/user unlooped | looped |\n|---:|---:|---:|---:|")
        for r in sw["launch"]:
            print(f"| {r['program_load_s'] * 1e6:.1f} µs | {r['section_switch_s'] * 1e6:.1f} µs | "
                  f"{r['tokens_per_s_unlooped']:.0f} | {r['tokens_per_s_looped']:.0f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tp", type=int, nargs="+", default=[1, 8, 16])
    p.add_argument("--json", default=None)
    p.add_argument("--kernel-looping", action="store_true", help="looped and unlooped figures per tp (module docstring)")
    p.add_argument("--sweep", action="store_true", help="with --kernel-looping: the modelling-choice sweeps at the largest tp")
    p.add_argument("--model", choices=("8b", "70b", "7b-levels"), default="8b",
                   help="8b: HF Llama-3.1-8B decode; 70b: Llama-3.1-70B decode at tp 16 (looped); 7b-levels: "
                        "Llama-2-7B prefill and decode at -O0 / -O1 on 8 sockets")
    p.add_argument("--layers", type=int, default=32, help="7b-levels: decoder layers (32: the whole model)")
    args = p.parse_args()
    from rdu_compiler.api import import_model

    if args.model == "7b-levels":
        rows7 = levels_point(4096, 0, args.layers, 8) + levels_point(1, 4096, args.layers, 8)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(rows7, f, indent=2)
        return
    model, inputs = llama70b_decode(CONTEXT) if args.model == "70b" else hf_llama31_8b_decode(CONTEXT)
    t0 = time.perf_counter()
    imported = import_model(model, inputs)
    print(f"import {time.perf_counter() - t0:.1f} s", flush=True)
    if args.kernel_looping or args.model == "70b":
        rows_l: list[dict[str, Any]] = []
        roof1 = None
        tps = sorted(args.tp) if args.model == "8b" else [16]
        if args.model == "70b":  # the batch-1 bound: weights streamed (embedding: one row) + KV, over 16 sockets [D]
            from rdu_compiler.bench.models import LlamaSpec
            from rdu_compiler.fabric import load_fabric

            spec = LlamaSpec("llama3.1-70b", 8192, 64, 8, 28672, 80, 128256)
            roof1 = (spec.streamed_bytes + spec.kv_bytes(CONTEXT)) / load_fabric("sn40l").hbm.bytes_per_s
        for tp in tps:
            rows_l.append(looping_point(tp, imported, roof1, args.sweep and tp == tps[-1]))
            if tp == 1:
                roof1 = rows_l[-1]["aggregate_hbm_roofline_s"]
            print(json.dumps(rows_l[-1]), flush=True)
        print_looping(rows_l)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(rows_l, f, indent=2)
        return
    rows = []
    for tp in args.tp:
        rows.append(point(tp, imported))
        print(json.dumps(rows[-1]), flush=True)
    print("| tp | fabric | tokens/s/user | step | one socket's sections | HBM stream | collectives (all-reduces) "
          "| collectives | sync | launch | weights left replicated |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for x in rows:
        print(f"| {x['tp']} | {x['fabric']} | {x['tokens_per_s']:.0f} | {x['step_s'] * 1e3:.2f} ms | "
              f"{x['sections_s'] * 1e3:.2f} ms | {x['hbm_stream_s'] * 1e3:.2f} ms | {x['collectives']} ({x['all_reduces']}) | "
              f"{x['collectives_s'] * 1e3:.2f} ms | {x['sync_s'] * 1e6:.0f} µs | {x['launch_s'] * 1e3:.2f} ms | "
              f"{x['replicated_weight_bytes'] / 1e9:.2f} GB |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
