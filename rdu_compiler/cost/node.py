"""The node's time for a tensor-parallel program: each socket's sections plus the collectives.

`rdu-shard{tp=N}` makes one program every socket runs on its shard, so every socket has
the same sections (costed as today by `cost.model` on one socket's fabric). Between
sections the program exchanges data with `rdu.all_reduce` / `rdu.all_gather`, costed by
`cost.collectives` on the node's spec (`fabric/node.py`):

- all-reduce of M bytes per socket over a group of N: ring T = 2(N-1) a + 2(N-1)(M/N)/B,
  direct (topology `full`) T = 2a + 2(M/N)/B, the cheaper one;
- all-gather of a shard of S bytes: ring (N-1) a + (N-1) S/B, direct a + S/B;
- `rdu.shard`: 0 s (each socket slices its own copy);

with a the hop latency and B one link's bandwidth. A call pays one cross-socket
synchronisation `sync_s` (at its end: the sockets agree the call is done).

node time = sum(section total_s) + sum(collective seconds) + sync_s.

Modelling choice [NF]: a collective does not overlap the sections around it (a section
runs to completion and stores its results before the exchange; SN40L streams peer data
AGCU to AGCU, so an overlapped schedule would be faster: this is an upper bound on the
collectives' share).

Per-socket split (`report["sockets"]`): each section's time minus its launch goes to the
resource that binds it (compute: PCU compute or PMU; hbm: HBM, DDR or AGCU; network: the
on-chip network), launches to `launch_s`, plus `collectives_s` and `sync_s`.
"""

from __future__ import annotations

import math
from typing import Any

from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp

from rdu_compiler.cost.collectives import all_gather, all_reduce
from rdu_compiler.dialects import rdu
from rdu_compiler.errors import RduError
from rdu_compiler.fabric import Fabric
from rdu_compiler.kernel.traffic import itemsize
from rdu_compiler.passes.shard_layout import module_tp
from rdu_compiler.passes.shard_vocab import tp_notes

_CATEGORY = {"compute": "compute_s", "pmu": "compute_s", "hbm": "hbm_s", "ddr": "hbm_s", "agcu": "hbm_s",
             "network": "network_s"}


def collective_costs(module: ModuleOp, fabric: Fabric, fn: func.FuncOp | None = None) -> list[dict[str, Any]]:
    """One entry per collective in program order: op, sections before it (`after_sections`),
    bytes per socket, algorithm, seconds (`latency_s` + `transfer_s`); of `fn` (a stage
    program of a tp x pp module) or the module's function."""
    fn = fn or next(op for op in module.ops if isinstance(op, func.FuncOp))
    node, out, sections = fabric.node, [], 0
    for op in fn.body.block.ops:
        sections += isinstance(op, rdu.SectionOp)
        if not isinstance(op, rdu.AllReduceOp | rdu.AllGatherOp):
            continue
        nbytes = math.prod(rdu.shape_of(op.source.type)) * itemsize(op.source.type)
        group = op.group.value.data
        c = all_reduce(node, nbytes, group) if isinstance(op, rdu.AllReduceOp) else all_gather(node, nbytes, group)
        out.append({"op": op.name, "after_sections": sections, "bytes_per_socket": nbytes, "group": group,
                    "algorithm": c.algorithm,
                    "seconds": c.seconds, "latency_s": c.latency_s, "transfer_s": c.transfer_s})
    return out


def add_node_report(report: dict[str, Any], module: ModuleOp, fabric: Fabric) -> None:
    """Make `report` (from `cost.analysis.build_report`) the node's: `totals.estimated_s`
    becomes the node time (module docstring), `totals.socket_sections_s` keeps one
    socket's sections, `collectives` lists each collective, `sockets` each socket's split."""
    tp = module_tp(module)
    collectives = collective_costs(module, fabric)
    split = {"compute_s": 0.0, "hbm_s": 0.0, "network_s": 0.0, "launch_s": 0.0}
    for s in report["sections"]:
        cost = s["cost"]
        split["launch_s"] += cost["launch_s"]
        split[_CATEGORY.get(cost["bound"], "compute_s")] += cost["total_s"] - cost["launch_s"]
    sections_s = report["totals"]["estimated_s"]
    coll_s = sum(c["seconds"] for c in collectives)
    sync_s = fabric.node.sync_s
    total = sections_s + coll_s + sync_s
    report["collectives"] = collectives
    report["tp_notes"] = tp_notes(module)
    report["sockets"] = [
        {"socket": r, "sections": [s["name"] for s in report["sections"]], **split, "collectives_s": coll_s,
         "sync_s": sync_s, "total_s": total}
        for r in range(tp)
    ]
    totals = report["totals"]
    totals["socket_sections_s"] = sections_s
    totals["collectives_s"] = coll_s
    totals["sync_s"] = sync_s
    totals["estimated_s"] = total
    roof = report.get("roofline", {})
    report["roofline_fraction"] = roof.get("bound_s", 0.0) / total if total else 0.0


def node_report(fab: Fabric, tp: int = 1) -> dict[str, Any]:
    """`report["node"]`: what of the node the program uses: `tp` sockets (rdu-shard), else
    one socket, said so that a one-socket program on a multi-socket fabric never reads as a
    node-level estimate."""
    node = fab.node
    out: dict[str, Any] = {"sockets": node.sockets, "sockets_used": tp, "topology": node.topology}
    if tp > 1:
        out["note"] = (f"tensor parallel over {tp} of the {node.sockets} sockets (rdu-shard): sections are one "
                       "socket's (every socket runs the same program on its shard); totals are the node's")
    elif node.sockets > 1:
        out["note"] = (f"the program runs on one of the {node.sockets} sockets (tp = 1): every figure is one "
                       "socket's; compile with tp > 1 to split it over the node")
    return out


def check_sockets(fab: Fabric, tp: int, sockets: int | None) -> None:
    """Refuse a tp / sockets pair the node cannot run.

    Raises:
        RduError: tp < 1, or the sockets used (default tp) exceed the node's, or tp does
            not divide them or the node's socket count.
    """
    node = fab.node.sockets
    used = tp if sockets is None else sockets
    if not isinstance(tp, int) or tp < 1 or used < 1 or used > node or used % tp or node % tp:
        raise RduError(
            f"tp = {tp} on {used} socket(s) cannot run on fabric '{fab.name}', whose node has {node} "
            f"socket(s) ([sockets].count): tp must be >= 1 and divide both the sockets used and the node's. "
            f"Pick a tp that divides {node} (e.g. --fabric sn40l-node8 --tp 8, sn40l-rack16 --tp 16)."
        )
