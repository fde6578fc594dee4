"""The cost of a pipelined program (`rdu-pipeline`): stage times, transfers, the bubble.

Stage s runs on socket s. One micro-batch (the compiled shape) costs, on stage s,

    t_s = sections_s + sends_s

where sections_s is the stage program's sections as on one socket (`cost.analysis`,
unchanged) and sends_s the sum of its `rdu.send`s, each `cost.collectives.send_recv`:
hops(s, peer) x hop latency + bytes / link bandwidth. A transfer goes AGCU to AGCU over
the inter-RDU link without staging through HBM (SN40L §III), so it adds no HBM time; the
sending section's store and the receiving section's load of the tensor are the ones any
section boundary has, already in sections_s. Sends are not overlapped with the stage's
own sections [NF: the conservative choice; the stage's sections end before its outputs
exist].

M micro-batches in the fill-drain (GPipe) order take

    T = sum_s t_s + (M - 1) max_s t_s

(the first micro-batch crosses every stage, each later one leaves the slowest stage one
t_max after the previous). With p equal stages t, T = (M + p - 1) t, and the bubble, the
share of the p sockets' time T they idle, is (p - 1) / (M + p - 1); in general
bubble = 1 - M sum_s t_s / (p T). `cost.collectives.pipeline_bubble` is the same idle time
relative to the busy time, (p - 1) / M.

`report["totals"]["estimated_s"]` is T (the node's time for one call of M micro-batches);
`report["pipeline"]` holds each stage's time, its transfers and the bubble.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from xdsl.dialects.builtin import IntegerAttr, ModuleOp

from rdu_compiler.cost.analysis import build_report
from rdu_compiler.cost.collectives import send_recv
from rdu_compiler.dialects import rdu
from rdu_compiler.errors import RduError
from rdu_compiler.fabric import Fabric
from rdu_compiler.kernel.traffic import itemsize
from rdu_compiler.passes.rdu_pipeline import MICROBATCHES_ATTR, pp_problem

#: totals summed over the stages (bytes, FLOPs and counts of one micro-batch)
_SUMMED = ("sections", "kernels", "flops", "hbm_bytes", "ddr_bytes", "traffic_hop_bytes")


def check_pp(fab: Fabric, pp: int, microbatches: int, tp: int = 1) -> None:
    """Refuse pipeline stages the fabric cannot hold, or pp combined with tp (not wired yet).

    Raises:
        RduError: the reason (`passes.rdu_pipeline.pp_problem`), or tp > 1 with pp > 1.
    """
    problem = pp_problem(fab, pp, microbatches)
    if problem:
        raise RduError(problem)
    if pp > 1 and tp > 1:
        raise RduError(f"tp={tp} with pp={pp}: tensor and pipeline parallelism are not composed yet (each works "
                       "alone); compile with one of them")


def pipeline_time(stage_s: list[float], microbatches: int) -> tuple[float, float]:
    """(T, bubble) of `microbatches` micro-batches over stages of `stage_s` seconds each
    (module docstring): T = sum + (M - 1) max; bubble = 1 - M sum / (p T).

    Raises:
        ValueError: no stage, or microbatches < 1.
    """
    if not stage_s or microbatches < 1:
        raise ValueError(f"need >= 1 stage and >= 1 micro-batch, got {len(stage_s)} and {microbatches}")
    total = sum(stage_s) + (microbatches - 1) * max(stage_s)
    busy = microbatches * sum(stage_s)
    return total, (1 - busy / (len(stage_s) * total)) if total else 0.0


def pipeline_report(module: ModuleOp, fabric: Fabric, opt_level: int) -> dict[str, Any]:
    """The compile report of a pipelined module: every stage's sections (named
    `stage<s>/<section>`, with `stage`), totals over the stages with `estimated_s` = T,
    and `pipeline` (module docstring). The roofline is the same formula over each stage's
    roofline bound.

    Raises:
        RduError: more stages than the fabric's sockets.
    """
    programs = rdu.stage_programs(module)
    node = fabric.node
    p = len(programs)
    if p > node.sockets:
        raise RduError(f"the program has {p} pipeline stages but fabric '{fabric.name}' has {node.sockets} socket(s); "
                       "compile with pp <= sockets, or for a multi-socket fabric (sn40l-node8, sn40l-rack16)")
    attr = module.attributes.get(MICROBATCHES_ATTR)
    m = attr.value.data if isinstance(attr, IntegerAttr) else 1
    stages, sections, kinds = [], [], Counter()
    for s, fn in programs:
        rep = build_report(module, fabric, opt_level, fn=fn)
        transfers = []
        for op in fn.body.block.ops:
            if isinstance(op, rdu.SendOp):
                nbytes = math.prod(rdu.shape_of(op.value.type)) * itemsize(op.value.type)
                c = send_recv(node, nbytes, s, op.peer.value.data)
                transfers.append({"channel": op.channel.value.data, "to_stage": op.peer.value.data, "bytes": nbytes,
                                  "seconds": c.seconds, "latency_s": c.latency_s, "transfer_s": c.transfer_s})
        send_s = sum(t["seconds"] for t in transfers)
        stages.append({"stage": s, "socket": s, "function": fn.sym_name.data, "sections_s": rep["totals"]["estimated_s"],
                       "send_s": send_s, "time_s": rep["totals"]["estimated_s"] + send_s, "transfers": transfers,
                       "roofline_s": rep["roofline"]["bound_s"], "totals": rep["totals"]})
        for sec in rep["sections"]:
            sections.append({**sec, "name": f"stage{s}/{sec['name']}", "stage": s})
        kinds.update(rep["totals"]["kernel_kinds"])
    step_s, bubble = pipeline_time([st["time_s"] for st in stages], m)
    roof_s, _ = pipeline_time([st["roofline_s"] for st in stages], m)
    totals: dict[str, Any] = {k: sum(st["totals"].get(k, 0) for st in stages) for k in _SUMMED}
    totals.update({
        "kernel_kinds": dict(kinds),
        "hbm_peak_bytes": max(st["totals"]["hbm_peak_bytes"] for st in stages),
        "ddr_peak_bytes": max(st["totals"]["ddr_peak_bytes"] for st in stages),
        "max_link_bytes": max(st["totals"]["max_link_bytes"] for st in stages),
        "estimated_s": step_s,
        "launch_s": pipeline_time([st["totals"]["launch_s"] for st in stages], m)[0],  # the launches on T's path
    })
    for st in stages:
        del st["totals"]
    slowest = max(stages, key=lambda st: st["time_s"])
    return {
        "fabric": {"name": fabric.name, "pcus": fabric.num_pcus, "pmus": fabric.num_pmus, "source": fabric.source},
        "opt_level": opt_level,
        "sections": sections,
        "totals": totals,
        "roofline": {"bound_s": roof_s, "bound": "per-stage roofline, pipelined", "formula": "sum + (M - 1) max"},
        "roofline_fraction": roof_s / step_s if step_s else 0.0,
        "pipeline": {
            "stages": stages,
            "pp": p,
            "microbatches": m,
            "step_s": step_s,
            "per_microbatch_s": step_s / m,
            "microbatches_per_s": m / step_s if step_s else 0.0,
            "slowest_stage": slowest["stage"],
            "bubble_fraction": bubble,
            "bubble_equal_stages": (p - 1) / (m + p - 1),
            "formula": "T = sum_s t_s + (M - 1) max_s t_s; t_s = sections_s + sends_s; bubble = 1 - M sum_s t_s / (p T)",
        },
    }


def node_report(report: dict[str, Any], fabric: Fabric) -> dict[str, Any]:
    """`report["node"]` of a pipelined program: the sockets it uses and one line per stage."""
    pipe = report["pipeline"]
    per_stage = ", ".join(f"stage {st['stage']} {st['time_s'] * 1e6:.3g} us" for st in pipe["stages"])
    return {
        "sockets": fabric.node.sockets, "sockets_used": pipe["pp"], "topology": fabric.node.topology,
        "note": (f"pipeline parallel: {pipe['pp']} stages on sockets 0..{pipe['pp'] - 1}, {pipe['microbatches']} "
                 f"micro-batch(es) per call; per micro-batch {per_stage}; bubble {pipe['bubble_fraction'] * 100:.1f}% "
                 "(estimated time = one call of all micro-batches)"),
    }
