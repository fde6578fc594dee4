"""Time of the inter-socket collectives and transfers, from the node spec alone.

Symbols: N sockets, M bytes per socket (the tensor each socket holds), B one link's
bandwidth each direction (`NodeSpec.link_bytes_per_s`), a the latency of one hop
(`hop_latency_s`). Every collective here moves data AGCU to AGCU without HBM (SN40L §III).

- **ring all-reduce** (reduce-scatter then all-gather round a ring; GenZ's formula,
  ../shared/reference/workloads.md "Multi-socket"): T = 2(N-1) a + 2(N-1)(M/N)/B. Needs a
  ring: on `ring` a socket sends to one neighbour per step; on `full` any Hamiltonian
  cycle of the direct links serves.
- **direct all-reduce** (`full` only): each socket sends its M/N shard to each of the N-1
  others over N-1 links at once (reduce-scatter), then the reduced shards back
  (all-gather): T = 2a + 2(M/N)/B.
- **recursive doubling all-reduce** (Thakur, Rabenseifner and Gropp, "Optimization of
  collective communication operations in MPICH", IJHPCA 2005; N a power of two): log2 N
  steps, at step k socket i exchanges all M bytes with socket i XOR 2^k and adds. On
  `full` each step is one hop: T = log2(N) (a + M/B). On `ring` the partner is 2^k hops
  away and, links being bidirectional, at most 2^k of the step's streams share one link
  direction, so step k takes 2^k (a + M/B): T = (N-1) a + (N-1) M/B -- half the ring
  algorithm's latency, N/2 times its bytes: the cheaper one for decode-sized messages
  (M/B << a), the ring for large ones.
  On `nodes` of S sockets (S a power of two) every partner is one hop away (inside the
  node while 2^k < S, the same index in another node after): T = log2(N) (a + M/B).
- **hierarchical all-reduce** (`nodes`: G = N/S nodes of S fully connected sockets, socket
  i linked to socket i of every other node; the 2-D scheme of NCCL / Horovod's
  hierarchical all-reduce): a direct reduce-scatter inside each node (a + (M/S)/B), an
  all-reduce of each M/S piece among the G sockets of the same index (the cheaper of
  direct 2a + 2(M/N)/B and, G a power of two, recursive doubling log2(G) (a + (M/S)/B)),
  a direct all-gather inside each node (a + (M/S)/B). Two nodes: T = 3a + 3(M/S)/B.
- **all-gather** of M/N per socket: ring (N-1)a + (N-1)(M/N)/B; direct a + (M/N)/B; on
  `nodes`, inside each node then across (each socket sends its node's S shards to its
  G - 1 peers at once): 2a + (1 + S)(M/N)/B.
- **send/recv** of M bytes from one socket to another: hops(src, dst) a + M/B (a store-and-
  forward per hop is not modelled: the stream is pipelined through intermediate sockets).

`all_reduce` picks the cheaper algorithm the topology allows and names it. With one socket
every collective takes 0 s.
"""

from __future__ import annotations

from dataclasses import dataclass

from rdu_compiler.fabric.node import NodeSpec


@dataclass(frozen=True)
class CollectiveCost:
    """One collective: `seconds`, the `algorithm` (ring, direct, p2p, none), and its
    latency and bandwidth parts (`latency_s` + `transfer_s` = `seconds`)."""

    seconds: float
    algorithm: str
    latency_s: float
    transfer_s: float


def _cost(algorithm: str, latency_s: float, transfer_s: float) -> CollectiveCost:
    return CollectiveCost(latency_s + transfer_s, algorithm, latency_s, transfer_s)


def ring_all_reduce(node: NodeSpec, nbytes: float) -> CollectiveCost:
    """Ring all-reduce of `nbytes` per socket (see the module docstring)."""
    n, a, b = node.sockets, node.hop_latency_s, node.link_bytes_per_s
    return _cost("ring", 2 * (n - 1) * a, 2 * (n - 1) * (nbytes / n) / b)


def direct_all_reduce(node: NodeSpec, nbytes: float) -> CollectiveCost:
    """Direct (all-to-all) all-reduce of `nbytes` per socket; needs `full` topology.

    Raises:
        ValueError: the topology has no direct link between every pair.
    """
    if node.topology != "full":
        raise ValueError(f"a direct all-reduce needs topology 'full', the node has {node.topology!r}")
    n, a, b = node.sockets, node.hop_latency_s, node.link_bytes_per_s
    return _cost("direct", 2 * a, 2 * (nbytes / n) / b)


def recursive_doubling_all_reduce(node: NodeSpec, nbytes: float) -> CollectiveCost:
    """Recursive doubling all-reduce of `nbytes` per socket (see the module docstring).

    Raises:
        ValueError: the socket count is not a power of two.
    """
    n, a, b = node.sockets, node.hop_latency_s, node.link_bytes_per_s
    if n < 1 or n & (n - 1):
        raise ValueError(f"recursive doubling needs a power-of-two socket count, got {n}")
    steps = n.bit_length() - 1
    s = node.node_sockets
    one_hop = node.topology == "full" or (node.topology == "nodes" and s & (s - 1) == 0)
    hops = steps if one_hop else n - 1  # on a ring the sum of 2^k over the steps
    return _cost("recursive doubling", hops * a, hops * nbytes / b)


def hierarchical_all_reduce(node: NodeSpec, nbytes: float) -> CollectiveCost:
    """Hierarchical (2-D) all-reduce of `nbytes` per socket on a `nodes` topology (module
    docstring).

    Raises:
        ValueError: the topology is not `nodes`.
    """
    if node.topology != "nodes":
        raise ValueError(f"a hierarchical all-reduce needs topology 'nodes', the node has {node.topology!r}")
    s, a, b = node.node_sockets, node.hop_latency_s, node.link_bytes_per_s
    g = node.sockets // s
    piece = nbytes / s
    inter = [_cost("direct", 2 * a, 2 * (piece / g) / b)]
    if g & (g - 1) == 0:
        steps = g.bit_length() - 1
        inter.append(_cost("recursive doubling", steps * a, steps * piece / b))
    across = min(inter, key=lambda c: c.seconds)
    return _cost(f"hierarchical ({across.algorithm} across {g} nodes)", 2 * a + across.latency_s,
                 2 * piece / b + across.transfer_s)


def all_reduce(node: NodeSpec, nbytes: float, group: int | None = None) -> CollectiveCost:
    """The cheapest all-reduce of `nbytes` per socket over `group` sockets (default all) that
    the topology allows (ring always; recursive doubling for a power-of-two group; direct
    on `full`); 0 s for a group of one.

    Raises:
        ValueError: group is not between 1 and the node's sockets.
    """
    g = _group(node, group)
    if g == 1:
        return _cost("none", 0.0, 0.0)
    sub = _sub(node, g)
    options = [ring_all_reduce(sub, nbytes)]
    if g & (g - 1) == 0:
        options.append(recursive_doubling_all_reduce(sub, nbytes))
    if sub.topology == "full":
        options.append(direct_all_reduce(sub, nbytes))
    if sub.topology == "nodes":
        options.append(hierarchical_all_reduce(sub, nbytes))
    return min(options, key=lambda c: c.seconds)  # ties: ring, the first


def all_gather(node: NodeSpec, shard_bytes: float, group: int | None = None) -> CollectiveCost:
    """All-gather of `shard_bytes` from each of `group` sockets to all of them."""
    g = _group(node, group)
    if g == 1:
        return _cost("none", 0.0, 0.0)
    a, b = node.hop_latency_s, node.link_bytes_per_s
    sub = _sub(node, g)
    ring = _cost("ring", (g - 1) * a, (g - 1) * shard_bytes / b)
    if sub.topology == "full":
        return min([ring, _cost("direct", a, shard_bytes / b)], key=lambda c: c.seconds)
    if sub.topology == "nodes":
        s = sub.node_sockets
        return min([ring, _cost("hierarchical", 2 * a, (1 + s) * shard_bytes / b)], key=lambda c: c.seconds)
    return ring


def send_recv(node: NodeSpec, nbytes: float, src: int, dst: int) -> CollectiveCost:
    """A point-to-point transfer of `nbytes` from socket `src` to `dst`.

    Raises:
        ValueError: a socket index outside the node.
    """
    for s in (src, dst):
        if not 0 <= s < node.sockets:
            raise ValueError(f"socket {s} is not in a node of {node.sockets} sockets")
    if src == dst:
        return _cost("none", 0.0, 0.0)
    return _cost("p2p", node.hops(src, dst) * node.hop_latency_s, nbytes / node.link_bytes_per_s)


def pipeline_bubble(stages: int, micro_batches: int, interleave: int = 1) -> float:
    """Share of a pipeline-parallel step the stages idle: (p - 1) / (v m) for p stages,
    m micro-batches, v interleaved chunks per stage (the formula in workloads.md).

    Raises:
        ValueError: a count below 1.
    """
    if min(stages, micro_batches, interleave) < 1:
        raise ValueError(f"stages, micro_batches and interleave must be >= 1, got {stages}, {micro_batches}, {interleave}")
    return (stages - 1) / (interleave * micro_batches)


def _group(node: NodeSpec, group: int | None) -> int:
    g = node.sockets if group is None else group
    if not 1 <= g <= node.sockets:
        raise ValueError(f"a collective over {g} sockets in a node of {node.sockets}; use 1..{node.sockets}")
    return g


def _sub(node: NodeSpec, g: int) -> NodeSpec:
    """The node as seen by a group of `g` of its sockets (same links and latencies; a group
    is consecutive sockets from 0, so on `nodes` a group within one node is `full`, a
    group of whole nodes keeps `nodes`, any other a ring through it)."""
    topology, per = node.topology, node.node_sockets
    if topology == "nodes":
        if g <= per:
            topology, per = "full", 0
        elif g % per:
            topology, per = "ring", 0
    return NodeSpec(g, topology, node.link_bytes_per_s, node.hop_latency_s, node.sync_s, node.ddr_to_hbm_bytes_per_s, per)
