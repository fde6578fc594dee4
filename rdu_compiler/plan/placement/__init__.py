"""Placement and routing over plain data (no IR): the grid, a section's units and flows,
strategies that place them, and the network load of a placement.

The IR adapter (problems from sections, placements written back) is `passes/placement_ir`;
this package is tested without IR.
"""

from rdu_compiler.plan.placement.grid import Grid, RouteError, Site, gilbert_curve, hops
from rdu_compiler.plan.placement.network import (
    ROUTINGS,
    NetworkLoad,
    assign_agcus,
    link_loads,
    nearest_agcus,
)
from rdu_compiler.plan.placement.problem import AGCU, PCU, PMU, Flow, Group, Net, Problem
from rdu_compiler.plan.placement.strategies import (
    STRATEGIES,
    Anneal,
    Placement,
    PlacementError,
    RandomPlacement,
    RowMajor,
    check,
    curve_start,
    make_strategy,
    place,
)

__all__ = [
    "AGCU",
    "PCU",
    "PMU",
    "ROUTINGS",
    "STRATEGIES",
    "Anneal",
    "Flow",
    "Grid",
    "Group",
    "Net",
    "NetworkLoad",
    "Placement",
    "PlacementError",
    "Problem",
    "RandomPlacement",
    "RouteError",
    "RowMajor",
    "Site",
    "assign_agcus",
    "check",
    "curve_start",
    "gilbert_curve",
    "hops",
    "link_loads",
    "make_strategy",
    "nearest_agcus",
    "place",
]
