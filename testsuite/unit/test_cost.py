"""The static bandwidth model, checked against numbers computed by hand.

The made-up fabric below has round numbers so every expected time is easy to
verify on paper:

    clock 1e9 Hz; 4 x 10 checkerboard = 20 PCUs + 20 PMUs
    PCU: 100 FLOP/cycle fp32, 200 FLOP/cycle bf16  -> 1e11 / 2e11 FLOP/s per PCU
    PMU: 10 B/cycle                                -> 1e10 B/s per PMU
    AGCU: 2 x 10 B/cycle                           -> 2e10 B/s in all
    HBM 1e10 B/s, DDR 1e9 B/s
    launch: 3 us program load + 1 us argument load = 4 us
"""

from __future__ import annotations

import dataclasses
import json

import pytest

from rdu_compiler.cost import (
    KernelLoad,
    SectionLoad,
    program_cost,
    roofline,
    section_cost,
)
from rdu_compiler.fabric import (
    AGCUSpec,
    Fabric,
    FabricError,
    PCUSpec,
    PMUSpec,
    TierSpec,
    load_fabric,
)

LAUNCH_S = 4e-6

FABRIC = Fabric(
    name="round",
    source="test_cost",
    clock_hz=1e9,
    rows=4,
    cols=10,
    layout="checkerboard",
    pcu=PCUSpec(lanes=10, stages=5, flops_per_cycle={"fp32": 100, "bf16": 200}),
    pmu=PMUSpec(capacity_bytes=1 << 20, banks=2, bytes_per_cycle=10),
    agcu=AGCUSpec(count=2, bytes_per_cycle=10),
    hbm=TierSpec(capacity_bytes=1 << 30, bytes_per_s=1e10),
    ddr=TierSpec(capacity_bytes=1 << 34, bytes_per_s=1e9),
    link_bytes_per_cycle=10,
    program_load_s=3e-6,
    argument_load_s=1e-6,
    sockets=1,
    p2p_bytes_per_s=1e9,
)


def kernel(
    name: str = "k",
    flops: int = 0,
    pcus: int = 10,
    pmus: int = 5,
    pmu_bytes: int = 0,
    tiles: int = 1,
    dtype: str = "fp32",
) -> KernelLoad:
    return KernelLoad(name, "matmul", dtype, flops, pcus, pmus, pmu_bytes, tiles)


def section(*kernels: KernelLoad, hbm: int = 0, ddr: int = 0, name: str = "s") -> SectionLoad:
    return SectionLoad(name, kernels, hbm_bytes=hbm, ddr_bytes=ddr)


def test_one_kernel_compute_bound() -> None:
    # compute: 4e12 FLOP / (10 PCUs * 100 FLOP/cycle * 1e9 Hz = 1e12 FLOP/s) = 4 s
    # pmu:     1e11 B / (5 PMUs * 10 B/cycle * 1e9 Hz = 5e10 B/s)         = 2 s
    # hbm:     1e10 B / 1e10 B/s = 1 s;  ddr: 1e9 B / 1e9 B/s = 1 s
    # agcu:    (1e10 + 1e9) B / 2e10 B/s = 0.55 s
    # fill:    firsts = [4 s / 8 tiles = 0.5 s]; sum - max = 0.5 - 0.5 = 0 s
    #          (one kernel: its first tile is already inside the steady state)
    # total:   max(4, 2, 1, 1, 0.55) + 0 + 4e-6 = 4.000004 s
    k = kernel(flops=4 * 10**12, pmu_bytes=10**11, tiles=8)
    cost = section_cost(section(k, hbm=10**10, ddr=10**9), FABRIC)
    assert cost.kernels[0].compute_s == 4.0
    assert cost.kernels[0].pmu_s == 2.0
    assert cost.kernels[0].time_s == 4.0
    assert (cost.compute_s, cost.pmu_s, cost.hbm_s, cost.ddr_s) == (4.0, 2.0, 1.0, 1.0)
    assert cost.agcu_s == pytest.approx(0.55, rel=1e-12)
    assert cost.fill_s == 0.0
    assert cost.launch_s == pytest.approx(LAUNCH_S, rel=1e-12)
    assert cost.total_s == pytest.approx(4.0 + LAUNCH_S, rel=1e-12)
    assert cost.bound == "compute"


def test_dtype_rate() -> None:
    # bf16 runs at 200 FLOP/cycle: 4e12 / (10 * 200 * 1e9) = 2 s; "f32" aliases fp32: 4 s
    bf16 = section_cost(section(kernel(flops=4 * 10**12, dtype="bf16")), FABRIC)
    f32 = section_cost(section(kernel(flops=4 * 10**12, dtype="f32")), FABRIC)
    assert (bf16.compute_s, f32.compute_s) == (2.0, 4.0)


def test_pmu_bound() -> None:
    # compute 1e11 / 1e12 = 0.1 s; pmu 3e11 B / 5e10 B/s = 6 s
    # fill: firsts = [6 s / 2 tiles = 3 s]; 3 - 3 = 0 s; total 6 + 0 + 4e-6 = 6.000004 s
    k = kernel(flops=10**11, pmu_bytes=3 * 10**11, tiles=2)
    cost = section_cost(section(k), FABRIC)
    assert cost.bound == "pmu"
    assert (cost.pmu_s, cost.fill_s) == (6.0, 0.0)
    assert cost.total_s == pytest.approx(6.0 + LAUNCH_S, rel=1e-12)


def test_hbm_bound() -> None:
    # hbm 1e11 B / 1e10 B/s = 10 s; agcu 1e11 / 2e10 = 5 s; compute 1 s
    # fill: firsts = [1 s / 100 tiles = 0.01 s]; 0.01 - 0.01 = 0 s
    # total: 10 + 0 + 4e-6 = 10.000004 s
    k = kernel(flops=10**12, tiles=100)
    cost = section_cost(section(k, hbm=10**11), FABRIC)
    assert cost.bound == "hbm"
    assert (cost.hbm_s, cost.agcu_s, cost.fill_s) == (10.0, 5.0, 0.0)
    assert cost.total_s == pytest.approx(10.0 + LAUNCH_S, rel=1e-12)


def test_ddr_bound() -> None:
    # ddr 2e10 B / 1e9 B/s = 20 s; hbm 1e10 / 1e10 = 1 s; agcu 3e10 / 2e10 = 1.5 s
    cost = section_cost(section(kernel(), hbm=10**10, ddr=2 * 10**10), FABRIC)
    assert cost.bound == "ddr"
    assert (cost.ddr_s, cost.hbm_s, cost.agcu_s) == (20.0, 1.0, 1.5)
    assert cost.total_s == pytest.approx(20.0 + LAUNCH_S, rel=1e-12)


def test_agcu_bound() -> None:
    # one AGCU of 1 B/cycle = 1e9 B/s: agcu 1e10 B / 1e9 = 10 s > hbm 1e10 / 1e10 = 1 s
    narrow = dataclasses.replace(FABRIC, agcu=AGCUSpec(count=1, bytes_per_cycle=1))
    cost = section_cost(section(kernel(), hbm=10**10), narrow)
    assert cost.bound == "agcu"
    assert (cost.agcu_s, cost.hbm_s) == (10.0, 1.0)


def test_slowest_kernel_per_resource_and_fill() -> None:
    # a: compute 4e12 / 1e12 = 4 s, pmu 5e10 / 5e10 = 1 s -> time 4 s, 4 tiles -> first 1 s
    # b: compute 2e11 / (2 PCUs * 1e11) = 1 s, pmu 3e10 / (1 PMU * 1e10) = 3 s
    #    -> time 3 s, 3 tiles -> first 1 s
    # section: compute = 4 (a), pmu = 3 (b), fill = (1 + 1) - max(1, 1) = 1 s,
    #          total = 4 + 1 + 4e-6 = 5.000004 s
    a = kernel("a", flops=4 * 10**12, pmu_bytes=5 * 10**10, tiles=4)
    b = kernel("b", flops=2 * 10**11, pcus=2, pmus=1, pmu_bytes=3 * 10**10, tiles=3)
    cost = section_cost(section(a, b), FABRIC)
    assert [k.name for k in cost.kernels] == ["a", "b"]
    assert [k.time_s for k in cost.kernels] == [4.0, 3.0]
    assert (cost.compute_s, cost.pmu_s, cost.fill_s) == (4.0, 3.0, 1.0)
    assert cost.total_s == pytest.approx(5.0 + LAUNCH_S, rel=1e-12)


def test_ties_pick_first_in_order() -> None:
    # compute 1e12 / 1e12 = 1 s == pmu 5e10 / 5e10 = 1 s == hbm 1e10 / 1e10 = 1 s
    k = kernel(flops=10**12, pmu_bytes=5 * 10**10)
    assert section_cost(section(k, hbm=10**10), FABRIC).bound == "compute"
    # hbm 1e10 / 1e10 = 1 s == ddr 1e9 / 1e9 = 1 s, everything else smaller
    assert section_cost(section(kernel(), hbm=10**10, ddr=10**9), FABRIC).bound == "hbm"


def test_zero_flop_kernel_costs_no_compute() -> None:
    # a copy kernel: no FLOPs, any dtype (even one without a rate), only PMU time
    k = kernel(flops=0, pmu_bytes=5 * 10**10, dtype="i1")
    cost = section_cost(section(k), FABRIC)
    assert (cost.compute_s, cost.pmu_s, cost.bound) == (0.0, 1.0, "pmu")


def test_empty_section_costs_launch_only() -> None:
    cost = section_cost(section(), FABRIC)
    assert (cost.compute_s, cost.fill_s, cost.bound) == (0.0, 0.0, "compute")
    assert cost.total_s == pytest.approx(LAUNCH_S, rel=1e-12)


def test_program_is_sum_of_sections() -> None:
    # s1: 4 s compute + fill 0 (one kernel: 4 s / 1 tile - max 4 s) + 4 us = 4.000004 s
    # s2: 10 s hbm + fill 0 (one kernel, and an empty kernel takes 0 s) + 4 us = 10.000004 s
    # program: 14.000008 s
    s1 = section(kernel(flops=4 * 10**12), name="s1")
    s2 = section(kernel(), hbm=10**11, name="s2")
    cost = program_cost([s1, s2], FABRIC)
    assert [s.name for s in cost.sections] == ["s1", "s2"]
    assert [s.bound for s in cost.sections] == ["compute", "hbm"]
    assert [s.fill_s for s in cost.sections] == [0.0, 0.0]
    assert cost.total_s == pytest.approx(14.0 + 2 * LAUNCH_S, rel=1e-12)
    assert program_cost([], FABRIC).total_s == 0.0


def test_fusion_saves_launches_and_traffic() -> None:
    # each kernel: 1e11 FLOP / 1e12 FLOP/s = 0.1 s, 1 tile
    # unfused: 2 sections, the intermediate (1e10 B) stored, then loaded, through HBM:
    #   2 * (hbm 1e10 / 1e10 = 1 s + fill 0.1 - 0.1 = 0 s + launch) = 2 s + 2 launches
    # fused: one section, no HBM traffic:
    #   compute 0.1 s + fill (0.1 + 0.1) - 0.1 = 0.1 s + launch = 0.2 s + 1 launch
    a, b = kernel("a", flops=10**11), kernel("b", flops=10**11)
    unfused = program_cost([section(a, hbm=10**10), section(b, hbm=10**10)], FABRIC)
    fused = program_cost([section(a, b)], FABRIC)
    assert unfused.total_s == pytest.approx(2.0 + 2 * LAUNCH_S, rel=1e-12)
    assert fused.total_s == pytest.approx(0.2 + LAUNCH_S, rel=1e-12)
    assert fused.total_s < unfused.total_s


def test_roofline_compute_and_hbm_bound() -> None:
    # peak fp32: 20 PCUs * 100 FLOP/cycle * 1e9 = 2e12 FLOP/s
    # 4e12 FLOP -> 2 s; 1e10 B / 1e10 B/s -> 1 s: compute-bound at 2 s
    r = roofline(4 * 10**12, 10**10, "fp32", FABRIC)
    assert (r.compute_s, r.memory_s, r.bound_s, r.bound) == (2.0, 1.0, 2.0, "compute")
    # 3e10 B -> 3 s: hbm-bound at 3 s
    r = roofline(4 * 10**12, 3 * 10**10, "fp32", FABRIC)
    assert (r.compute_s, r.memory_s, r.bound_s, r.bound) == (2.0, 3.0, 3.0, "hbm")
    # a tie is compute-bound
    assert roofline(2 * 10**12, 10**10, "fp32", FABRIC).bound == "compute"


def test_roofline_sn40l_decode_is_hbm_bound() -> None:
    # Llama 3.1 8B decode at batch 1 (Kernel Looping): 20 GFLOP and 15.4 GB per token
    # compute 20e9 / 638.976e12 = 31 us; memory 15.4e9 / 1.8e12 = 8.56 ms
    r = roofline(20 * 10**9, 154 * 10**8, "bf16", load_fabric("sn40l"))
    assert r.bound == "hbm"
    assert r.memory_s == pytest.approx(15.4e9 / 1.8e12, rel=1e-12)
    assert r.compute_s == pytest.approx(20e9 / (1040 * 384 * 1.6e9), rel=1e-12)


@pytest.mark.parametrize(("pcus", "pmus"), [(0, 1), (1, 0), (-1, 1)])
def test_kernel_without_units_is_an_error(pcus: int, pmus: int) -> None:
    load = section(kernel("orphan_matmul", flops=10, pcus=pcus, pmus=pmus))
    with pytest.raises(ValueError, match="orphan_matmul"):
        section_cost(load, FABRIC)


def test_invalid_counts_are_errors() -> None:
    with pytest.raises(ValueError, match="zero_tiles"):
        section_cost(section(kernel("zero_tiles", tiles=0)), FABRIC)
    with pytest.raises(ValueError, match="negative"):
        section_cost(section(kernel("neg", flops=-1)), FABRIC)
    with pytest.raises(ValueError, match="neg_section"):
        section_cost(section(kernel(), hbm=-1, name="neg_section"), FABRIC)
    with pytest.raises(ValueError):
        roofline(-1, 0, "fp32", FABRIC)


def test_unknown_dtype_is_a_fabric_error() -> None:
    with pytest.raises(FabricError, match="fp8"):
        section_cost(section(kernel(flops=10, dtype="fp8")), FABRIC)
    with pytest.raises(FabricError, match="fp8"):
        roofline(10, 0, "fp8", FABRIC)


def test_to_dict_is_json() -> None:
    load = section(kernel(flops=10**12, pmu_bytes=10**10), hbm=10**9)
    cost = program_cost([load], FABRIC)
    data = json.loads(json.dumps(cost.to_dict()))
    assert data["total_s"] == cost.total_s
    assert data["sections"][0]["bound"] == "compute"
    assert data["sections"][0]["kernels"][0]["name"] == "k"
    assert json.loads(json.dumps(load.to_dict()))["kernels"][0]["flops"] == 10**12
    assert json.loads(json.dumps(roofline(1, 1, "fp32", FABRIC).to_dict()))["bound"] == "hbm"
