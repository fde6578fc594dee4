"""A Perfetto / Chrome trace of a program run (open it in ui.perfetto.dev).

Timestamps are *modelled* time from the static cost model, in microseconds, not the
emulator's host wall clock: sections run one after another, each starting with its
launch overhead; in a section every kernel (pipeline stage) starts after launch and
lasts its own modelled time (`KernelCost.time_s`: max of its compute and PMU time on
its units), so the tracks show which stage is the slowest in each section. One track
per kernel, plus a "sections" track whose slices name the resource that binds.

A tensor-parallel program (`report["sockets"]`, cost/node.py) adds one process per socket:
its sections and, between them, the collectives (all-reduce / all-gather, modelled time
from `cost.collectives`), then the call's sync. A pipelined program (`report["pipeline"]`,
cost/pipeline.py) adds one process per socket with its stage's micro-batches on the
schedule the cost model's step time assumes (stage s starts micro-batch j when it has
finished j - 1 and stage s - 1 has finished j: T = sum_s t_s + (M - 1) max_s t_s), each
slot its sections, collectives and the send to the next stage; the gaps are the bubble.

When the emulator has run, a second process shows each section's emulator wall time on
the host (its own time axis, also in microseconds, sections back to back).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

MODEL_PID, EMULATOR_PID, SOCKET_PID = 1, 2, 10  # socket r of a tensor-parallel program: pid 10 + r


def trace_events(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Chrome trace events (`ph` X slices and M metadata) for a compile report."""
    events: list[dict[str, Any]] = [
        _meta(MODEL_PID, 0, "process_name", "RDU, modelled time (static cost model, us)"),
        _meta(MODEL_PID, 0, "thread_name", "sections"),
    ]
    tids: dict[str, int] = {}
    start = 0.0
    for s in report.get("sections", []):
        c = s["cost"]
        events.append(
            _slice(MODEL_PID, 0, s["name"], start, c["total_s"], {
                "bound": c["bound"], "launch_s": c["launch_s"], "fill_s": c["fill_s"],
                "network_s": c.get("network_s", 0.0), "hbm_bytes": s["hbm_bytes"], "reason": s.get("reason", ""),
            })
        )
        loads = {k["name"]: k for k in s["kernels"]}
        for k in c["kernels"]:
            if k["name"] not in tids:
                tids[k["name"]] = len(tids) + 1
                events.append(_meta(MODEL_PID, tids[k["name"]], "thread_name", k["name"]))
                events.append({"ph": "M", "pid": MODEL_PID, "tid": tids[k["name"]], "name": "thread_sort_index", "args": {"sort_index": tids[k["name"]]}})
            args = {"section": s["name"], "compute_s": k["compute_s"], "pmu_s": k["pmu_s"]}
            args.update({f: loads[k["name"]][f] for f in ("pcus", "pmus", "flops", "tiles", "source")
                         if f in loads.get(k["name"], {})})
            events.append(_slice(MODEL_PID, tids[k["name"]], k["name"], start + c["launch_s"], k["time_s"], args))
        start += c["total_s"]
    events += _pipeline_events(report) if "pipeline" in report else _socket_events(report)
    emu = report.get("emulator")
    if emu:
        events.append(_meta(EMULATOR_PID, 0, "process_name", "emulator, host wall clock (us)"))
        events.append(_meta(EMULATOR_PID, 0, "thread_name", "sections"))
        t = 0.0
        for s in emu.get("sections", []):
            events.append(_slice(EMULATOR_PID, 0, s["name"], t, s["wall_s"], {"tiles": s["tiles"]}))
            t += s["wall_s"]
    return events


def write_trace(path: str | Path, report: dict[str, Any]) -> Path:
    """Write the trace JSON (`{"traceEvents": [...], "displayTimeUnit": "ns", ...}`) to `path`,
    through a temporary file beside it.

    Raises:
        OSError: the folder cannot be created or written.
    """
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "traceEvents": trace_events(report),
        "displayTimeUnit": "ns",
        "otherData": {
            "timestamps": "modelled microseconds from the static cost model (pid 1); emulator host wall clock (pid 2)",
            "fabric": report.get("fabric", {}).get("name", ""),
        },
    }
    fd, tmp = tempfile.mkstemp(prefix=".rdu-trace-", suffix=".json", dir=out.parent)
    try:  # written beside, then renamed: an interrupted write never leaves half a trace
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(doc))
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


def _meta(pid: int, tid: int, name: str, value: str) -> dict[str, Any]:
    return {"ph": "M", "pid": pid, "tid": tid, "name": name, "args": {"name": value}}


def _slice(pid: int, tid: int, name: str, start_s: float, dur_s: float, args: dict[str, Any]) -> dict[str, Any]:
    return {"ph": "X", "pid": pid, "tid": tid, "name": name, "ts": start_s * 1e6, "dur": dur_s * 1e6, "args": args}


def _socket_events(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One process per socket: sections back to back, collectives where the program has
    them (`after_sections`), the sync at the end (modelled time, us)."""
    events: list[dict[str, Any]] = []
    sections, collectives = report.get("sections", []), report.get("collectives", [])
    for sock in report.get("sockets", []):
        pid = SOCKET_PID + sock["socket"]
        events.append(_meta(pid, 0, "process_name", f"socket {sock['socket']}, modelled time (us)"))
        events.append(_meta(pid, 0, "thread_name", "sections and collectives"))
        t = 0.0
        for i, s in enumerate([*sections, None]):
            for c in collectives:
                if c.get("after_sections") == i:
                    events.append(_slice(pid, 0, c["op"], t, c["seconds"], {
                        "bytes_per_socket": c["bytes_per_socket"], "algorithm": c["algorithm"], "group": c["group"]}))
                    t += c["seconds"]
            if s is not None:
                events.append(_slice(pid, 0, s["name"], t, s["cost"]["total_s"], {"bound": s["cost"]["bound"]}))
                t += s["cost"]["total_s"]
        events.append(_slice(pid, 0, "sync", t, sock["sync_s"], {}))
    return events


def pipeline_schedule(times_s: list[float], microbatches: int) -> list[list[tuple[float, float]]]:
    """(start, end) in seconds of micro-batch j on stage s (`[s][j]`) for stages taking
    `times_s` each: stage s starts j once it has finished j - 1 and stage s - 1 has finished
    j (a forward-only GPipe schedule). The last end is sum(times) + (M - 1) max(times).

    Raises:
        ValueError: no stages, or fewer than one micro-batch.
    """
    if not times_s or microbatches < 1:
        raise ValueError(f"a pipeline needs >= 1 stage and >= 1 micro-batch, got {len(times_s)} and {microbatches}")
    slots: list[list[tuple[float, float]]] = []
    for s, t in enumerate(times_s):
        row: list[tuple[float, float]] = []
        for j in range(microbatches):
            start = max(row[j - 1][1] if j else 0.0, slots[s - 1][j][1] if s else 0.0)
            row.append((start, start + t))
        slots.append(row)
    return slots


def _pipeline_events(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One process per socket of a pipelined program: its stage's micro-batch slots."""
    pipe = report["pipeline"]
    stages, m, tp = pipe["stages"], pipe["microbatches"], pipe.get("tp", 1)
    slots = pipeline_schedule([st["time_s"] for st in stages], m)
    end = max(row[-1][1] for row in slots)
    events: list[dict[str, Any]] = []
    for st, row in zip(stages, slots, strict=True):
        sections = [x for x in report.get("sections", []) if x.get("stage") == st["stage"]]
        for socket in st["sockets"]:
            pid = SOCKET_PID + socket
            rank = f", tp rank {socket - st['socket']}" if tp > 1 else ""
            events.append(_meta(pid, 0, "process_name", f"socket {socket}: stage {st['stage']}{rank}, modelled time (us)"))
            events.append(_meta(pid, 0, "thread_name", "micro-batches"))
            for j, (t0, _) in enumerate(row):
                t = t0
                for i, sec in enumerate([*sections, None]):
                    for c in st["collectives"]:
                        if c.get("after_sections") == i:
                            events.append(_slice(pid, 0, c["op"], t, c["seconds"], {"microbatch": j, "algorithm": c["algorithm"]}))
                            t += c["seconds"]
                    if sec is not None:
                        events.append(_slice(pid, 0, sec["name"], t, sec["cost"]["total_s"],
                                             {"microbatch": j, "bound": sec["cost"]["bound"]}))
                        t += sec["cost"]["total_s"]
                for x in st["transfers"]:
                    events.append(_slice(pid, 0, f"send to stage {x['to_stage']}", t, x["seconds"],
                                         {"microbatch": j, "bytes": x["bytes"], "channel": x["channel"]}))
                    t += x["seconds"]
            if pipe.get("sync_s"):
                events.append(_slice(pid, 0, "sync", end, pipe["sync_s"], {}))
    return events
