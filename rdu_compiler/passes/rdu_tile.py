"""rdu-tile: choose tile sizes so every buffer of a kernel, double-buffered, fits its PMUs.

Each kernel may give one operand buffer at most `max_buffer_pmus` PMUs (0: no limit, as
at -O0 where every operator has the whole fabric), and no more than its share of the
fabric (PMUs / operands), so that a kernel fits a section alone whenever
the fabric has at least one PMU per operand buffer (rdu-section refuses it otherwise).
Starting from the whole iteration domain, the pass repeatedly halves one loop of the
operand that overflows most until every buffer fits. The loop to halve is the one whose
halving adds the least off-chip/PMU traffic by the bandwidth model (an operand is re-read
once per tile of each loop it does not depend on); ties go to the largest loop. The
result is the largest tiles that fit, searched against the traffic they cause. The
choice goes to the kernel's `tile`.

A hash probe's cuckoo index moves into the probe's PMUs (a second input, read once whole)
when it fits one buffer and loading it plus probing it there is faster than probing it off
chip; else it stays a capture probed in its memory tier (`_place_index`). With
`resident_index=true` (a serving program that keeps its indexes in PMUs from call to call)
every probe's index moves there, marked `rdu.index_resident_across_calls`, whatever the time
rule says; an index that does not fit one buffer is refused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import DenseArrayBase, ModuleOp, UnitAttr, i64
from xdsl.passes import ModulePass

from rdu_compiler.dialects.rdu import KernelOp, Pattern, shape_of
from rdu_compiler.errors import CompileError
from rdu_compiler.fabric import Fabric
from rdu_compiler.kernel.access import Access, traffic_elements
from rdu_compiler.kernel.traffic import (
    DEPTH,
    RESIDENT_INDEX_ATTR,
    itemsize,
    operand_tile_bytes,
    untileable_dims,
)
from rdu_compiler.passes.common import fabric_for, kernels


def choose_tile(kernel: KernelOp, budget_bytes: int) -> list[int]:
    """Largest tile (by repeated halving) whose every operand tile is <= budget_bytes/DEPTH.

    Raises:
        CompileError: no tile fits (a loop that cannot be tiled is too large).
    """
    tile = list(kernel.domain_sizes)
    fixed = untileable_dims(kernel)
    accesses = [Access.from_map(m.data) for m in kernel.indexing_maps.data]
    limit = budget_bytes // DEPTH
    while True:
        sizes = operand_tile_bytes(kernel, tile)
        worst = max(range(len(sizes)), key=lambda i: sizes[i], default=None)
        if worst is None or sizes[worst] <= limit:
            return tile
        candidates = [d for d in accesses[worst].dims if d not in fixed and tile[d] > 1]
        if not candidates:
            raise CompileError(
                "rdu-tile",
                f"kernel '{kernel.label}': operand {worst} needs {sizes[worst]} B per tile even at the "
                f"smallest tile, over the {limit} B a buffer may hold; use a fabric with larger PMUs",
            )
        d = min(candidates, key=lambda c: (_traffic_after_halving(kernel, accesses, tile, c), -tile[c]))
        tile[d] = math.ceil(tile[d] / 2)


def _traffic_after_halving(kernel: KernelOp, accesses: list[Access], tile: list[int], dim: int) -> int:
    """Bytes all operands move (tile re-reads included) if loop `dim`'s tile is halved.

    This is the term of the bandwidth model that tile sizes change: an operand is re-read
    once per tile of every loop it does not depend on (`tiling.traffic_elements`).
    """
    trial = list(tile)
    trial[dim] = math.ceil(trial[dim] / 2)
    operands = [*kernel.inputs, *kernel.inits]
    return sum(
        traffic_elements(a, kernel.domain_sizes, trial) * itemsize(v.type)
        for a, v in zip(accesses, operands, strict=True)
        if a.forms
    )


@dataclass(frozen=True)
class RduTilePass(ModulePass):
    """Set `tile` on every kernel so each operand buffer, double-buffered, fits its PMUs."""

    name = "rdu-tile"

    fabric: str = ""
    max_buffer_pmus: int = 8
    resident_index: bool = False

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        fabric = fabric_for(self.name, self.fabric, op)
        for kernel in [k for k in kernels(op) if k.kind.data == Pattern.HASH_PROBE and k.captures]:
            self._place_index(kernel, fabric)
        if self.resident_index:
            op.attributes[RESIDENT_INDEX_ATTR] = UnitAttr()
        for kernel in kernels(op):
            n_buffers = max(1, sum(1 for b in operand_tile_bytes(kernel, [1] * len(kernel.domain_sizes)) if b))
            share = fabric.num_pmus // n_buffers
            pmus = max(1, min(self.max_buffer_pmus, share) if self.max_buffer_pmus > 0 else share)
            tile = choose_tile(kernel, pmus * fabric.pmu.capacity_bytes)
            kernel.tile = DenseArrayBase.from_list(i64, tile)

    def _place_index(self, kernel: KernelOp, fabric: Fabric) -> None:
        """A hash probe's index goes into its PMUs, read once whole, when it fits one buffer
        (DEPTH-fold, as every buffer is sized) and that is faster by the bandwidth model:
        loading it (its bytes over HBM bandwidth) plus reading each ID's 2 buckets from the
        buffer's PMUs (at most the `pmus` a buffer may take, `pmu.bytes_per_cycle` each, [NF]:
        rdu-allocate gives spare PMUs to the buffers with the most traffic) against the
        probes' bursts off chip (HBM or the AGCUs, the slower). Otherwise it stays a capture
        probed in HBM/DDR. With `resident_index` it goes into the PMUs whenever it fits, and
        is marked RESIDENT_INDEX_ATTR.

        Raises:
            CompileError: `resident_index` and the index does not fit one buffer."""
        from rdu_compiler.embedding.probe import BUCKET_BYTES, BUCKETS_PER_LOOKUP
        from rdu_compiler.kernel.traffic import burst_round
        from rdu_compiler.passes.rdu_hash_lookup import resident_form

        share = fabric.num_pmus // 3  # IDs, index, row numbers
        pmus = max(1, min(self.max_buffer_pmus, share) if self.max_buffer_pmus > 0 else share)
        whole = math.prod(shape_of(kernel.captures[0].type)) * 8
        n = math.prod(kernel.domain_sizes)
        off_chip = min(fabric.hbm.bytes_per_s, fabric.agcu.count * fabric.agcu.bytes_per_cycle * fabric.clock_hz)
        probe_s = n * BUCKETS_PER_LOOKUP * burst_round(BUCKET_BYTES, fabric.hbm.burst_bytes) / off_chip
        resident_s = whole / off_chip + n * BUCKETS_PER_LOOKUP * BUCKET_BYTES / (pmus * fabric.pmu.bytes_per_cycle * fabric.clock_hz)
        fits = DEPTH * whole <= pmus * fabric.pmu.capacity_bytes
        if self.resident_index and not fits:
            raise CompileError(
                self.name,
                f"kernel '{kernel.label}': resident_index: its cuckoo index is {whole} B, {DEPTH * whole} B "
                f"double-buffered, over the {pmus * fabric.pmu.capacity_bytes} B of the {pmus} PMUs a buffer may take "
                f"({pmus} x {fabric.pmu.capacity_bytes} B); compile without resident_index (the index is then probed "
                f"in HBM/DDR), give the table fewer IDs, or compile for a fabric with larger PMUs",
            )
        if fits and (self.resident_index or resident_s < probe_s):
            new = resident_form(kernel)
            if self.resident_index:
                new.attributes[RESIDENT_INDEX_ATTR] = UnitAttr()
            block = kernel.parent_block()
            assert block is not None
            block.insert_op_before(new, kernel)
            kernel.results[0].replace_all_uses_with(new.results[0])
            block.erase_op(kernel)
