"""A CoE study from a coe.toml: the RDU node's timeline, the same requests on GPU boxes,
one expert's switching time on each machine, and the footprint. Used by `rdu-coe`.

GPU boxes: when the experts exceed one box's host memory, the study uses as many boxes
as hold them (`footprint.gpu_boxes_host`); expert e lives on box e mod k, each box has
its own HBM cache, and a request goes to the box holding its expert (a modelling choice).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from rdu_compiler.coe.config import CoEConfig
from rdu_compiler.coe.footprint import footprint
from rdu_compiler.coe.gpu import GpuNode, gpu_node
from rdu_compiler.coe.llama import BUILTIN_SHAPES, GpuLlamaTiming, RduLlamaTiming, rdu_tp_step_s
from rdu_compiler.coe.mix import expert_weights, requests_from_mix, requests_from_trace
from rdu_compiler.coe.runtime import (
    MemoryPlan,
    Request,
    Timeline,
    plan_memory,
    simulate,
    switch_seconds,
)
from rdu_compiler.errors import RduError

SWEEP = (1, 10, 25, 50, 100, 150, 250, 400, 600, 850)  # expert counts of the footprint sweep


def requests_of(cfg: CoEConfig, count: int | None = None) -> list[Request]:
    """The config's requests: its trace (cycled to `count`) or `count` draws from its distribution."""
    n = count if count is not None else cfg.requests
    if cfg.trace is not None:
        return requests_from_trace([cfg.trace[i % len(cfg.trace)] for i in range(n)], cfg.prompt, cfg.output, cfg.batch)
    p = expert_weights(cfg.expert_count, cfg.distribution, cfg.zipf_s, cfg.weights)
    return requests_from_mix(n, cfg.expert_count, p, cfg.prompt, cfg.output, cfg.batch, cfg.seed)


def run_study(cfg: CoEConfig, count: int | None = None, compare: Sequence[str | GpuNode] = (),
              prefetch: bool = True) -> dict[str, Any]:
    """Simulate the config's requests on its node and on each GPU box in `compare` (preset
    names or `GpuNode`s); `prefetch` (both machines): copy the next request's expert during
    the current run when it fits beside it (`runtime.simulate`).

    Returns:
        a JSON-able dict: "rdu" and one entry per GPU (timeline totals, hit rate, per-request
        times in seconds), "switch_one_expert_s", "footprint", "speedup" (GPU total / RDU total),
        and with GPUs "footprint_sweep" (the footprint at each count of SWEEP).

    Raises:
        RduError: an unknown GPU, --compare with model-file experts, a CoE that does not fit,
            or a compile failure.
    """
    from rdu_compiler.api import _fabric

    gpus = [g if isinstance(g, GpuNode) else gpu_node(g) for g in compare]  # refuse a bad name before compiling anything
    if count is not None and count < 1:
        raise RduError(f"--requests must be at least 1, got {count}")
    fab = _fabric(cfg.fabric)
    sockets = cfg.sockets or fab.node.sockets
    requests = requests_of(cfg, count)
    if not cfg.builtin:
        if gpus:
            raise RduError("--compare needs built-in expert shapes ([experts].shape): the GPU model sizes a "
                           "Llama-shaped expert; drop --compare or use shapes")
        return _model_files(cfg, requests, sockets, prefetch)
    expert, router = BUILTIN_SHAPES[cfg.expert_shape or ""], BUILTIN_SHAPES[cfg.router_shape or ""]
    kv = expert.kv_bytes(cfg.batch * (cfg.prompt + cfg.output))
    plan_memory(fab.hbm.capacity_bytes * sockets, fab.ddr.capacity_bytes * sockets, router.weight_bytes,
                [expert.weight_bytes] * cfg.expert_count, kv, 0.0,
                machine=f"{sockets} sockets of {fab.name}")  # refuse before compiling anything
    act = _activation_bytes(expert, cfg, sockets)
    rdu_plan = plan_memory(fab.hbm.capacity_bytes * sockets, fab.ddr.capacity_bytes * sockets, router.weight_bytes,
                           [expert.weight_bytes] * cfg.expert_count, kv, act,
                           machine=f"{sockets} sockets of {fab.name}")
    bytes_each = [float(expert.weight_bytes)] * cfg.expert_count
    per_socket = fab.node.ddr_to_hbm_bytes_per_s
    rdu = simulate(requests, bytes_each, rdu_plan, lambda b: switch_seconds(b, per_socket, sockets),
                   RduLlamaTiming(expert, router, cfg.fabric, sockets), f"{fab.name} x{sockets}", prefetch=prefetch)
    out: dict[str, Any] = {
        "config": cfg.path, "requests": len(requests), "experts": cfg.expert_count, "expert_bytes": expert.weight_bytes,
        "router_bytes": router.weight_bytes, "kv_reserve_bytes": kv, "activation_reserve_bytes": act,
        "rdu": rdu.to_dict(),
        "switch_one_expert_s": {"rdu": switch_seconds(expert.weight_bytes, per_socket, sockets)},
        "footprint": {}, "speedup": {},
    }
    for gpu in gpus:
        fp = footprint(cfg.expert_count, expert.weight_bytes, router.weight_bytes, fab, gpu, kv + act)
        timeline = _gpu_timeline(gpu, max(fp.gpu_boxes_host, 1), requests, bytes_each, router.weight_bytes, kv, act,
                                 GpuLlamaTiming(expert, router, gpu), prefetch)
        out[gpu.name] = timeline.to_dict()
        out["switch_one_expert_s"][gpu.name] = gpu.switch_s(expert.weight_bytes)
        out["footprint"][gpu.name] = fp.to_dict()
        out["speedup"][gpu.name] = timeline.total() / rdu.total()
        out.setdefault("footprint_sweep", {})[gpu.name] = [
            footprint(n, expert.weight_bytes, router.weight_bytes, fab, gpu, kv + act).to_dict() for n in SWEEP]
    return out


def _activation_bytes(expert: Any, cfg: CoEConfig, sockets: int) -> float:
    """HBM reserve for activations: the compiled prefill layer's HBM peak less its weights, per socket x sockets."""
    step = rdu_tp_step_s(expert, cfg.fabric, sockets, cfg.prompt, 0, cfg.batch)
    return step["activation_bytes"] * sockets


def _gpu_timeline(gpu: GpuNode, boxes: int, requests: Sequence[Request], bytes_each: Sequence[float],
                  router_bytes: float, kv: float, act: float, timing: GpuLlamaTiming, prefetch: bool) -> Timeline:
    """Requests on `boxes` boxes, expert e on box e mod boxes, each box its own LRU cache."""
    plan = plan_memory(gpu.total_hbm_bytes, gpu.host_memory_bytes * boxes, router_bytes, bytes_each, kv, act,
                       machine=f"{boxes} {gpu.name} box(es)", home="host memory")
    parts: list[Timeline] = []
    for box in range(boxes):
        mine = [r for r in requests if r.expert % boxes == box]
        parts.append(simulate(mine, bytes_each, plan, gpu.switch_s, timing, gpu.name, prefetch=prefetch))
    by_expert = {box: iter(p.requests) for box, p in enumerate(parts)}
    ordered = [next(by_expert[r.expert % boxes]) for r in requests]
    hits = sum(t.hit for t in ordered)
    result = Timeline(f"{gpu.name} x{boxes}" if boxes > 1 else gpu.name, plan=_plan_for(plan, boxes), prefetch=prefetch)
    clock = 0.0
    for i, t in enumerate(ordered):  # one clock over all boxes' requests (start times re-based; copies per box not kept)
        result.requests.append(dataclasses.replace(t, index=i, start_s=clock, exec_start_s=clock + t.router_s + t.switch_s))
        clock += t.total_s
    result.hit_rate = hits / len(ordered) if ordered else 0.0
    return result


def _plan_for(plan: MemoryPlan, boxes: int) -> MemoryPlan:
    return MemoryPlan(plan.hbm_bytes * boxes, plan.router_bytes * boxes, plan.kv_bytes * boxes,
                      plan.activation_bytes * boxes, plan.home_bytes, plan.experts_bytes, plan.largest_expert_bytes)


def _model_files(cfg: CoEConfig, requests: list[Request], sockets: int, prefetch: bool) -> dict[str, Any]:
    from rdu_compiler.coe.coe import CoE
    from rdu_compiler.frontend.torch.model_file import load_model_file

    router = load_model_file(cfg.router_model or "")
    experts = [load_model_file(m) for m in cfg.expert_models]
    coe = CoE(router, experts, fabric=cfg.fabric, sockets=sockets)
    timeline = coe.simulate(requests, prefetch=prefetch)
    return {"config": cfg.path, "requests": len(requests), "experts": len(experts), "expert_bytes": coe.expert_bytes,
            "router_bytes": coe.router_bytes, "rdu": timeline.to_dict(),
            "switch_one_expert_s": {"rdu": coe.switch_s(max(coe.expert_bytes))}, "footprint": {}, "speedup": {}}
