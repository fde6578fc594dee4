"""Running a kernel-looped program: iteration t >= 1 runs iteration 0's section programs.

`rdu-kernel-loop` records which sections are iterations of one loop body
(`rdu.loop = array<i64: loop, iteration, offset>`). On the chip the looped call loads the
body's programs once and rebinds each iteration's values; the emulator does the same: a
section of iteration t >= 1 is executed with the *body's* section (iteration 0, same
offset: its prepared steps and kernel executors), reading iteration t's values in place of
the body's free values (positionally: the structural key numbers them in order of first
use) and writing its results as iteration t's. A detection that called two different
sections the same program therefore gives a different result from the unlooped run; the
tests compare the two.
"""

from __future__ import annotations

from typing import Any

from xdsl.dialects import func
from xdsl.dialects.builtin import DenseArrayBase
from xdsl.ir import SSAValue

from rdu_compiler.dialects import rdu
from rdu_compiler.passes.rdu_kernel_loop import LOOP_ATTR, free_values, loops_of


class LoopedSections:
    """Per section of an iteration t >= 1: (body section, body's free values, its own)."""

    def __init__(self, fn: func.FuncOp):
        """Raises: RduError: a stale loop annotation (`passes.rdu_kernel_loop.loops_of`)."""
        self.body: dict[rdu.SectionOp, tuple[rdu.SectionOp, list[SSAValue], list[SSAValue]]] = {}
        if not loops_of(fn):
            return
        first: dict[tuple[int, int], rdu.SectionOp] = {}
        for op in fn.body.block.ops:
            tag = op.attributes.get(LOOP_ATTR) if isinstance(op, rdu.SectionOp) else None
            if not isinstance(op, rdu.SectionOp) or not isinstance(tag, DenseArrayBase):
                continue
            n, t, o = (int(x) for x in tag.get_values())
            if t == 0:
                first[(n, o)] = op
            else:
                b = first[(n, o)]
                self.body[op] = (b, free_values(b), free_values(op))

    def __contains__(self, op: object) -> bool:
        return op in self.body

    def run(self, run_section: Any, op: rdu.SectionOp, env: Any) -> Any:
        """Run `op` as its body section (`run_section(section, env)`, the emulator's) on
        `op`'s values; bind its results in `env` (a `runtime.emulator.Env`) and return the
        section's stats. The body's free values and results keep their own values: they
        are set to `op`'s for the call and put back after it."""
        body, body_free, own_free = self.body[op]
        slot, vals = env.slot, env.vals
        kept = [slot[v] for v in body_free] + [slot[v] for v in body.results]
        saved = [vals[i] for i in kept]
        mine = [vals[slot[v]] for v in own_free]
        for i, x in zip(kept, mine, strict=False):  # the free values: the first len(body_free) of `kept`
            vals[i] = x
        stats = run_section(body, env)
        results = [vals[slot[v]] for v in body.results]
        for i, x in zip(kept, saved, strict=True):
            vals[i] = x
        for v, x in zip(op.results, results, strict=True):
            vals[slot[v]] = x
        return stats
