"""LLM serving on the fabric: prefill and decode sharing one chip spatially (issue 15, Nexus).

`simulate(requests, latency, policy)` runs a trace (`traces.generate` or `traces.read_csv`)
through a discrete-event serving loop whose step times come from programs compiled on
regions of the fabric (`latency.build_latency_model`); `simulate_node(..., sockets=N)` serves
it on N sockets of a node (replicas, or `disaggregated` prefill and decode sockets with
the KV cache sent over the inter-RDU links). See docs/serving.md.
"""

from __future__ import annotations

from rdu_compiler.serve.latency import LatencyModel, build_latency_model
from rdu_compiler.serve.node import NodeResult, kv_transfer_seconds, simulate_node
from rdu_compiler.serve.policies import Policy, PolicyError, parse_policy
from rdu_compiler.serve.sim import SimError, SimResult, simulate
from rdu_compiler.serve.traces import Request, TraceError, generate, read_csv, write_csv

__all__ = [
    "LatencyModel",
    "NodeResult",
    "Policy",
    "PolicyError",
    "Request",
    "SimError",
    "SimResult",
    "TraceError",
    "build_latency_model",
    "generate",
    "kv_transfer_seconds",
    "parse_policy",
    "read_csv",
    "simulate",
    "simulate_node",
    "write_csv",
]
