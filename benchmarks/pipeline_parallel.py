"""Pipeline parallelism on a Llama-2-7B-shaped decode step (issue 13): throughput and bubble.

`python benchmarks/pipeline_parallel.py [--layers 32] [--pp 1 2 4 8] [--microbatches 1 4 8 16]`

TP x PP: `python benchmarks/pipeline_parallel.py --fabric sn40l-rack16 --configs 16x1 8x2 4x4`
compiles each `TxP` with `tp=T, pp=P` (P stages of T tensor-parallel sockets, T P sockets;
`cost.pipeline`). A tp-only point (P = 1) serves M micro-batches as M calls one after the
other (T = M x its call), a pipeline as one call of M (sum + (M - 1) max + one sync).

The model is `bench.models.llama_model` (hidden 4096, 32 heads, MLP 11008, vocab 32000, BF16,
meta tensors: shapes only), one decode step at 4K context, batch 1 per micro-batch. It is
imported once and compiled for `sn40l-node8` at each pp (`rdu-pipeline`); the micro-batch
count does not change the compiled stage programs (the example inputs are one micro-batch),
only the pipeline time, so each pp is compiled once and `cost.pipeline.pipeline_time` gives
T for every M from the stage times of that compile. All figures are the cost model's.
"""

from __future__ import annotations

import argparse
import re
import time

import rdu_compiler
from rdu_compiler.bench.models import LLAMA2_7B_DECODE, llama_model
from rdu_compiler.cost.pipeline import pipeline_time


def main() -> None:
    ap = argparse.ArgumentParser(description="Pipeline parallelism on a Llama-2-7B-shaped decode step")
    ap.add_argument("--layers", type=int, default=32)
    ap.add_argument("--pp", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--microbatches", type=int, nargs="+", default=[1, 4, 8, 16])
    ap.add_argument("--fabric", default="sn40l-node8")
    ap.add_argument("--configs", nargs="+", default=None, metavar="TxP",
                    help="tp x pp points (e.g. 16x1 8x2 4x4); replaces --pp")
    args = ap.parse_args()
    if args.configs:
        _tp_pp(args)
        return
    model, inputs = llama_model(LLAMA2_7B_DECODE, layers=args.layers, vocab=32000)
    t0 = time.perf_counter()
    imported = rdu_compiler.import_model(model, inputs)
    print(f"import: {time.perf_counter() - t0:.1f} s")
    print("| pp | M | stage times (per micro-batch) | slowest | sends | T (one call) | tokens/s (all M) | tokens/s/user | bubble |")
    print("|---:|---:|---|---:|---:|---:|---:|---:|---:|")
    for pp in args.pp:
        t0 = time.perf_counter()
        program = rdu_compiler.compile_imported(imported, fabric=args.fabric, pp=pp)
        wall = time.perf_counter() - t0
        print(f"(pp={pp}: decoder layers per stage, by the weights each stage holds: {_layers(program, imported)})")
        if pp == 1:
            stage_s, sends = [program.report["totals"]["estimated_s"]], 0.0
        else:
            stages = program.report["pipeline"]["stages"]
            stage_s = [st["time_s"] for st in stages]
            sends = max(st["send_s"] for st in stages)
        shown = ", ".join(f"{t * 1e3:.2f}" for t in stage_s)
        for m in args.microbatches:
            total, bubble = pipeline_time(stage_s, m)
            print(f"| {pp} | {m} | {shown} ms | {max(stage_s) * 1e3:.2f} ms | {sends * 1e6:.1f} us | {total * 1e3:.2f} ms "
                  f"| {m / total:.0f} | {1 / total:.0f} | {bubble * 100:.1f} % |")
        print(f"(pp={pp}: compile {wall:.1f} s)")


def _tp_pp(args: argparse.Namespace) -> None:
    """The TxP table (module docstring): per point the stage times (sections + collectives
    + sends, per micro-batch), the per-socket HBM footprint and T for each M."""
    points = [tuple(int(x) for x in c.lower().split("x")) for c in args.configs]
    model, inputs = llama_model(LLAMA2_7B_DECODE, layers=args.layers, vocab=32000)
    t0 = time.perf_counter()
    imported = rdu_compiler.import_model(model, inputs)
    print(f"import: {time.perf_counter() - t0:.1f} s")
    print("| tp x pp | M | stage time (per micro-batch) | of it collectives | sends | HBM / socket | T (M micro-batches) "
          "| tokens/s (all M) | tokens/s/user | bubble |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    parts: list[tuple[int, int, tuple[list[tuple[float, float, float]], float]]] = []
    for tp, pp in points:
        t0 = time.perf_counter()
        program = rdu_compiler.compile_imported(imported, fabric=args.fabric, tp=tp, pp=pp)
        wall = time.perf_counter() - t0
        rep = program.report
        hbm = rep["totals"]["hbm_peak_bytes"]
        if pp == 1:
            call = rep["totals"]["estimated_s"]
            stage_s, coll, sends, sync = [call], [rep["totals"].get("collectives_s", 0.0)], 0.0, 0.0
        else:
            stages = rep["pipeline"]["stages"]
            stage_s = [st["time_s"] for st in stages]
            coll = [st["collectives_s"] for st in stages]
            sends = max(st["send_s"] for st in stages)
            sync = rep["pipeline"]["sync_s"]
        shown = ", ".join(f"{t * 1e3:.2f}" for t in stage_s)
        for m in args.microbatches:
            total, bubble = (m * stage_s[0], 0.0) if pp == 1 else pipeline_time(stage_s, m)
            total += sync
            print(f"| {tp} x {pp} | {m} | {shown} ms | {max(coll) * 1e3:.2f} ms | {sends * 1e6:.1f} us "
                  f"| {hbm / 2**30:.2f} GiB | {total * 1e3:.2f} ms | {m / total:.0f} | {1 / total:.0f} | {bubble * 100:.1f} % |")
        print(f"({tp} x {pp}: compile {wall:.1f} s; tp notes: {rep.get('tp_notes', [])})")
        parts.append((tp, pp, _parts(rep, pp)))
    m_max = max(args.microbatches)
    print("\nThe inter-RDU hop latency (the preset's [NF] choice) swept: T scaled from the same compiles, "
          "each collective's and send's latency part times the factor, bandwidth parts kept.")
    print(f"| hop latency x | {' | '.join(f'{t} x {p} M=1 / M={m_max} (tokens/s/user / all)' for t, p, _ in parts)} |")
    print("|---:|" + "---|" * len(parts))
    for scale in (0.25, 0.5, 1.0, 2.0, 4.0):
        cells = []
        for _, pp, (stages, sync) in parts:
            t_s = [sec + lat * scale + xfer for sec, lat, xfer in stages]
            totals = [(m * t_s[0] if pp == 1 else pipeline_time(t_s, m)[0]) + (m if pp == 1 else 1) * sync
                      for m in (1, m_max)]
            cells.append(f"{1 / totals[0]:.0f} / {m_max / totals[1]:.0f}")
        print(f"| {scale:g} | {' | '.join(cells)} |")


def _parts(rep: dict, pp: int) -> tuple[list[tuple[float, float, float]], float]:
    """Per stage (sections, latency part, bandwidth part of its collectives and sends), and
    the call's sync (a tp-only point: one stage, its sync paid per call)."""
    if pp == 1:
        t = rep["totals"]
        colls = rep.get("collectives", [])
        lat, xfer = sum(c["latency_s"] for c in colls), sum(c["transfer_s"] for c in colls)
        return [(t.get("socket_sections_s", t["estimated_s"]), lat, xfer)], t.get("sync_s", 0.0)
    out = []
    for st in rep["pipeline"]["stages"]:
        moves = [*st["collectives"], *st["transfers"]]
        out.append((st["sections_s"], sum(c["latency_s"] for c in moves), sum(c["transfer_s"] for c in moves)))
    return out, rep["pipeline"]["sync_s"]


def _layers(program: object, imported: object) -> str:
    """Each stage's decoder layers, from the layer weights it takes ("3-7.5" = layers 3 to 7
    and layer 8's attention half); the embedding and LM head are named when a stage holds them."""
    from xdsl.dialects import func

    names = imported.arg_names  # type: ignore[attr-defined]
    out = []
    for fn in (op for op in program.module.ops if isinstance(op, func.FuncOp)):  # type: ignore[attr-defined]
        attr = fn.attributes.get("rdu.args")
        held = [names[i] for i in attr.get_values()] if attr is not None else names  # type: ignore[attr-defined]
        layers: dict[int, set[str]] = {}
        for n in held:
            m = re.match(r"p_layers_(\d+)_(\w+)_weight", n)
            if m:
                layers.setdefault(int(m.group(1)), set()).add(m.group(2))
        full = sorted(i for i, w in layers.items() if len(w) == 9)
        parts = [f"{full[0]}-{full[-1]}" if full else ""]
        parts += [f"+{i}{'(attn)' if 'q_proj' in w else '(mlp)'}" for i, w in sorted(layers.items()) if len(w) < 9]
        parts += [e for e in ("embed", "lm_head") if f"p_{e}_weight" in held]
        out.append(" ".join(p for p in parts if p))
    return "; ".join(out)


if __name__ == "__main__":
    main()
