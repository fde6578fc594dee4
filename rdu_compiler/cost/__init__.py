"""The static bandwidth cost model and the roofline bound."""

from rdu_compiler.cost.model import (
    KernelCost,
    KernelLoad,
    ProgramCost,
    Roofline,
    SectionCost,
    SectionLoad,
    program_cost,
    roofline,
    section_cost,
)

__all__ = [
    "KernelCost",
    "KernelLoad",
    "ProgramCost",
    "Roofline",
    "SectionCost",
    "SectionLoad",
    "program_cost",
    "roofline",
    "section_cost",
]
