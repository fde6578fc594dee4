"""The section planner (plain data): cuts where the cost model says, not first fit."""

from __future__ import annotations

import pytest

from rdu_compiler.plan.sections import KernelNeeds, Machine, plan

# 1 Hz clock, 1 B/s HBM and no launch cost make times equal bytes: easy to check by hand.
M = Machine(pcus=3, pmus=100, clock_hz=1.0, hbm_bytes_per_s=1.0, launch_s=0.0)


def chain(sizes: list[int]) -> list[KernelNeeds]:
    """Kernel i reads kernel i-1's result (sizes[i-1] B; kernel 0 reads a 1 B argument)."""
    out = []
    for i, size in enumerate(sizes):
        source = (i - 1, sizes[i - 1]) if i else (-1, 1)
        last = i + 1 if i + 1 < len(sizes) else len(sizes)
        out.append(KernelNeeds(f"k{i}", 1, 1, 0.0, (source,), size, last))
    return out


def test_cut_where_least_data_crosses() -> None:
    # 4 kernels, 3 PCUs: one cut is needed. First fit cuts after k2 (k2 writes 100 B);
    # cutting after k0 (10 B) or k1 (100 B)... k0's 10 B is the cheapest crossing.
    result = plan(chain([10, 100, 100, 1]), M)
    assert result.starts == [0, 1]
    # section 0 = [k0]: loads 1 B, stores 10 B -> 11 s; section 1 = [k1..k3]: loads 10 B,
    # stores the 1 B result -> 11 s. First fit ([k0..k2], [k3]) would cost 101 + 101.
    assert result.cost_s == pytest.approx(22.0)
    assert result.reasons[0].startswith("cost model: cutting before 'k1'")
    assert result.reasons[1] == "end of program"


def test_no_cut_when_everything_fits() -> None:
    result = plan(chain([5, 5, 5]), M)
    assert result.starts == [0] and result.reasons == ["end of program"]


def test_fabric_full_reason() -> None:
    result = plan(chain([1, 1, 1, 1, 1, 1]), M)  # 6 kernels, 3 PCUs: two sections of 3
    assert result.starts == [0, 3]
    assert result.reasons[0].startswith("fabric full: adding 'k3' needs 4 PCUs")


def test_compute_bound_sections() -> None:
    # Two kernels of 6 cycles each on 3 PCUs: together max(12 / 3, 0 B) = 4 s; apart
    # max(6 / 3, 1 B stored) + max(6 / 3, 1 B loaded) = 4 s as well. On a tie the planner
    # keeps the larger section (fewer launches).
    ks = [KernelNeeds("a", 1, 1, 6.0, ((-1, 0),), 1, 1), KernelNeeds("b", 1, 1, 6.0, ((0, 1),), 0, 2)]
    assert plan(ks, M).starts == [0]


def test_kernel_too_big() -> None:
    with pytest.raises(ValueError, match="needs 4 PCUs"):
        plan([KernelNeeds("big", 4, 1, 0.0, (), 0, -1)], M)


def test_forced_cuts_are_starts_and_repeat_alike() -> None:
    # Two identical stretches of 4 kernels with a forced cut (a collective) between them.
    # Without it the cheapest plan cuts where the bytes are fewest, across the stretches
    # (a section k3..k5); with it every section stays inside one stretch, both cut alike.
    sizes = [100, 10, 100, 100, 100, 10, 100, 1]
    free = plan(chain(sizes), M)
    assert free.starts == [0, 3, 6]  # a section across the collective
    forced = plan(chain(sizes), M, frozenset({4}))
    assert 4 in forced.starts
    first = [s for s in forced.starts if s < 4]
    assert [s - 4 for s in forced.starts if s >= 4] == first
    assert forced.reasons[forced.starts.index(4) - 1].startswith("a collective follows")
