"""LLM serving on the fabric: prefill and decode sharing one chip spatially (issue 15, Nexus).

`simulate(requests, latency, policy)` runs a trace (`traces.generate` or `traces.read_csv`)
through a discrete-event serving loop whose step times come from programs compiled on
regions of the fabric (`latency.build_latency_model`). See docs/serving.md.
"""

from __future__ import annotations

from rdu_compiler.serve.latency import LatencyModel, build_latency_model
from rdu_compiler.serve.policies import Policy, PolicyError, parse_policy
from rdu_compiler.serve.sim import SimError, SimResult, simulate
from rdu_compiler.serve.traces import Request, TraceError, generate, read_csv, write_csv

__all__ = [
    "LatencyModel",
    "Policy",
    "PolicyError",
    "Request",
    "SimError",
    "SimResult",
    "TraceError",
    "build_latency_model",
    "generate",
    "parse_policy",
    "read_csv",
    "simulate",
    "write_csv",
]
