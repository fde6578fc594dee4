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

**tp x pp** (`rdu-shard{tp=T}` then `rdu-pipeline{pp=P}`): stage s runs on sockets
s T .. s T + T - 1, every socket of it the same SPMD program, so

    t_s = sections_s + collectives_s + sends_s

with collectives_s its all-reduces / all-gathers costed as `cost.node` does for tp alone
(`cost.collectives.all_reduce` over a group of T). On the rack's ring a stage's T sockets
are a contiguous run, a chain, not a ring: the formula still holds because the links are
full duplex, and a reduce-scatter on a chain (partial sums flowing in from both ends, the
link i -> i+1 carrying T - 1 - i shards) takes T - 1 steps of one hop with at most
(T - 1) M/T bytes per link direction, as on a ring; the all-gather is its mirror. The
stages' chains share no link (the boundary links carry only the sends), so stages running
different micro-batches at once do not contend. Each
send `group_send`: the T ranks sending to the T ranks of the next stage at once, rank r to
rank r, with the links they share (on a ring of T P sockets the boundary link carries all
T transfers). T = sum_s t_s + (M - 1) max_s t_s + sync_s (one node synchronisation per
call, as tp alone pays; a pp-only program pays none, as before). `report["collectives"]`
lists every stage's collectives (with `stage`), `report["sockets"]` each socket's stage,
rank and times.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from xdsl.dialects.builtin import IntegerAttr, ModuleOp

from rdu_compiler.cost.analysis import build_report
from rdu_compiler.cost.collectives import CollectiveCost, send_recv
from rdu_compiler.cost.node import collective_costs
from rdu_compiler.dialects import rdu
from rdu_compiler.errors import RduError
from rdu_compiler.fabric import Fabric
from rdu_compiler.fabric.node import NodeSpec
from rdu_compiler.kernel.traffic import itemsize
from rdu_compiler.passes.rdu_pipeline import MICROBATCHES_ATTR, pp_problem
from rdu_compiler.passes.shard_layout import module_tp
from rdu_compiler.passes.shard_vocab import tp_notes

#: totals summed over the stages (bytes, FLOPs and counts of one micro-batch)
_SUMMED = ("sections", "kernels", "flops", "hbm_bytes", "ddr_bytes", "traffic_hop_bytes")


def check_pp(fab: Fabric, pp: int, microbatches: int, tp: int = 1, sockets: int | None = None) -> None:
    """Refuse pipeline stages the fabric cannot hold: with tp, pp stages of tp sockets each
    need tp x pp sockets, of the node and of `sockets` (the sockets the program may use,
    at most the node's; more than tp x pp is allowed, the rest stay idle).

    Raises:
        RduError: the reason (`passes.rdu_pipeline.pp_problem`), or `sockets` < tp x pp.
    """
    problem = pp_problem(fab, pp, microbatches, tp)
    if problem:
        raise RduError(problem)
    if pp > 1 and sockets is not None and sockets > fab.node.sockets:
        raise RduError(f"--sockets {sockets} exceeds the {fab.node.sockets} socket(s) of fabric '{fab.name}' "
                       "([sockets].count); pass at most that, or a fabric with more sockets (sn40l-rack16)")
    if pp > 1 and sockets is not None and sockets < tp * pp:
        raise RduError(f"--sockets {sockets} is fewer than tp x pp = {tp} x {pp} = {tp * pp}: each of the {pp} pipeline "
                       f"stages runs on its own {tp} socket(s); pass --sockets {tp * pp} or more (at most the node's "
                       f"{fab.node.sockets}), or a smaller tp or pp")


def group_send(node: NodeSpec, nbytes: float, src_stage: int, dst_stage: int, tp: int = 1) -> CollectiveCost:
    """Stage `src_stage` sending `nbytes` per socket to `dst_stage`, every rank r at once:
    socket `src_stage * tp + r` to `dst_stage * tp + r` (tp = 1: one `send_recv`).

    Each transfer takes the shortest way round a ring (ties: ascending socket numbers; on
    `full`, its own direct link). The T transfers run concurrently, so
    seconds = max hops x a + max link load x nbytes / B, the load of a link (each
    direction apart) being how many of the transfers cross it: on a ring the T paths of a
    stage boundary overlap (for adjacent stages the link between them carries all T, so
    the transfer part is T nbytes / B); on `full` each has its own link (nbytes / B).

    Raises:
        ValueError: a socket outside the node.
    """
    if tp == 1:
        return send_recv(node, nbytes, src_stage, dst_stage)
    pairs = [(src_stage * tp + r, dst_stage * tp + r) for r in range(tp)]
    for pair in pairs:
        send_recv(node, 0, *pair)  # the bounds check
    n, hops, load = node.sockets, 0, Counter()
    for a, b in pairs:
        hops = max(hops, node.hops(a, b))
        if node.topology in ("full", "nodes"):  # nodes: a 2-hop path goes a -> (a's node, b's index) -> b,
            load[(a, b)] += 1                   # so the T paths share no link
            continue
        up = (b - a) % n
        step, length = (1, up) if up <= n - up else (-1, n - up)
        for k in range(length):
            x = (a + step * k) % n
            load[(x, step)] += 1  # the link leaving socket x in direction step
    latency = hops * node.hop_latency_s
    transfer = max(load.values(), default=0) * nbytes / node.link_bytes_per_s
    return CollectiveCost(latency + transfer, f"p2p x {tp}", latency, transfer)


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
    p, tp = len(programs), module_tp(module)
    if p * tp > node.sockets:
        raise RduError(f"the program has {p} pipeline stages of {tp} socket(s) but fabric '{fabric.name}' has "
                       f"{node.sockets} socket(s); compile with tp x pp <= sockets, or for a multi-socket fabric "
                       "(sn40l-node8, sn40l-rack16)")
    attr = module.attributes.get(MICROBATCHES_ATTR)
    m = attr.value.data if isinstance(attr, IntegerAttr) else 1
    stages, sections, kinds = [], [], Counter()
    for s, fn in programs:
        rep = build_report(module, fabric, opt_level, fn=fn)
        collectives = [{**c, "stage": s} for c in collective_costs(module, fabric, fn)] if tp > 1 else []
        coll_s = sum(c["seconds"] for c in collectives)
        transfers = []
        for op in fn.body.block.ops:
            if isinstance(op, rdu.SendOp):
                nbytes = math.prod(rdu.shape_of(op.value.type)) * itemsize(op.value.type)
                c = group_send(node, nbytes, s, op.peer.value.data, tp)
                transfers.append({"channel": op.channel.value.data, "to_stage": op.peer.value.data, "bytes": nbytes,
                                  "seconds": c.seconds, "latency_s": c.latency_s, "transfer_s": c.transfer_s})
        send_s = sum(t["seconds"] for t in transfers)
        stages.append({"stage": s, "socket": s * tp, "sockets": list(range(s * tp, s * tp + tp)),
                       "function": fn.sym_name.data, "sections_s": rep["totals"]["estimated_s"],
                       "collectives_s": coll_s, "collectives": collectives,
                       "send_s": send_s, "time_s": rep["totals"]["estimated_s"] + coll_s + send_s, "transfers": transfers,
                       "roofline_s": rep["roofline"]["bound_s"], "totals": rep["totals"]})
        for sec in rep["sections"]:
            sections.append({**sec, "name": f"stage{s}/{sec['name']}", "stage": s})
        kinds.update(rep["totals"]["kernel_kinds"])
    step_s, bubble = pipeline_time([st["time_s"] for st in stages], m)
    sync_s = node.sync_s if tp > 1 else 0.0  # a tp x pp call ends with one node synchronisation, as tp alone
    roof_s, _ = pipeline_time([st["roofline_s"] for st in stages], m)
    totals: dict[str, Any] = {k: sum(st["totals"].get(k, 0) for st in stages) for k in _SUMMED}
    totals.update({
        "kernel_kinds": dict(kinds),
        "hbm_peak_bytes": max(st["totals"]["hbm_peak_bytes"] for st in stages),
        "ddr_peak_bytes": max(st["totals"]["ddr_peak_bytes"] for st in stages),
        "max_link_bytes": max(st["totals"]["max_link_bytes"] for st in stages),
        "estimated_s": step_s + sync_s,
        "launch_s": pipeline_time([st["totals"]["launch_s"] for st in stages], m)[0],  # the launches on T's path
    })
    for st in stages:
        del st["totals"]
    slowest = max(stages, key=lambda st: st["time_s"])
    out: dict[str, Any] = {
        "fabric": {"name": fabric.name, "pcus": fabric.num_pcus, "pmus": fabric.num_pmus, "source": fabric.source},
        "opt_level": opt_level,
        "sections": sections,
        "totals": totals,
        "roofline": {"bound_s": roof_s, "bound": "per-stage roofline, pipelined", "formula": "sum + (M - 1) max"},
        "roofline_fraction": roof_s / (step_s + sync_s) if step_s else 0.0,
        "pipeline": {
            "stages": stages,
            "pp": p,
            "tp": tp,
            "microbatches": m,
            "sync_s": sync_s,
            "collectives_s": sum(st["collectives_s"] for st in stages),  # of one micro-batch, every stage
            "step_s": step_s,
            "per_microbatch_s": step_s / m,
            "microbatches_per_s": m / step_s if step_s else 0.0,
            "slowest_stage": slowest["stage"],
            "bubble_fraction": bubble,
            "bubble_equal_stages": (p - 1) / (m + p - 1),
            "formula": ("T = sum_s t_s + (M - 1) max_s t_s (+ sync_s with tp > 1); t_s = sections_s + collectives_s "
                        "+ sends_s; bubble = 1 - M sum_s t_s / (p T)"),
        },
    }
    if tp > 1:  # tp x pp: the node's collectives and each socket's share, as cost.node gives tp alone
        out["collectives"] = [c for st in stages for c in st["collectives"]]
        out["tp_notes"] = tp_notes(module)
        out["sockets"] = [{"socket": st["stage"] * tp + r, "stage": st["stage"], "rank": r,
                           "sections_s": st["sections_s"], "collectives_s": st["collectives_s"],
                           "send_s": st["send_s"], "time_s": st["time_s"]} for st in stages for r in range(tp)]
    return out


def node_report(report: dict[str, Any], fabric: Fabric) -> dict[str, Any]:
    """`report["node"]` of a pipelined program: the sockets it uses and one line per stage."""
    pipe = report["pipeline"]
    tp = pipe.get("tp", 1)
    per_stage = ", ".join(f"stage {st['stage']} {st['time_s'] * 1e6:.3g} us" for st in pipe["stages"])
    used = pipe["pp"] * tp
    each = f" of {tp} tensor-parallel sockets each" if tp > 1 else ""
    return {
        "sockets": fabric.node.sockets, "sockets_used": used, "topology": fabric.node.topology,
        "note": (f"pipeline parallel: {pipe['pp']} stages{each} on sockets 0..{used - 1}, {pipe['microbatches']} "
                 f"micro-batch(es) per call; per micro-batch {per_stage}; bubble {pipe['bubble_fraction'] * 100:.1f}% "
                 "(estimated time = one call of all micro-batches)"),
    }
