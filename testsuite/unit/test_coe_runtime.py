"""The CoE runtime without compiling (issue 14): LRU on hand-made sequences, capacities,
switching cost = bytes / bandwidth, refusal when experts exceed DDR, GPU boxes as data."""

from __future__ import annotations

import pytest

from rdu_compiler.coe import (
    DGX_A100,
    DGX_H100,
    CoEDoesNotFit,
    ExpertCache,
    Request,
    gpu_node,
    plan_memory,
    simulate,
)
from rdu_compiler.coe.gpu import UnknownGpuNode
from rdu_compiler.coe.llama import LLAMA2_7B, GpuLlamaTiming
from rdu_compiler.coe.runtime import switch_seconds
from rdu_compiler.fabric import load_fabric


def test_lru_hits_evictions_and_capacity() -> None:
    cache = ExpertCache(30.0)
    seq = [(0, 10), (1, 10), (2, 10), (0, 10), (3, 10), (1, 10), (3, 10)]
    events = [cache.access(e, b) for e, b in seq]
    assert [a.hit for a in events] == [False, False, False, True, False, False, True]
    # 3 evicts 1 (0 was touched after 1); 1 then evicts 2; the last hit moves 3 to the end
    assert [a.evicted for a in events] == [(), (), (), (), (1,), (2,), ()]
    assert cache.resident == [0, 1, 3] and cache.used_bytes == 30.0
    assert cache.hit_rate == pytest.approx(2 / 7)


def test_a_large_expert_evicts_several_and_a_too_large_one_is_refused() -> None:
    cache = ExpertCache(30.0)
    for e in (0, 1, 2):
        cache.access(e, 10)
    assert cache.access(9, 25).evicted == (0, 1, 2)
    with pytest.raises(CoEDoesNotFit, match="larger than the HBM cache"):
        cache.access(10, 31)


def test_switching_cost_is_bytes_over_bandwidth_per_socket(tmp_path) -> None:
    spec = tmp_path / "n.toml"
    spec.write_text('extends = "sn40l"\n[fabric]\nname = "hand"\n[sockets]\ncount = 4\ntopology = "ring"\n'
                    "p2p_bytes_per_s = 1e9\nhop_latency_s = 1e-6\nsync_s = 1e-6\nddr_to_hbm_bytes_per_s = 5e9\n")
    node = load_fabric(str(spec)).node
    # 4 sockets copy 1 GB / 4 each at 5 GB/s: 0.05 s
    assert switch_seconds(1e9, node.ddr_to_hbm_bytes_per_s, node.sockets) == pytest.approx(0.05)
    assert switch_seconds(1e9, 5e9) == pytest.approx(0.2)
    with pytest.raises(ValueError):
        switch_seconds(1.0, 5e9, 0)


def test_paper_switching_ratios_follow_from_the_specs() -> None:
    node = load_fabric("sn40l-node8").node
    rdu = switch_seconds(LLAMA2_7B.weight_bytes, node.ddr_to_hbm_bytes_per_s, node.sockets)
    assert rdu == pytest.approx(13.4768e9 / 1e12, rel=1e-3)  # > 1 TB/s per node [P]
    assert DGX_H100.switch_s(LLAMA2_7B.weight_bytes) / rdu == pytest.approx(1e12 / 64e9)  # 15.6x
    assert DGX_A100.switch_s(LLAMA2_7B.weight_bytes) / rdu == pytest.approx(1e12 / 32e9)  # 31.25x


def test_refuses_experts_that_exceed_ddr_naming_the_sizes() -> None:
    fab = load_fabric("sn40l-node8")
    ddr = fab.ddr.capacity_bytes * 8
    fits = int(ddr // LLAMA2_7B.weight_bytes)
    plan_memory(fab.hbm.capacity_bytes * 8, ddr, LLAMA2_7B.weight_bytes, [LLAMA2_7B.weight_bytes] * fits)
    assert 850 <= fits < 1000  # the paper: up to 850 experts per node
    with pytest.raises(CoEDoesNotFit) as e:
        plan_memory(fab.hbm.capacity_bytes * 8, ddr, LLAMA2_7B.weight_bytes, [LLAMA2_7B.weight_bytes] * (fits + 1))
    msg = str(e.value)
    assert f"{fits + 1} experts need" in msg and "GB of DDR" in msg and f"at most {fits} fit" in msg


def test_memory_plan_and_a_simulated_timeline() -> None:
    plan = plan_memory(100.0, 1000.0, 20.0, [30.0, 30.0, 30.0], kv_bytes=10.0, activation_bytes=5.0)
    assert plan.cache_bytes == 65.0  # two experts resident

    class Fixed:
        def router_s(self, request: Request) -> float:
            return 1.0

        def exec_s(self, request: Request) -> float:
            return 2.0 * request.output

    t = simulate([Request(0, output=1), Request(1), Request(0), Request(2), Request(1, output=3)], [30.0] * 3, plan,
                 lambda b: b / 10.0, Fixed(), "hand", prefetch=False)
    assert [r.hit for r in t.requests] == [False, False, True, False, False]
    assert [r.switch_s for r in t.requests] == [3.0, 3.0, 0.0, 3.0, 3.0]
    assert [r.start_s for r in t.requests] == [0.0, 6.0, 12.0, 15.0, 21.0]
    assert t.total() == pytest.approx(31.0) and t.to_dict()["totals"]["switch_s"] == 12.0
    with pytest.raises(CoEDoesNotFit, match="expert 5"):
        simulate([Request(5)], [30.0] * 3, plan, lambda b: 0.0, Fixed(), "hand")
    # prefetch: the next request is routed first and its expert copied during this run when it fits beside it
    p = simulate([Request(0, output=1), Request(1), Request(0), Request(2), Request(1, output=3)], [30.0] * 3, plan,
                 lambda b: b / 10.0, Fixed(), "hand")
    assert [r.hit for r in p.requests] == [r.hit for r in t.requests]  # same accesses, same order
    assert [r.evicted for r in p.requests] == [r.evicted for r in t.requests]
    assert [r.switch_s for r in p.requests] == [3.0, 1.0, 0.0, 1.0, 1.0]  # a 3 s copy beside a 2 s run: 1 s exposed
    assert [r.hidden_switch_s for r in p.requests] == [0.0, 2.0, 0.0, 2.0, 2.0]
    assert [r.prefetched for r in p.requests] == [False, True, False, True, True]
    assert [r.start_s for r in p.requests] == [0.0, 4.0, 8.0, 11.0, 15.0]
    assert [r.exec_start_s for r in p.requests] == [5.0, 9.0, 12.0, 16.0, 19.0]
    assert p.total() == pytest.approx(25.0)


class _Random:
    def __init__(self, seed: int):
        import random

        self.rng = random.Random(seed)
        self.router = {}
        self.run = {}

    def router_s(self, request: Request) -> float:
        return self.router.setdefault(id(request), self.rng.uniform(0.0, 0.5))

    def exec_s(self, request: Request) -> float:
        return self.run.setdefault(id(request), self.rng.uniform(0.0, 4.0))


@pytest.mark.parametrize("seed", range(12))
def test_prefetch_never_runs_an_expert_before_it_is_resident_nor_evicts_a_running_one(seed: int) -> None:
    import random

    rng = random.Random(seed)
    sizes = [10.0, 20.0, 30.0, 45.0, 45.0, 30.0]
    rng.shuffle(sizes)
    plan = plan_memory(90.0, 1e9, 10.0, sizes)  # 80 bytes of cache: two 45s do not fit together, the rest do
    big = [i for i, b in enumerate(sizes) if b == 45.0]
    reqs = [Request(rng.randrange(6)) for _ in range(60)] + [Request(big[0]), Request(big[1])]  # the second cannot be prefetched
    timing = _Random(seed)
    off = simulate(reqs, sizes, plan, lambda b: b / 10.0, timing, "hand", prefetch=False)
    on = simulate(reqs, sizes, plan, lambda b: b / 10.0, timing, "hand")
    assert [r.hit for r in on.requests] == [r.hit for r in off.requests]
    assert on.total() <= off.total() + 1e-9
    assert on.total("switch_s") + on.total("hidden_switch_s") == pytest.approx(off.total("switch_s"))
    assert any(r.prefetched for r in on.requests) and any(not r.hit and not r.prefetched for r in on.requests[1:])
    for r in on.requests:
        run = (r.exec_start_s, r.exec_start_s + r.exec_s)
        loads = [c for c in on.copies if c.expert == r.expert and c.start_s <= run[0]]
        assert loads, f"request {r.index} ran expert {r.expert} that was never copied"
        last = loads[-1]
        assert last.end_s <= run[0] + 1e-12, f"request {r.index} started before its copy ended"
        for c in on.copies:  # nothing evicts the expert between its last copy and the end of this run
            if c.start_s >= last.start_s and c is not last and c.start_s < run[1]:
                assert r.expert not in c.evicted, f"request {r.index}'s expert {r.expert} evicted at {c.start_s} while needed"
        # the copies' bytes in HBM never exceed the cache (each copy reserves its space at its start)
    resident: dict[int, float] = {}
    for c in on.copies:
        for e in c.evicted:
            resident.pop(e)
        resident[c.expert] = sizes[c.expert]
        assert sum(resident.values()) <= plan.cache_bytes


def test_gpu_nodes_and_hbm_bound_decode() -> None:
    assert gpu_node("dgx-h100") is DGX_H100
    with pytest.raises(UnknownGpuNode, match="dgx-a100, dgx-h100"):
        gpu_node("dgx-b200")
    # one decode step = streamed weights + KV over 8 GPUs' HBM, plus 2 all-reduces per layer
    t = GpuLlamaTiming(LLAMA2_7B, LLAMA2_7B, DGX_H100)
    r = Request(0, prompt=100, output=3)
    step = (LLAMA2_7B.streamed_bytes + LLAMA2_7B.kv_bytes(101)) / 8 / 3.35e12 + 64 * DGX_H100.all_reduce_s(8192)
    assert t.exec_s(r) - t.router_s(r) == pytest.approx(2 * step)


def test_llama_spec_counts_the_parameters_of_the_meta_model() -> None:
    from rdu_compiler.bench.models import LayerShape, llama_model

    model, _ = llama_model(LayerShape(seq=1), layers=32, vocab=32000)
    assert LLAMA2_7B.params == sum(p.numel() for p in model.parameters()) == 6_738_415_616


def test_tp_step_is_the_sharded_layer_programs_node_time() -> None:
    """rdu_tp_step_s compiles the whole layer with rdu-shard: the step is layers x the
    node's time for one layer call (sections + the two all-reduces in the IR + sync), plus
    the LM head's shard; the all-reduces are Megatron's, of batch x seq x hidden bf16."""
    import rdu_compiler
    from rdu_compiler.coe.llama import LlamaSpec, rdu_tp_step_s, tp_layer
    from rdu_compiler.cost.collectives import all_reduce
    from rdu_compiler.errors import RduError

    toy = LlamaSpec("toy", hidden=256, heads=8, kv_heads=8, mlp=512, layers=3, vocab=1000)
    layer, inputs = tp_layer(toy, 1, seq=1, past=16, batch=1)
    node = load_fabric("sn40l-node8")
    step = rdu_tp_step_s(toy, "sn40l-node8", 4, 1, 16, 1)  # batch 1: at batch 2 rdu-shard's layout differs (docs/coe.md)
    report = rdu_compiler.compile(layer, inputs, fabric="sn40l-node8", tp=4).report
    assert [c["op"] for c in report["collectives"]] == ["rdu.all_reduce", "rdu.all_reduce"]
    # each all-reduce sums the f32 partials of batch x seq x hidden (before the bf16 cast)
    assert [c["bytes_per_socket"] for c in report["collectives"]] == [1 * 1 * 256 * 4] * 2
    ar = all_reduce(node.node, 1 * 1 * 256 * 4, group=4).seconds
    assert step["all_reduce_s"] == pytest.approx(ar)
    assert step["layer_s"] == pytest.approx(report["totals"]["socket_sections_s"])
    lm = 1000 * 256 * 2 / 4 / node.hbm.bytes_per_s
    node_layer = step["layer_s"] + 2 * ar + node.node.sync_s
    assert report["totals"]["estimated_s"] == pytest.approx(node_layer)
    assert step["step_s"] == pytest.approx(3 * node_layer + lm)
    assert 0 < step["activation_bytes"] < report["totals"]["hbm_peak_bytes"]
    with pytest.raises(RduError, match="tp=3 must divide"):
        tp_layer(toy, 3, 1, 0, 1)
    with pytest.raises(RduError, match="tp=16 needs 16 sockets"):
        rdu_tp_step_s(toy, "sn40l-node8", 16, 1, 0, 1)
