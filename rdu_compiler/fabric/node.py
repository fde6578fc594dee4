"""The node: how many sockets, how they are linked, and what crossing between them costs.

Read from the ``[sockets]`` table of a fabric spec. A one-socket spec needs only
``count = 1`` and ``p2p_bytes_per_s``; with ``count > 1`` every field below is required
(a multi-socket estimate must not rest on a default nobody chose):

==========================  =====================================================  =======
field                       meaning                                                unit
==========================  =====================================================  =======
count                       sockets in the node (or rack)                          -
p2p_bytes_per_s             bandwidth of one inter-RDU link, each direction         B/s
topology                    ``ring`` (each socket linked to two neighbours),       -
                            ``full`` (a direct link between every pair) or
                            ``nodes`` (nodes of ``node_sockets`` sockets, full
                            inside; socket i of a node linked to socket i of
                            every other node: a rack of fully connected nodes)
node_sockets                with ``nodes``: sockets per node (divides count;       -
                            ignored by the other topologies, so a spec that
                            extends a ``nodes`` preset may switch topology)
hop_latency_s               latency of one socket-to-socket transfer (AGCU to      s
                            AGCU, SN40L §III: peer streams bypass HBM)
sync_s                      one cross-socket synchronisation at a call boundary    s
ddr_to_hbm_bytes_per_s      DDR -> HBM copy bandwidth of one socket                B/s
==========================  =====================================================  =======
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

TOPOLOGIES = ("ring", "full", "nodes")
OPTIONAL_WHEN_SINGLE = ("topology", "hop_latency_s", "sync_s", "ddr_to_hbm_bytes_per_s")


@dataclass(frozen=True)
class NodeSpec:
    """The sockets of a node and their links (see the module docstring for units).

    A one-socket node has topology "single" and zero latencies: nothing crosses sockets.
    """

    sockets: int
    topology: str
    link_bytes_per_s: float
    hop_latency_s: float
    sync_s: float
    ddr_to_hbm_bytes_per_s: float
    node_sockets: int = 0  # topology "nodes": sockets per fully connected node; 0 otherwise

    @property
    def links_per_socket(self) -> int:
        """Inter-RDU links at each socket: 2 on a ring (1 with two sockets), N - 1 when full,
        (S - 1) + (N / S - 1) on `nodes` of S sockets."""
        if self.sockets == 1:
            return 0
        if self.topology == "ring":
            return min(2, self.sockets - 1)
        if self.topology == "nodes":
            return self.node_sockets - 1 + self.sockets // self.node_sockets - 1
        return self.sockets - 1

    def hops(self, src: int, dst: int) -> int:
        """Links a transfer from socket `src` to `dst` crosses (shortest way round a ring;
        on `nodes`: 1 inside a node or to the same index in another node, else 2)."""
        if src == dst:
            return 0
        if self.topology == "full":
            return 1
        if self.topology == "nodes":
            s = self.node_sockets
            return 1 if src // s == dst // s or src % s == dst % s else 2
        d = abs(src - dst) % self.sockets
        return min(d, self.sockets - d)


def read_node(reader: Any, error: Any) -> NodeSpec:
    """The NodeSpec of a spec's ``[sockets]`` table (`reader` is spec.py's `_Reader`).

    Raises:
        FabricError (via `error(message)`): a multi-socket spec misses a field, or the
            topology is not one of TOPOLOGIES.
    """
    count = reader.get_int("sockets", "count")
    link = reader.get_float("sockets", "p2p_bytes_per_s")
    body = reader.doc.get("sockets", {})
    if count == 1 and not any(k in body for k in OPTIONAL_WHEN_SINGLE):
        return NodeSpec(1, "single", link, 0.0, 0.0, reader.get_float("ddr", "bytes_per_s"))
    missing = [k for k in OPTIONAL_WHEN_SINGLE if k not in body]
    if missing:
        raise error(f"{reader.where}: [sockets].count = {count} needs {', '.join(f'[sockets].{k}' for k in missing)}; "
                    "add them (see rdu_compiler/fabric/node.py for their meaning and units)")
    topology = reader.get_str("sockets", "topology")
    if topology not in TOPOLOGIES:
        raise error(f"{reader.where}: [sockets].topology is {topology!r}; set it to one of: {', '.join(TOPOLOGIES)}")
    node_sockets = 0
    if topology == "nodes":
        if "node_sockets" not in body:
            raise error(f"{reader.where}: [sockets].topology = \"nodes\" needs [sockets].node_sockets, the sockets of "
                        "one fully connected node; add it")
        node_sockets = reader.get_int("sockets", "node_sockets")
        if node_sockets < 2 or count % node_sockets or count == node_sockets:
            raise error(f"{reader.where}: [sockets].node_sockets = {node_sockets} must be >= 2 and divide count = "
                        f"{count} into two or more nodes; fix it (or use topology \"full\" for one node)")
    return NodeSpec(count, topology, link, reader.get_float("sockets", "hop_latency_s"),
                    reader.get_float("sockets", "sync_s"), reader.get_float("sockets", "ddr_to_hbm_bytes_per_s"),
                    node_sockets)
