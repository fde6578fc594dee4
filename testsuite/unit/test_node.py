"""The node as data (issue 13): multi-socket presets, `extends`, and the collectives' costs
on hand-computed cases."""

from __future__ import annotations

from pathlib import Path

import pytest

from rdu_compiler.cost.collectives import (
    all_gather,
    all_reduce,
    direct_all_reduce,
    hierarchical_all_reduce,
    pipeline_bubble,
    recursive_doubling_all_reduce,
    ring_all_reduce,
    send_recv,
)
from rdu_compiler.fabric import FabricError, load_fabric
from rdu_compiler.fabric.node import NodeSpec


def test_multi_socket_presets_extend_the_socket() -> None:
    one, node, rack = load_fabric("sn40l"), load_fabric("sn40l-node8"), load_fabric("sn40l-rack16")
    assert (node.sockets, node.node.topology) == (8, "full") and (rack.sockets, rack.node.topology) == (16, "nodes")
    for f in (node, rack):  # every socket field comes from sn40l
        assert (f.rows, f.cols, f.hbm, f.ddr, f.pcu, f.pmu) == (one.rows, one.cols, one.hbm, one.ddr, one.pcu, one.pmu)
    assert rack.node.hop_latency_s == node.node.hop_latency_s == 1e-6  # inherited through two levels
    assert one.node.topology == "single" and one.node.links_per_socket == 0
    assert node.node.links_per_socket == 7 and rack.node.links_per_socket == 8  # 7 in the node + 1 across
    assert rack.node.node_sockets == 8


def _spec(tmp_path: Path, text: str, name: str = "f.toml") -> str:
    (tmp_path / name).write_text(text)
    return str(tmp_path / name)


def test_extends_overrides_field_by_field_and_refuses_bad_chains(tmp_path: Path) -> None:
    path = _spec(tmp_path, 'extends = "sn40l"\n[fabric]\nname = "big_pmu"\n[pmu]\ncapacity_bytes = 1048576\n')
    f = load_fabric(path)
    assert f.name == "big_pmu" and f.pmu.capacity_bytes == 1 << 20 and f.pmu.banks == load_fabric("sn40l").pmu.banks
    child = _spec(tmp_path, 'extends = "f.toml"\n[pcu.flops_per_cycle]\nbf16 = 768\n', "child.toml")
    g = load_fabric(child)  # a relative base, and a sub-table merged key by key
    assert g.pcu.flops_per_cycle["bf16"] == 768 and g.pcu.flops_per_cycle["fp32"] == 192 and g.name == "big_pmu"
    _spec(tmp_path, 'extends = "b.toml"\n', "a.toml")
    loop = _spec(tmp_path, 'extends = "a.toml"\n', "b.toml")
    with pytest.raises(FabricError, match="loops"):
        load_fabric(loop)
    with pytest.raises(FabricError, match="no file"):
        load_fabric(_spec(tmp_path, 'extends = "nope.toml"\n', "c.toml"))
    with pytest.raises(FabricError, match="unknown field"):  # typos in the extending file are caught
        load_fabric(_spec(tmp_path, 'extends = "sn40l"\n[pmu]\ncapacity = 1\n', "d.toml"))


def test_a_multi_socket_spec_must_name_its_links(tmp_path: Path) -> None:
    path = _spec(tmp_path, 'extends = "sn40l"\n[sockets]\ncount = 4\n')
    with pytest.raises(FabricError, match=r"\[sockets\].topology.*\[sockets\].hop_latency_s"):
        load_fabric(path)
    bad = _spec(tmp_path, 'extends = "sn40l-node8"\n[sockets]\ntopology = "torus"\n', "t.toml")
    with pytest.raises(FabricError, match="ring, full"):
        load_fabric(bad)


def _node(n: int, topology: str, b: float = 1e9, a: float = 1e-6) -> NodeSpec:
    return NodeSpec(n, topology, b, a, 1e-5, 1e11)


def test_all_reduce_formulas_on_hand_computed_cases() -> None:
    ring = ring_all_reduce(_node(4, "ring"), 4e6)
    assert ring.latency_s == pytest.approx(6e-6) and ring.transfer_s == pytest.approx(2 * 3 * 1e6 / 1e9)
    direct = direct_all_reduce(_node(4, "full"), 4e6)
    assert direct.latency_s == pytest.approx(2e-6) and direct.transfer_s == pytest.approx(2 * 1e6 / 1e9)
    assert all_reduce(_node(4, "full"), 4e6).algorithm == "direct"
    assert all_reduce(_node(4, "ring"), 4e6).algorithm == "ring"
    with pytest.raises(ValueError, match="needs topology 'full'"):
        direct_all_reduce(_node(4, "ring"), 1.0)
    assert all_reduce(_node(4, "ring"), 4e6, group=1).seconds == 0
    with pytest.raises(ValueError, match="1..4"):
        all_reduce(_node(4, "ring"), 1.0, group=5)
    small = ring_all_reduce(_node(16, "ring", b=1e11), 16 * 1024)  # decode-sized: latency dominates
    assert small.latency_s > 10 * small.transfer_s


def test_recursive_doubling_wins_small_messages_on_a_ring_and_loses_large_ones() -> None:
    ring16 = _node(16, "ring", b=1e11)
    rd = recursive_doubling_all_reduce(ring16, 8192)  # a decode-sized message (8 KiB)
    assert rd.latency_s == pytest.approx(15e-6) and rd.transfer_s == pytest.approx(15 * 8192 / 1e11)
    assert all_reduce(ring16, 8192).algorithm == "recursive doubling"
    assert all_reduce(ring16, 8192).seconds < ring_all_reduce(ring16, 8192).seconds
    assert all_reduce(ring16, 64e6).algorithm == "ring"  # bandwidth-bound: the ring's 2(N-1)/N M wins
    assert recursive_doubling_all_reduce(_node(8, "full"), 1e6).latency_s == pytest.approx(3e-6)  # log2 8 hops
    assert all_reduce(_node(8, "full"), 8192).algorithm == "direct"  # 2 hops beat log2 8
    assert all_reduce(_node(6, "ring"), 8192).algorithm == "ring"  # not a power of two
    with pytest.raises(ValueError, match="power-of-two"):
        recursive_doubling_all_reduce(_node(6, "ring"), 1.0)


def test_all_gather_send_recv_and_bubbles() -> None:
    assert all_gather(_node(4, "ring"), 1e6).seconds == pytest.approx(3e-6 + 3e-3)
    assert all_gather(_node(4, "full"), 1e6).seconds == pytest.approx(1e-6 + 1e-3)
    ring = _node(8, "ring")
    assert [ring.hops(0, d) for d in range(8)] == [0, 1, 2, 3, 4, 3, 2, 1]
    assert send_recv(ring, 1e6, 0, 5).seconds == pytest.approx(3e-6 + 1e-3)
    with pytest.raises(ValueError, match="not in a node"):
        send_recv(ring, 1.0, 0, 8)
    assert pipeline_bubble(4, 8) == pytest.approx(3 / 8) and pipeline_bubble(4, 8, interleave=2) == pytest.approx(3 / 16)
    assert pipeline_bubble(1, 1) == 0


def test_a_multi_socket_fabric_says_the_program_uses_one_socket() -> None:
    import io

    import torch
    from rich.console import Console

    import rdu_compiler
    from rdu_compiler.tools.report import print_report

    model, x = torch.nn.Linear(16, 16), (torch.randn(4, 16),)
    one = rdu_compiler.compile(model, x, fabric="sn40l").report
    node = rdu_compiler.compile(model, x, fabric="sn40l-node8").report
    assert one["node"] == {"sockets": 1, "sockets_used": 1, "topology": "single"}
    assert node["node"]["sockets"] == 8 and node["node"]["sockets_used"] == 1 and "one of the 8" in node["node"]["note"]
    assert node["totals"]["estimated_s"] == one["totals"]["estimated_s"]  # one socket's time, said so
    buf = io.StringIO()
    print_report(Console(file=buf, width=100), node, "linear")
    assert "one of the 8 sockets" in " ".join(buf.getvalue().split())


def _nodes(n: int, per: int, b: float = 1e11, a: float = 1e-6) -> NodeSpec:
    return NodeSpec(n, "nodes", b, a, 1e-5, 1e11, per)


def test_nodes_topology_hierarchical_all_reduce_and_hops() -> None:
    rack = _nodes(16, 8)
    assert [rack.hops(0, d) for d in (0, 1, 7, 8, 9, 15)] == [0, 1, 1, 1, 2, 2]
    h = hierarchical_all_reduce(rack, 8192)  # reduce-scatter in the node, exchange across, all-gather
    assert h.latency_s == pytest.approx(3e-6) and h.transfer_s == pytest.approx(3 * 1024 / 1e11)
    assert all_reduce(rack, 8192).algorithm.startswith("hierarchical")
    assert all_reduce(rack, 8192, group=8).algorithm == "direct"  # one node: its full links
    four = hierarchical_all_reduce(_nodes(32, 8), 8192)  # 4 nodes: direct across (2 hops) beats 2 doubling steps
    assert four.algorithm == "hierarchical (direct across 4 nodes)" and four.latency_s == pytest.approx(4e-6)
    assert four.transfer_s == pytest.approx(2 * 1024 / 1e11 + 2 * (1024 / 4) / 1e11)
    assert recursive_doubling_all_reduce(rack, 8192).latency_s == pytest.approx(4e-6)  # every partner 1 hop
    g = all_gather(rack, 1000.0)
    assert g.algorithm == "hierarchical" and g.seconds == pytest.approx(2e-6 + 9 * 1000 / 1e11)
    with pytest.raises(ValueError, match="needs topology 'nodes'"):
        hierarchical_all_reduce(_node(16, "ring"), 1.0)


def test_nodes_topology_needs_a_node_size_that_divides(tmp_path: Path) -> None:
    with pytest.raises(FabricError, match="node_sockets"):
        load_fabric(_spec(tmp_path, 'extends = "sn40l-node8"\n[sockets]\ncount = 16\ntopology = "nodes"\n'))
    with pytest.raises(FabricError, match="divide count"):
        load_fabric(_spec(tmp_path, 'extends = "sn40l-rack16"\n[sockets]\nnode_sockets = 5\n', "g.toml"))
    ring = load_fabric(_spec(tmp_path, 'extends = "sn40l-rack16"\n[sockets]\ntopology = "ring"\n', "r.toml"))
    assert ring.node.topology == "ring" and ring.node.hops(0, 8) == 8  # node_sockets ignored off `nodes`

