"""rdu-place: give every kernel's PCUs and buffers' PMUs sites on the fabric grid.

This is the simplest legal placer: within each section, kernels take PCU sites and PMU
sites in row-major order of the fabric's checkerboard, each kernel a contiguous run.
It never puts two kernels on one site and never leaves the grid (the section verifier
checks both). It does not minimise network hops; that is a later placer's job.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import DenseArrayBase, ModuleOp, i64
from xdsl.passes import ModulePass

from rdu_compiler.dialects import rdu
from rdu_compiler.errors import CompileError
from rdu_compiler.passes.common import fabric_for


@dataclass(frozen=True)
class RduPlacePass(ModulePass):
    """Row-major placement of each section's kernels onto PCU and PMU sites."""

    name = "rdu-place"

    fabric: str = ""

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        fabric = fabric_for(self.name, self.fabric, op)
        for section in op.walk():
            if not isinstance(section, rdu.SectionOp):
                continue
            next_pcu, next_pmu = 0, 0
            for k in section.kernels():
                if k.pcus is None or k.buffers is None:
                    raise CompileError(self.name, f"kernel '{k.label}' has no units; run rdu-allocate first")
                pcus, pmus = k.pcus.value.data, k.total_pmus
                if next_pcu + pcus > fabric.num_pcus or next_pmu + pmus > fabric.num_pmus:
                    raise CompileError(self.name, f"section '{section.sym_name.data}' does not fit the grid")
                k.pcu_sites = DenseArrayBase.from_list(i64, list(range(next_pcu, next_pcu + pcus)))
                k.pmu_sites = DenseArrayBase.from_list(i64, list(range(next_pmu, next_pmu + pmus)))
                next_pcu += pcus
                next_pmu += pmus
