"""Composition of Experts (SN40L §V): a router and many separately compiled experts on one
node, an LRU cache of experts in HBM over DDR, request timelines, and a GPU box to compare.
See docs/coe.md."""

from rdu_compiler.coe.coe import CoE, CoEOutput, ReportTiming, RouterOutputError
from rdu_compiler.coe.gpu import DGX_A100, DGX_H100, GPU_NODES, GpuNode, gpu_node
from rdu_compiler.coe.runtime import (
    CoEDoesNotFit,
    ExpertCache,
    MemoryPlan,
    Request,
    Timeline,
    plan_memory,
    simulate,
    switch_seconds,
)

__all__ = [
    "CoE", "CoEOutput", "ReportTiming", "RouterOutputError", "DGX_A100", "DGX_H100", "GPU_NODES", "GpuNode",
    "gpu_node", "CoEDoesNotFit", "ExpertCache", "MemoryPlan", "Request", "Timeline", "plan_memory", "simulate",
    "switch_seconds",
]
