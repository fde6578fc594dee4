"""rdu-place: put every kernel's PCUs and buffers' PMUs on grid sites, and route the streams.

For each section the pass builds the placement problem (`passes.placement_ir`: the units
of each kernel and the bytes flowing between them), places it with a strategy
(`placement.strategies`), picks the AGCU of every load, store and gather net, and
records the result on the IR: `pcu_sites` / `pmu_sites` on kernels as (row, col) pairs,
`agcu_sites` on loads, stores and gathering kernels, and the grid shape on the section.
Routes are dimension-order between those endpoints; the cost model derives the link
loads from them (`cost.analysis`).

    rdu-place{fabric=sn40l strategy=anneal seed=0 effort=20 routing=balanced}

`strategy`: `anneal` (default: greedy Hilbert-curve start, then simulated annealing of
bytes x hops), `row-major` (the old placer, a baseline) or `random`. `effort`: annealing
moves per unit (0 keeps the greedy start). `routing`: `balanced` (default: each
on-chip net routed XY or YX to even out link loads, static compiler-chosen flows) or
`dimension-order` (every net XY); recorded on the section as `routing`, and the routes
are a deterministic function of the placement and it (`placement.network`). Same input
and options, same placement and routes. Sections that are the same placement problem
(`Problem.shape_key`: units and flows, not names; the -O0 sections of repeated layers)
are placed once and share the result, which is what placing each would give.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import DenseArrayBase, ModuleOp, i64
from xdsl.passes import ModulePass

from rdu_compiler.dialects import rdu
from rdu_compiler.errors import CompileError
from rdu_compiler.passes.common import fabric_for
from rdu_compiler.passes.placement_ir import section_problem, write_placement
from rdu_compiler.plan.placement import Grid, Placement, PlacementError, make_strategy, place
from rdu_compiler.plan.placement.network import ROUTINGS


@dataclass(frozen=True)
class RduPlacePass(ModulePass):
    """Place each section's units on the fabric grid with a placement strategy."""

    name = "rdu-place"

    fabric: str = ""
    strategy: str = "anneal"
    seed: int = 0
    effort: int = 20
    routing: str = "balanced"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        fabric = fabric_for(self.name, self.fabric, op)
        try:
            strategy = make_strategy(self.strategy, self.seed, self.effort)
        except ValueError as e:
            raise CompileError(self.name, str(e)) from e
        if self.routing not in ROUTINGS:
            raise CompileError(self.name, f"unknown routing {self.routing!r}; choose one of {', '.join(ROUTINGS)}")
        grid = Grid.from_fabric(fabric)
        placed: dict[tuple[object, ...], Placement] = {}  # identical sections are placed once
        for section in op.walk():
            if not isinstance(section, rdu.SectionOp):
                continue
            name = section.sym_name.data
            try:
                sp = section_problem(section)
                key = sp.problem.shape_key
                if key not in placed:
                    placed[key] = place(sp.problem, grid, strategy)
                placement = placed[key]
            except (ValueError, PlacementError) as e:
                raise CompileError(self.name, f"section '{name}': {e}") from e
            write_placement(sp, placement, grid)
            section.grid = DenseArrayBase.from_list(i64, [grid.rows, grid.cols])
            section.routing = rdu.RoutingAttr(rdu.Routing(self.routing))
