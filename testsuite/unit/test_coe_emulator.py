"""Composition of Experts end to end on the emulator (issue 14): a router and three tiny
experts with different weights; each request's output equals the chosen expert's eager
output, the router's choice equals eager's argmax, and the HBM cache switches as LRU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import rdu_compiler
from rdu_compiler.coe import CoE, CoEDoesNotFit, Request, RouterOutputError
from rdu_compiler.coe.coe import program_weight_bytes
from rdu_compiler.errors import RduError

NODE = """extends = "tiny"
[fabric]
name = "tiny-node4"
[sockets]
count = 4
topology = "full"
p2p_bytes_per_s = 25e9
hop_latency_s = 1e-6
sync_s = 1e-5
ddr_to_hbm_bytes_per_s = 2e9
"""


def _expert(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 8)).eval()


def _router() -> nn.Module:
    torch.manual_seed(99)
    return nn.Sequential(nn.Linear(8, 3)).eval()


@pytest.fixture(scope="module")
def programs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    spec = tmp_path_factory.mktemp("coe") / "node.toml"
    spec.write_text(NODE)
    x = torch.randn(1, 8)
    router, experts = _router(), [_expert(s) for s in (1, 2, 3)]
    return {
        "spec": str(spec), "router": router, "experts": experts,
        "router_p": rdu_compiler.compile(router, (x,), fabric=str(spec)),
        "experts_p": [rdu_compiler.compile(e, (x,), fabric=str(spec)) for e in experts],
    }


def _inputs_for_each_expert(router: nn.Module) -> list[torch.Tensor]:
    """Inputs the eager router sends to experts 0, 1, 2, 1, 0, 2 (found by seeded search)."""
    want, found = [0, 1, 2, 1, 0, 2], []
    g = torch.Generator().manual_seed(5)
    for choice in want:
        while True:
            x = torch.randn(1, 8, generator=g)
            if int(router(x).argmax()) == choice:
                found.append(x)
                break
    return found


def test_each_request_runs_the_expert_the_router_chose(programs: dict) -> None:
    coe = CoE(programs["router_p"], programs["experts_p"], fabric=programs["spec"])
    assert coe.sockets == 4
    outputs = []
    for x in _inputs_for_each_expert(programs["router"]):
        with torch.no_grad():
            eager_choice = int(programs["router"](x).argmax())
            eager_out = programs["experts"][eager_choice](x)
        out = coe.run(x)
        assert out.expert == eager_choice
        torch.testing.assert_close(out.output, eager_out, rtol=1e-5, atol=1e-6)
        outputs.append(out)
    # different weights: the three experts disagree on one input
    x = torch.randn(1, 8)
    with torch.no_grad():
        a, b = programs["experts"][0](x), programs["experts"][1](x)
    assert not torch.allclose(a, b)
    # everything fits: three misses then hits; a miss costs bytes / 4 sockets / 2 GB/s
    assert [o.access.hit for o in outputs] == [False, False, False, True, True, True]
    nbytes = program_weight_bytes(programs["experts_p"][0])
    assert nbytes == (8 * 16 + 16 + 16 * 8 + 8) * 4
    assert outputs[0].switch_s == pytest.approx(nbytes / 4 / 2e9)
    assert all(o.switch_s == 0.0 for o in outputs[3:])


def test_a_small_cache_evicts_the_least_recently_used_expert(programs: dict) -> None:
    router_b = program_weight_bytes(programs["router_p"])
    expert_b = program_weight_bytes(programs["experts_p"][0])
    hbm = 65536 * 4
    kv = hbm - router_b - 2.5 * expert_b  # room for exactly two experts
    coe = CoE(programs["router_p"], programs["experts_p"], fabric=programs["spec"], kv_bytes=kv, activation_bytes=0.0)
    assert coe.plan.cache_bytes == pytest.approx(2.5 * expert_b)
    events = [coe.run(x) for x in _inputs_for_each_expert(programs["router"])]  # experts 0 1 2 1 0 2
    assert [e.access.hit for e in events] == [False, False, False, True, False, False]
    assert [e.access.evicted for e in events] == [(), (), (0,), (), (2,), (1,)]
    timeline = coe.simulate([Request(e) for e in (0, 1, 2, 1, 0, 2)], prefetch=False)
    assert [r.hit for r in timeline.requests] == [False, False, False, True, False, False]
    assert timeline.hit_rate == pytest.approx(1 / 6)
    router_s = programs["router_p"].report["totals"]["estimated_s"]
    assert timeline.requests[1].total_s == pytest.approx(
        router_s + expert_b / 4 / 2e9 + programs["experts_p"][1].report["totals"]["estimated_s"])


def test_refuses_a_coe_whose_expert_does_not_fit_hbm(programs: dict) -> None:
    with pytest.raises(CoEDoesNotFit, match="largest expert"):
        CoE(programs["router_p"], programs["experts_p"], fabric=programs["spec"], kv_bytes=65536 * 4.0)


def test_refuses_a_router_without_one_score_per_expert(programs: dict) -> None:
    coe = CoE(programs["router_p"], programs["experts_p"][:2], fabric=programs["spec"])
    with pytest.raises(RouterOutputError, match="one score per expert"):
        coe.run(torch.randn(1, 8))


def test_sockets_beyond_the_node_are_refused(programs: dict, tmp_path: Path) -> None:
    with pytest.raises(RduError, match="sockets=9"):
        CoE(programs["router_p"], programs["experts_p"], fabric=programs["spec"], sockets=9)
