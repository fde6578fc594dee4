"""Machine footprint of a CoE: how many RDU nodes or GPU boxes hold N experts (SN40L §VI-C).

- **RDU node**: experts live in DDR (the HBM caches some), so
  nodes = ceil(N * expert_bytes / (sockets * DDR per socket)).
- **GPU box, experts in HBM** (no switching; what a GPU needs to serve every expert without
  going to the host): each box holds the router, KV cache and activations, and its share
  of the experts in the rest of its HBM:
  boxes = ceil(N * expert_bytes / (box HBM - router - KV - activations)).
- **GPU box, experts in host memory** (switching over the host link, as the timeline does):
  boxes = ceil(N * expert_bytes / host memory).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from rdu_compiler.coe.gpu import GpuNode
from rdu_compiler.errors import RduError
from rdu_compiler.fabric import Fabric


@dataclass(frozen=True)
class Footprint:
    """Machines needed for `experts` experts (counts of nodes or boxes)."""

    experts: int
    rdu_nodes: int
    gpu: str
    gpu_boxes_hbm: int
    gpu_boxes_host: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def footprint(experts: int, expert_bytes: float, router_bytes: float, node: Fabric, gpu: GpuNode,
              reserve_bytes: float = 0.0) -> Footprint:
    """The footprint of `experts` experts of `expert_bytes` bytes each (formulas above).

    Args:
        node: the RDU node's fabric (its per-socket DDR times its sockets).
        reserve_bytes: KV cache + activations per GPU box (bytes).

    Raises:
        RduError: a GPU box has no HBM left for experts after router and reserve.
    """
    total = experts * expert_bytes
    free = gpu.total_hbm_bytes - router_bytes - reserve_bytes
    if free < expert_bytes:
        raise RduError(f"a {gpu.name} box has {free / 1e9:.1f} GB of HBM left after the router and the reserve, "
                       f"less than one expert ({expert_bytes / 1e9:.1f} GB); reduce the reserve")
    ddr = node.ddr.capacity_bytes * node.sockets
    return Footprint(experts, math.ceil(total / ddr), gpu.name, math.ceil(total / free),
                     math.ceil(total / gpu.host_memory_bytes))
