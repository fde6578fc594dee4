"""Placement and routing (`rdu_compiler.plan.placement`) on plain data, the network term of the
cost model (hand-computed), and the pictures and trace of a placed program."""

from __future__ import annotations

import dataclasses
import json
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from rdu_compiler.cost import KernelLoad, SectionLoad, section_cost
from rdu_compiler.fabric import load_fabric
from rdu_compiler.plan.placement import (
    AGCU,
    PCU,
    PMU,
    Anneal,
    Flow,
    Grid,
    Group,
    PlacementError,
    Problem,
    RandomPlacement,
    RouteError,
    RowMajor,
    assign_agcus,
    check,
    gilbert_curve,
    hops,
    link_loads,
    make_strategy,
    place,
)
from rdu_compiler.plan.placement.grid import EAST, NORTH, SOUTH, WEST

ROOT = Path(__file__).resolve().parents[2]
SN40L = load_fabric("sn40l")

# ------------------------------------------------------------------ grid and routes


def test_gilbert_curve_visits_every_site_once_in_steps_of_one() -> None:
    for rows, cols in ((40, 52), (4, 4), (3, 5), (12, 12)):
        curve = gilbert_curve(rows, cols)
        assert sorted(curve) == [(r, c) for r in range(rows) for c in range(cols)]
        assert all(hops(a, b) == 1 for a, b in zip(curve, curve[1:], strict=False))


def test_route_is_xy_and_as_long_as_the_manhattan_distance() -> None:
    g = Grid(4, 6, ((1, -1), (2, 6)))
    route = g.route((0, 1), (3, 4))
    assert len(route) == hops((0, 1), (3, 4)) == 6
    ends = [g.link_ends(link) for link in route]
    assert ends[:3] == [((0, 1), (0, 2)), ((0, 2), (0, 3)), ((0, 3), (0, 4))]  # columns first
    assert ends[3:] == [((0, 4), (1, 4)), ((1, 4), (2, 4)), ((2, 4), (3, 4))]
    assert [link % 4 for link in route] == [EAST] * 3 + [SOUTH] * 3
    assert [link % 4 for link in g.route((3, 4), (0, 1))] == [WEST] * 3 + [NORTH] * 3


def test_routes_into_an_agcu_go_rows_first_and_never_along_the_agcu_column() -> None:
    g = Grid(4, 6, ((1, -1), (2, 6)))
    into = [g.link_ends(link) for link in g.route((3, 4), (1, -1))]
    assert into[0] == ((3, 4), (2, 4)) and into[-1] == ((1, 0), (1, -1))
    out = [g.link_ends(link) for link in g.route((1, -1), (3, 4))]
    assert out[0] == ((1, -1), (1, 0))
    for a, b in into + out:
        assert a[1] == b[1] or a[0] == b[0]
        assert not (a[1] == -1 and b[1] == -1)  # no step along the AGCU column


def test_route_off_the_grid_is_refused() -> None:
    g = Grid(4, 6, ((1, -1), (2, 6)))
    with pytest.raises(RouteError, match="leaves the 4 x 6 grid at \\(4, 0\\)"):
        g.route((0, 0), (4, 0))
    with pytest.raises(RouteError):
        g.route((0, 7), (0, 0))


# ------------------------------------------------------------------ nets and link loads


def two_kernel_problem() -> Problem:
    groups = (Group(0, PCU, 2, "a.pcu"), Group(0, PMU, 3, "a.buf"), Group(1, PCU, 1, "b.pcu"))
    flows = (
        Flow(AGCU, ((1, 300.0),), "load"),
        Flow(1, ((0, 600.0),), "a.buf -> PCUs"),
        Flow(0, ((2, 100.0), (AGCU, 50.0)), "a -> b and store"),
    )
    return Problem(("a", "b"), groups, flows)


def test_flows_split_evenly_over_max_group_size_nets() -> None:
    p = two_kernel_problem()
    assert p.offsets == (0, 2, 5) and p.num_units == 6
    buf_to_pcu = [n for n in p.nets if n.flow == 1]
    assert [(n.source, n.sinks) for n in buf_to_pcu] == [(2, ((0, 200.0),)), (3, ((1, 200.0),)), (4, ((0, 200.0),))]
    multicast = [n for n in p.nets if n.flow == 2]
    assert [(n.source, n.sinks) for n in multicast] == [(0, ((5, 50.0), (AGCU, 25.0))), (1, ((5, 50.0), (AGCU, 25.0)))]
    assert sum(b for n in p.nets for _, b in n.sinks) == 300 + 600 + 150


def test_problem_refuses_bad_groups_and_flows() -> None:
    with pytest.raises(ValueError, match="bad group"):
        Problem(("a",), (Group(0, "pcu", 0),))
    with pytest.raises(ValueError, match="names group 3"):
        Problem(("a",), (Group(0, PCU, 1),), (Flow(0, ((3, 1.0),)),))


def test_link_loads_by_hand_unicast_and_multicast() -> None:
    g = Grid(2, 4, ((0, -1), (1, 4)))
    groups = (Group(0, PCU, 1), Group(1, PMU, 1), Group(1, PMU, 1))
    p = Problem(("src", "dst"), groups, (Flow(0, ((1, 100.0), (2, 100.0)), "multicast"),))
    sites = [(0, 0), (0, 3), (1, 2)]
    # (0,0) -> (0,3): E E E; (0,0) -> (1,2): E E then S. Shared: the first two east links.
    load = link_loads(g, p, sites, [-1])
    assert load.traffic_hops == 100 * 4  # 4 distinct links, 100 B each (unicast would be 600)
    assert load.max_link_bytes == 100
    assert load.link_bytes[g.link((0, 0), EAST)] == 100
    assert load.link_bytes[g.link((0, 2), SOUTH)] == 100
    unicast = Problem(("src", "dst"), groups, (Flow(0, ((1, 100.0),)), Flow(0, ((2, 100.0),))))
    both = link_loads(g, unicast, sites, [-1, -1])
    assert both.traffic_hops == 600 and both.max_link_bytes == 200


def test_rows_first_routes_only_between_sites() -> None:
    g = Grid(4, 6, ((1, -1), (2, 6)))
    assert [link % 4 for link in g.route((0, 1), (3, 4), rows_first=True)] == [SOUTH] * 3 + [EAST] * 3
    # into and out of an AGCU the route is fixed (never along an AGCU column)
    assert g.route((3, 4), (1, -1), rows_first=True) == g.route((3, 4), (1, -1))
    assert g.route((1, -1), (3, 4), rows_first=True) == g.route((1, -1), (3, 4))


def test_balanced_routing_by_hand() -> None:
    # net 0: (0,0) -> (2,2), net 1: (0,1) -> (0,2), 100 B each, on a 3 x 3 grid.
    # XY: both use the east link (0,1)->(0,2): 200 B. Balanced: net 0 turns rows first
    # (S S E E along row 2) and shares no link with net 1: 100 B on every used link.
    g = Grid(3, 3, ((1, -1), (1, 3)))
    groups = tuple(Group(i, PCU if i % 2 == 0 else PMU, 1) for i in range(4))
    p = Problem(("a", "b", "c", "d"), groups, (Flow(0, ((1, 100.0),)), Flow(2, ((3, 100.0),))))
    sites = [(0, 0), (2, 2), (0, 1), (0, 2)]
    xy = link_loads(g, p, sites, [-1, -1])
    assert xy.max_link_bytes == 200 and xy.link_bytes[g.link((0, 1), EAST)] == 200
    bal = link_loads(g, p, sites, [-1, -1], routing="balanced")
    assert bal.max_link_bytes == 100
    assert bal.rows_first == (True, False)
    assert bal.link_bytes[g.link((0, 0), SOUTH)] == 100 and bal.link_bytes[g.link((2, 1), EAST)] == 100
    assert bal.traffic_hops == xy.traffic_hops == 500  # minimal routes either way
    with pytest.raises(ValueError, match="unknown routing 'adaptive'"):
        link_loads(g, p, sites, [-1, -1], routing="adaptive")


def test_balanced_routing_never_loads_the_hottest_link_more() -> None:
    # a random placement of a dense problem: balancing lowers (or keeps) the hottest link
    g = Grid(8, 8, ((2, -1), (5, -1), (2, 8), (5, 8)))
    groups = tuple(Group(i, PCU if i % 2 == 0 else PMU, 4) for i in range(6))
    flows = tuple(Flow(i, ((i + 1, 1000.0 * (i + 1)),)) for i in range(5))
    p = Problem(tuple("abcdef"), groups, flows)
    r = place(p, g, RandomPlacement(seed=1))
    xy = link_loads(g, p, r.sites, r.agcus)
    bal = link_loads(g, p, r.sites, r.agcus, routing="balanced")
    assert bal.max_link_bytes < xy.max_link_bytes
    assert bal.traffic_hops == pytest.approx(xy.traffic_hops)


def test_agcus_are_balanced_then_nearest() -> None:
    g = Grid(8, 8, ((1, -1), (5, -1), (2, 8), (6, 8)))
    groups = tuple(Group(i, PMU, 1) for i in range(8))
    p = Problem(tuple(f"k{i}" for i in range(8)), groups, tuple(Flow(AGCU, ((i, 10.0),)) for i in range(8)))
    sites = [(1, 0)] * 8  # all next to AGCU 0: balance still spreads them, 2 per AGCU
    agcus = assign_agcus(g, p, sites)
    assert sorted(agcus) == [0, 0, 1, 1, 2, 2, 3, 3]
    far = [(6, 7), (6, 7), (1, 0), (1, 0), (5, 1), (5, 0), (2, 6), (2, 7)]
    assert assign_agcus(g, p, far) == [3, 3, 0, 0, 1, 1, 2, 2]  # each to its nearest


# ------------------------------------------------------------------ strategies


def pipeline_problem(kernels: int, pcus: int, pmus: int, bytes_: float = 1e6) -> Problem:
    """A chain of kernels: load -> buffer -> PCUs -> out buffer -> next kernel's buffer ..."""
    groups: list[Group] = []
    flows: list[Flow] = []
    for k in range(kernels):
        pcu, inb, outb = len(groups), len(groups) + 1, len(groups) + 2
        groups += [Group(k, PCU, pcus), Group(k, PMU, pmus), Group(k, PMU, pmus)]
        source = AGCU if k == 0 else pcu - 1  # previous kernel's output buffer
        flows += [Flow(source, ((inb, bytes_),)), Flow(inb, ((pcu, 2 * bytes_),)), Flow(pcu, ((outb, bytes_),))]
    flows.append(Flow(len(groups) - 1, ((AGCU, bytes_),)))
    return Problem(tuple(f"k{k}" for k in range(kernels)), tuple(groups), tuple(flows))


@pytest.mark.parametrize("strategy", [RowMajor(), RandomPlacement(seed=1), Anneal(seed=0, effort=5)])
def test_every_strategy_gives_a_legal_placement(strategy: object) -> None:
    g = Grid(8, 8, ((2, -1), (5, 8)))
    p = pipeline_problem(6, 4, 2)
    result = place(p, g, strategy)  # type: ignore[arg-type]
    check(p, g, list(result.sites))
    assert all(a >= 0 for a, n in zip(result.agcus, p.nets, strict=True) if n.has_agcu)


def test_strategies_are_deterministic() -> None:
    g = Grid(8, 8, ((2, -1), (5, 8)))
    p = pipeline_problem(6, 4, 2)
    for name in ("anneal", "random", "row-major"):
        assert place(p, g, make_strategy(name, 7, 5)) == place(p, g, make_strategy(name, 7, 5))
    assert place(p, g, RandomPlacement(1)).sites != place(p, g, RandomPlacement(2)).sites


def test_anneal_beats_row_major_by_30_percent_on_a_pipeline() -> None:
    g = Grid(12, 12, ((2, -1), (9, -1), (2, 12), (9, 12)))
    p = pipeline_problem(8, 8, 4)
    cost = {}
    for strategy in (RowMajor(), Anneal(seed=0, effort=20)):
        r = place(p, g, strategy)
        cost[strategy.name] = link_loads(g, p, r.sites, r.agcus).traffic_hops
    assert cost["anneal"] <= 0.7 * cost["row-major"]


def test_too_many_units_is_a_placement_error() -> None:
    g = Grid(2, 2, ((0, -1), (1, 2)))
    p = Problem(("k",), (Group(0, PCU, 3),))
    with pytest.raises(PlacementError, match="3 PCUs do not fit the grid's 2 PCU sites"):
        place(p, g, RowMajor())
    with pytest.raises(ValueError, match="unknown placement strategy"):
        make_strategy("spiral")


def test_check_refuses_a_pcu_on_a_pmu_site_and_shared_sites() -> None:
    g = Grid(2, 2, ((0, -1), (1, 2)))
    p = Problem(("k",), (Group(0, PCU, 2),))
    with pytest.raises(PlacementError):
        check(p, g, [(0, 0), (0, 1)])
    with pytest.raises(PlacementError):
        check(p, g, [(0, 0), (0, 0)])


def test_full_sn40l_section_places_in_under_30_seconds() -> None:
    grid = Grid.from_fabric(SN40L)
    p = pipeline_problem(80, 13, 6)  # 80 x (13 + 12) = 2000 units
    assert p.num_units >= 2000
    start = time.perf_counter()
    result = place(p, grid, Anneal())
    assert time.perf_counter() - start < 30
    check(p, grid, list(result.sites))


# ------------------------------------------------------------------ the cost model's network term

# The round-numbers fabric of test_cost.py: 1e9 Hz, 10 B/cycle links -> 1e10 B/s per link.
ROUND = dataclasses.replace(
    load_fabric("tiny"), clock_hz=1e9, link_bytes_per_cycle=10, program_load_s=3e-6, argument_load_s=1e-6,
    pcu=dataclasses.replace(load_fabric("tiny").pcu, flops_per_cycle={"fp32": 100}),
)


def test_network_binds_when_the_busiest_link_is_slowest() -> None:
    # compute: 1e12 FLOP / (10 PCUs * 100 * 1e9) = 1 s; network: 3e10 B / 1e10 B/s = 3 s
    # total = max(1, 3) + fill 0 + launch 4e-6 = 3.000004 s, bound "network"
    k = KernelLoad("k", "matmul", "fp32", 10**12, 10, 5, 0, 1)
    cost = section_cost(SectionLoad("s", (k,), 0, 0, max_link_bytes=3 * 10**10), ROUND)
    assert cost.network_s == 3.0
    assert cost.bound == "network"
    assert cost.total_s == pytest.approx(3.0 + 4e-6, rel=1e-12)
    assert cost.to_dict()["network_s"] == 3.0


def test_network_below_the_other_resources_does_not_bind() -> None:
    # network 5e9 / 1e10 = 0.5 s < compute 1 s: compute binds, total 1 s + launch
    k = KernelLoad("k", "matmul", "fp32", 10**12, 10, 5, 0, 1)
    cost = section_cost(SectionLoad("s", (k,), 0, 0, max_link_bytes=5 * 10**9), ROUND)
    assert (cost.network_s, cost.bound) == (0.5, "compute")
    assert cost.total_s == pytest.approx(1.0 + 4e-6, rel=1e-12)
    unplaced = section_cost(SectionLoad("s", (k,), 0, 0), ROUND)
    assert unplaced.network_s == 0.0


def test_negative_link_bytes_are_refused() -> None:
    k = KernelLoad("k", "matmul", "fp32", 1, 1, 1, 0, 1)
    with pytest.raises(ValueError, match="negative"):
        section_cost(SectionLoad("s", (k,), 0, 0, max_link_bytes=-1), ROUND)


# ------------------------------------------------------------------ IR, pictures and trace


def placed_module() -> object:
    """The lit test's allocated two-kernel program (tiny), placed by rdu-place."""
    from rdu_compiler.ir import parse_module
    from rdu_compiler.pipeline import run_pipeline

    text = (ROOT / "testsuite/filecheck/passes/rdu-place.mlir").read_text().split("// -----")[0]
    module = parse_module(text)
    run_pipeline(module, ["rdu-place{fabric=tiny}"])
    return module


def test_ir_round_trip_and_network_in_the_report() -> None:
    from rdu_compiler.cost.analysis import build_report, section_load
    from rdu_compiler.dialects import rdu
    from rdu_compiler.passes.placement_ir import read_placement, section_network, section_problem

    module = placed_module()
    section = next(op for op in module.walk() if isinstance(op, rdu.SectionOp))  # type: ignore[attr-defined]
    tiny = load_fabric("tiny")
    grid = Grid.from_fabric(tiny)
    sp = section_problem(section)
    assert [g.size for g in sp.problem.groups] == [6, 2, 2, 2, 2, 1, 1]
    # the load flow carries exactly the HBM bytes the cost model reads for it
    load_flow = next(f for f in sp.problem.flows if f.source == AGCU)
    stores = sum(b for f in sp.problem.flows for s, b in f.sinks if s == AGCU)
    assert sum(b for _, b in load_flow.sinks) + stores == section_load(section).hbm_bytes
    placement = read_placement(sp, grid)
    assert placement is not None
    check(sp.problem, grid, list(placement.sites))
    net = section_network(section, grid)
    assert net is not None and net.max_link_bytes > 0
    report = build_report(module, tiny, 1)  # type: ignore[arg-type]
    s0 = report["sections"][0]
    assert s0["network"]["max_link_bytes"] == net.max_link_bytes
    assert s0["cost"]["network_s"] == pytest.approx(net.max_link_bytes / (64 * 1e9))
    assert 0 < s0["network"]["link_utilization"] <= 1


def test_plots_and_trace_are_written_and_well_formed(tmp_path: Path) -> None:
    from rdu_compiler.cost.analysis import build_report
    from rdu_compiler.runtime.trace import write_trace
    from rdu_compiler.tools.plots import write_plots

    module = placed_module()
    tiny = load_fabric("tiny")
    report = build_report(module, tiny, 1)  # type: ignore[arg-type]
    paths = write_plots(module, tiny, report, tmp_path / "plots")  # type: ignore[arg-type]
    names = sorted(p.name for p in paths)
    assert names == ["s0_placement.png", "s0_placement.svg", "timeline.png", "timeline.svg"]
    for p in paths:
        if p.suffix == ".png":
            assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        else:
            assert ET.parse(p).getroot().tag.endswith("svg")
    trace = json.loads(write_trace(tmp_path / "trace.json", report).read_text())
    slices = [e for e in trace["traceEvents"] if e["ph"] == "X"]
    assert {e["name"] for e in slices} == {"s0", "k1_map", "k2_map"}
    tracks = {e["args"]["name"] for e in trace["traceEvents"] if e["ph"] == "M" and e["name"] == "thread_name"}
    assert tracks == {"sections", "k1_map", "k2_map"}
    assert "modelled" in trace["otherData"]["timestamps"]


def test_rdu_compile_plot_and_trace_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from rdu_compiler.tools.rdu_compile import main

    plots, trace = tmp_path / "plots", tmp_path / "trace.json"
    main([str(ROOT / "examples/mlp.py"), "--fabric", "tiny", "-o", str(tmp_path / "out"),
          "--plot", str(plots), "--trace", str(trace)])
    text = capsys.readouterr().out
    assert "wrote trace" in text and "pictures to" in text
    assert (plots / "timeline.png").read_bytes()[:4] == b"\x89PNG"
    assert sorted(plots.glob("s*_placement.svg"))
    doc = json.loads(trace.read_text())
    assert any(e.get("pid") == 2 for e in doc["traceEvents"])  # the emulator's wall-clock track
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert all("network" in s for s in report["sections"])
    assert report["totals"]["max_link_bytes"] == max(s["network"]["max_link_bytes"] for s in report["sections"])


def test_report_table_shows_max_link_and_link_utilization() -> None:
    from rich.console import Console

    from rdu_compiler.cost.analysis import build_report
    from rdu_compiler.tools.report import print_report

    module = placed_module()
    report = build_report(module, load_fabric("tiny"), 1)  # type: ignore[arg-type]
    console = Console(width=250, record=True)
    print_report(console, report, "chain")
    text = console.export_text()
    assert "max link" in text and "link util" in text and "max link load / traffic x hops" in text


def test_identical_sections_are_placed_once_and_as_if_placed_alone() -> None:
    """rdu-place memoizes on `Problem.shape_key`: sections with equal keys (the -O0 sections of
    two identical layers) share one placement, which is exactly what placing each gives."""
    import torch

    import rdu_compiler
    from rdu_compiler.dialects import rdu
    from rdu_compiler.passes.placement_ir import (
        cached_link_loads,
        link_loads,
        read_placement,
        section_problem,
    )

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.ReLU(), torch.nn.Linear(16, 16), torch.nn.ReLU())
    program = rdu_compiler.compile(model, (torch.randn(4, 16),), fabric="tiny", opt_level=0)
    tiny = load_fabric("tiny")
    grid = Grid.from_fabric(tiny)
    strategy = make_strategy("anneal")
    keys = []
    for section in (op for op in program.module.walk() if isinstance(op, rdu.SectionOp)):
        sp = section_problem(section)
        recorded = read_placement(sp, grid)
        assert recorded is not None
        alone = place(sp.problem, grid, strategy)
        assert recorded.sites == alone.sites
        routing = section.routing.data
        net = cached_link_loads(grid, sp.problem, recorded, routing)
        fresh = link_loads(grid, sp.problem, recorded.sites, recorded.agcus, routing)
        assert net.max_link_bytes == fresh.max_link_bytes and (net.link_bytes == fresh.link_bytes).all()
        keys.append(sp.problem.shape_key)
    assert len(set(keys)) < len(keys)  # the two Linear+ReLU layers repeat: the memo is used
