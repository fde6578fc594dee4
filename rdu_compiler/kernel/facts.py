"""The facts about one `rdu.kernel` every consumer reads first: loops, tiles, operand
counts and access patterns, which loops reduce, which block arguments the payload reads.
The emulator's executor (`interpreters.kernel`) and the Triton generator
(`runtime.triton.program.KernelInfo`) both start from `kernel_facts`."""

from __future__ import annotations

from dataclasses import dataclass

from rdu_compiler.dialects import rdu
from rdu_compiler.kernel.access import Access


@dataclass(frozen=True)
class KernelFacts:
    """Plain facts about one kernel.

    Attributes:
        label: the kernel's name (`rdu.kernel` label).
        kind: its parallel pattern.
        domain: the iteration-domain sizes (one per loop).
        tile: the tile sizes (one per loop; a size >= the loop's is the whole loop).
        n_in / n_init / n_cap: inputs, inits (one per result), captures.
        accesses: one access pattern per input and init operand.
        red: the reduction loops; par: the other loops, ascending.
        used: per payload block argument (inputs, inits, captures), whether it is read.
    """

    label: str
    kind: rdu.Pattern
    domain: tuple[int, ...]
    tile: tuple[int, ...]
    n_in: int
    n_init: int
    n_cap: int
    accesses: tuple[Access, ...]
    red: tuple[int, ...]
    par: tuple[int, ...]
    used: tuple[bool, ...]

    def non_projection_output(self) -> int | None:
        """The first result whose output access pattern is not a projection (results are
        stored through projections only), or None."""
        return next((i for i in range(self.n_init) if not self.accesses[self.n_in + i].is_projection), None)


def kernel_facts(k: rdu.KernelOp) -> KernelFacts:
    """The facts of kernel `k`.

    Raises:
        CompileError: an access pattern that is not linear (floordiv/mod).
    """
    domain = tuple(k.domain_sizes)
    red = tuple(k.reduction_dims)
    return KernelFacts(
        label=k.label,
        kind=k.kind.data,
        domain=domain,
        tile=tuple(k.tile_sizes),
        n_in=len(k.inputs),
        n_init=len(k.inits),
        n_cap=len(k.captures),
        accesses=tuple(Access.from_map(m.data) for m in k.indexing_maps.data),
        red=red,
        par=tuple(d for d in range(len(domain)) if d not in red),
        used=tuple(bool(a.uses) for a in k.body.block.args),
    )
