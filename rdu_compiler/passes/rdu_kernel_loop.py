"""rdu-kernel-loop: N consecutive calls of the same decoder layer become one looped call.

Kernel looping (Koeplinger et al., arXiv 2410.23668): a language model calls the same
layer program N times, one call per layer, and pays the launch (program load + argument
load, SN40L §IV-D) and the call-boundary synchronisation at every one. When the N calls
are structurally identical, they can be one call of a program with a pipelined outer loop
over the layers: the body's programs are loaded once, each iteration binds the next
layer's weights (stacked parameters), and the next layer's weights stream while the
current one computes.

What the pass does, on every function of a placed program (it runs after `rdu-place`):

1. **Keys.** Each function-level op gets a structural key: for an `rdu.section`, its
   whole body (op names, types, properties and attributes, operand wiring inside the
   section) with the values it reads from outside numbered in order of first use, and
   those values' types; names (`sym_name`) and the planner's `reason` text are left out.
   `rdu-place` places sections with equal problems alike, so two layers' sections get the
   same key exactly when they are the same program on the same sites. Other ops (the
   collectives, `tensor.empty`, constants) are keyed by name, types and properties.
2. **Detection.** The longest-saving run of N >= 2 consecutive equal chunks of P ops
   (the score is (N - 1) x sections per chunk: the launches the loop saves; ties: the
   shorter body, then the earlier start), found with run lengths of `key[i] == key[i+P]`
   for every P (O(n^2) over n function-level ops). The chunk must be a loop: every value an
   iteration t >= 1 reads comes from iteration t (same place as in iteration 1), from
   iteration t - 1 (a loop-carried value, e.g. the residual stream; in iteration 0 it is
   an initial value from before the loop), or from outside the loop (a per-iteration
   input such as a layer's weights or KV cache, or a loop-invariant one such as the RoPE
   tables). A candidate that reads iteration t - 2 or reads from inside differently from
   iteration 1 is dropped and the next best is tried. The ops before and after a loop are
   searched again (several loops per function).
   Before detection, views and ops that read only constants and empty tensors (a zero
   fill the layers share: torch-mlir emits one per shape, so at -O0 the first layer has
   sections the others do not; a view of the RoPE tables first made where layer 0 reads
   it) are moved right after what they read (`schedule_early`; no section changes, only
   the order).
3. **Representation.** The function gets `rdu.kernel_loops = [array<i64: start, ops per
   iteration, trips, sections per iteration>, ...]` (start = index of the loop's first op
   among the function's ops) and every section in a loop `rdu.loop = array<i64: loop,
   iteration, offset>`. The IR keeps every iteration's sections (so every reader of a
   placed program still reads it as before); `loops_of` re-derives the keys and refuses an
   annotation that no longer holds, and the emulator runs iteration t >= 1 of a section
   with iteration 0's program and iteration t's values (`runtime.kloop`), so a wrong
   detection shows as a wrong result. The cost model charges the looped call
   (`cost.kloop`).

No repeated layer found: the function gets `rdu.kernel_loops = []` and the compile report
says "0 loops" with the reason (a program with no repeated layer cannot be looped; the
pass does not refuse it, so `--kernel-looping` on a model whose sections span several
layers, as a one-socket decode at -O1, reports what it found rather than failing).

    rdu-opt -p 'rdu-kernel-loop' placed.mlir
    rdu-opt -p 'rdu-kernel-loop{min_trips=4}' placed.mlir

Raises (`CompileError`): min_trips < 2.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from xdsl.context import Context
from xdsl.dialects import func
from xdsl.dialects.builtin import ArrayAttr, DenseArrayBase, ModuleOp, i64
from xdsl.ir import Attribute, Block, BlockArgument, Operation, SSAValue
from xdsl.passes import ModulePass

from rdu_compiler.dialects import rdu
from rdu_compiler.errors import CompileError, RduError

LOOPS_ATTR = "rdu.kernel_loops"
LOOP_ATTR = "rdu.loop"
#: properties / attributes that name things rather than say what a program does
_NOT_STRUCTURE = frozenset({"sym_name", "reason", LOOP_ATTR})


@dataclass(frozen=True)
class Loop:
    """One kernel loop of a function: `trips` iterations of `period` function-level ops
    from op index `start`, `sections` of them sections. `carried`: values iteration t reads
    from t - 1; `per_iteration` / `invariant`: reads from outside the loop that differ by
    iteration (weights, KV cache) or do not (RoPE tables, masks)."""

    start: int
    period: int
    trips: int
    sections: int
    carried: int = 0
    per_iteration: int = 0
    invariant: int = 0

    @property
    def launches_saved(self) -> int:
        """Section launches the looped call does not pay: (trips - 1) x sections."""
        return (self.trips - 1) * self.sections

    def to_dict(self) -> dict[str, Any]:
        return {"start_op": self.start, "ops_per_iteration": self.period, "trips": self.trips,
                "sections_per_iteration": self.sections, "launches_saved": self.launches_saved,
                "carried_values": self.carried, "per_iteration_inputs": self.per_iteration,
                "invariant_inputs": self.invariant}


@dataclass
class _Keys:
    """Function-level ops, their structural keys (interned as ints) and free values."""

    ops: list[Operation]
    keys: list[int] = field(default_factory=list)
    free: list[list[SSAValue]] = field(default_factory=list)
    where: dict[SSAValue, tuple[int, int]] = field(default_factory=dict)  # result -> (op index, result index)


def free_values(section: Operation) -> list[SSAValue]:
    """Values `section` reads that are defined outside it, in order of first use."""
    inside: set[SSAValue] = set()
    out: list[SSAValue] = []
    seen: set[SSAValue] = set()

    def block(b: Block) -> None:
        inside.update(b.args)
        for op in b.ops:
            for v in op.operands:
                if v not in inside and v not in seen:
                    seen.add(v)
                    out.append(v)
            inside.update(op.results)
            for region in op.regions:
                for nested in region.blocks:
                    block(nested)

    for region in section.regions:
        for b in region.blocks:
            block(b)
    return out


def _attrs(op: Operation) -> tuple[tuple[str, Attribute], ...]:
    """An op's structural attributes by name. The attributes themselves, not their text:
    xDSL attributes are immutable, hashed and compared by value (a NaN float equals
    itself, -0.0 is not 0.0, as in the printed form), and printing a placement's dense
    arrays cost 21 s of a 43 s -O0 compile of a 4-layer Llama (issue 11)."""
    items = [*op.properties.items(), *op.attributes.items()]
    return tuple(sorted(((k, v) for k, v in items if k not in _NOT_STRUCTURE), key=lambda kv: kv[0]))


def section_key(section: Operation, free: Sequence[SSAValue]) -> tuple[Any, ...]:
    """The structural key of a section (module docstring, step 1)."""
    number: dict[SSAValue, tuple[str, int]] = {v: ("f", i) for i, v in enumerate(free)}
    items: list[Any] = [tuple(v.type for v in free), _attrs(section), tuple(r.type for r in section.results)]

    def block(b: Block) -> None:
        for a in b.args:
            number[a] = ("i", len(number))
        items.append(("^", tuple(a.type for a in b.args)))
        for op in b.ops:
            items.append((op.name, tuple(number[v] for v in op.operands), _attrs(op),
                          tuple(r.type for r in op.results)))
            for r in op.results:
                number[r] = ("i", len(number))
            for region in op.regions:
                items.append("{")
                for nested in region.blocks:
                    block(nested)
                items.append("}")

    for region in section.regions:
        for b in region.blocks:
            block(b)
    return tuple(items)


def function_keys(fn: func.FuncOp) -> _Keys:
    """Every function-level op but the return, with its interned key and the values it reads."""
    ks = _Keys([op for op in fn.body.block.ops if not isinstance(op, func.ReturnOp)])
    interned: dict[tuple[Any, ...], int] = {}
    for op in ks.ops:
        if isinstance(op, rdu.SectionOp):
            free = free_values(op)
            key: tuple[Any, ...] = ("section", section_key(op, free))
        else:
            free = list(op.operands)
            key = (op.name, tuple(v.type for v in free), _attrs(op), tuple(r.type for r in op.results))
        ks.keys.append(interned.setdefault(key, len(interned)))
        ks.free.append(free)
    for i, op in enumerate(ks.ops):
        for j, r in enumerate(op.results):
            ks.where[r] = (i, j)
    return ks


def _candidates(keys: list[int], sections: list[bool], lo: int, hi: int) -> list[tuple[int, int, int, int]]:
    """(score, period, start, trips) of every maximal repeat in keys[lo:hi], best first."""
    out = []
    n = hi - lo
    prefix = [0]
    for s in sections[lo:hi]:
        prefix.append(prefix[-1] + s)
    for p in range(1, n // 2 + 1):
        run = [0] * (n + 1)  # run[i]: consecutive j >= i with keys[j] == keys[j + p]
        for i in range(n - p - 1, -1, -1):
            run[i] = run[i + 1] + 1 if keys[lo + i] == keys[lo + i + p] else 0
        for s in range(n - 2 * p + 1):
            trips = 1 + run[s] // p
            body = prefix[s + p] - prefix[s]
            if trips >= 2 and body:
                out.append(((trips - 1) * body, p, lo + s, trips))
    out.sort(key=lambda c: (-c[0], c[1], c[2]))
    return out


def _check(ks: _Keys, start: int, period: int, trips: int) -> Loop | None:
    """The loop if the chunks are a loop (module docstring, step 2), else None."""
    where = ks.where
    end = start + period * trips
    patterns: list[list[list[Any]]] = []
    outside: list[list[list[SSAValue | None]]] = []
    for t in range(trips):
        pat, outs = [], []
        for o in range(period):
            i = start + t * period + o
            row, orow = [], []
            for v in ks.free[i]:
                d = where.get(v) if not isinstance(v, BlockArgument) else None
                if d is not None and start <= d[0] < end:
                    td, od = divmod(d[0] - start, period)
                    if t - td > 1:
                        return None
                    row.append(("in" if td == t else "carried", od, d[1]))
                    orow.append(None)
                else:
                    row.append(("out",))
                    orow.append(v)
            pat.append(row)
            outs.append(orow)
        patterns.append(pat)
        outside.append(outs)
    ref = patterns[1]
    for t in range(2, trips):
        if patterns[t] != ref:
            return None
    carried = per_it = inv = 0
    for o in range(period):
        for i, (want, got) in enumerate(zip(ref[o], patterns[0][o], strict=True)):
            if want[0] == "in" and got != want:
                return None
            if want[0] in ("carried", "out") and got[0] != "out":
                return None
            if want[0] == "carried":
                carried += 1
            elif want[0] == "out":
                vals = {id(outside[t][o][i]) for t in range(trips)}
                inv += len(vals) == 1
                per_it += len(vals) > 1
    sections = sum(isinstance(op, rdu.SectionOp) for op in ks.ops[start:start + period])
    return Loop(start, period, trips, sections, carried, per_it, inv)


def find_loops(fn: func.FuncOp, min_trips: int = 2) -> list[Loop]:
    """The kernel loops of `fn` (module docstring, step 2), in program order."""
    ks = function_keys(fn)
    is_section = [isinstance(op, rdu.SectionOp) for op in ks.ops]
    found: list[Loop] = []

    def search(lo: int, hi: int) -> None:
        for _, p, s, trips in _candidates(ks.keys, is_section, lo, hi):
            if trips < min_trips:
                continue
            loop = _check(ks, s, p, trips)
            if loop is not None:
                found.append(loop)
                search(lo, s)
                search(s + p * trips, hi)
                return

    search(0, len(ks.ops))
    return sorted(found, key=lambda lp: lp.start)


def schedule_early(fn: func.FuncOp) -> int:
    """Put every view (`rdu.view`, `rdu.shard`: address remaps, no section, no launch) and
    every op that reads only constants and empty tensors (a zero fill, an iota) right after
    the latest op it reads, keeping the order of everything else. Returns how many ops are
    not where they were.

    Why: torch-mlir emits one zero fill per accumulator shape and the layers share it, and
    a view of a value made before the layers (the RoPE tables) first appears where the
    first layer reads it; so the first layer has ops the later ones do not. Scheduled as
    early as they can run, the layers are alike. The order change is legal (each op still
    follows what it reads) and changes no section."""
    block = fn.body.block
    ops = [op for op in block.ops if not isinstance(op, func.ReturnOp)]
    key: dict[Operation, tuple[int, int, int]] = {}
    static: set[Operation] = set()  # reads only constants / empties (transitively)
    for i, op in enumerate(ops):
        reads = free_values(op) if isinstance(op, rdu.SectionOp) else list(op.operands)
        owners = [v.owner for v in reads if isinstance(v.owner, Operation)]
        if not reads or (all(o in static for o in owners) and len(owners) == len(reads)):
            static.add(op)
        movable = (isinstance(op, rdu.ViewOp | rdu.ShardOp) or op in static) and bool(reads)
        if movable and not isinstance(op, rdu.AllReduceOp | rdu.AllGatherOp | rdu.SendOp | rdu.RecvOp):
            latest = max((key[o] for o in owners), default=(-1, 0, -1))
            key[op] = (latest[0], latest[1] + 1, i)
        else:
            key[op] = (i, 0, i)
    order = sorted(ops, key=lambda op: key[op])
    moved = sum(a is not b for a, b in zip(order, ops, strict=True))
    if moved:
        ret = block.last_op
        for op in order:
            op.detach()
        for op in order:
            if ret is not None:
                block.insert_op_before(op, ret)
            else:
                block.add_op(op)
    return moved


def annotate(fn: func.FuncOp, loops: Sequence[Loop]) -> None:
    """Write `rdu.kernel_loops` on `fn` and `rdu.loop` on every section in a loop."""
    fn.attributes[LOOPS_ATTR] = ArrayAttr([DenseArrayBase.from_list(i64, [lp.start, lp.period, lp.trips, lp.sections])
                                          for lp in loops])
    ops = [op for op in fn.body.block.ops if not isinstance(op, func.ReturnOp)]
    for n, lp in enumerate(loops):
        for t in range(lp.trips):
            for o in range(lp.period):
                op = ops[lp.start + t * lp.period + o]
                if isinstance(op, rdu.SectionOp):
                    op.attributes[LOOP_ATTR] = DenseArrayBase.from_list(i64, [n, t, o])


def loops_of(fn: func.FuncOp) -> list[Loop] | None:
    """The loops recorded on `fn` by rdu-kernel-loop, checked again; None when the pass did
    not run on it.

    Raises:
        RduError: the annotation does not describe a loop of this function any more (an
            iteration's op is not the same program as iteration 0's, or the ranges run past
            the function): the program was edited after rdu-kernel-loop; run it again.
    """
    attr = fn.attributes.get(LOOPS_ATTR)
    if attr is None:
        return None
    ks = function_keys(fn)
    loops = []
    name = fn.sym_name.data
    for entry in attr.data if isinstance(attr, ArrayAttr) else ():
        start, period, trips, _ = (int(x) for x in entry.get_values()) if isinstance(entry, DenseArrayBase) else (0, 0, 0, 0)
        if period < 1 or trips < 2 or start < 0 or start + period * trips > len(ks.ops):
            raise RduError(f"function @{name}: {LOOPS_ATTR} entry {start, period, trips} does not fit its "
                           f"{len(ks.ops)} ops; the program was changed after rdu-kernel-loop: run the pass again")
        for t in range(1, trips):
            for o in range(period):
                if ks.keys[start + t * period + o] != ks.keys[start + o]:
                    op = ks.ops[start + t * period + o]
                    label = op.sym_name.data if isinstance(op, rdu.SectionOp) else op.name
                    raise RduError(f"function @{name}: iteration {t} of the kernel loop at op {start} has '{label}' "
                                   f"(op {start + t * period + o}), which is not the same program as iteration 0's op "
                                   f"{start + o}; the program was changed after rdu-kernel-loop: run the pass again")
        loop = _check(ks, start, period, trips)
        if loop is None:
            raise RduError(f"function @{name}: the kernel loop at op {start} ({trips} x {period} ops) reads values "
                           "across iterations as no loop does; the program was changed after rdu-kernel-loop: run "
                           "the pass again")
        loops.append(loop)
    return loops


@dataclass(frozen=True)
class RduKernelLoopPass(ModulePass):
    """Find repeated layers in every function and record them as kernel loops."""

    name = "rdu-kernel-loop"

    min_trips: int = 2

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        if self.min_trips < 2:
            raise CompileError(self.name, f"min_trips = {self.min_trips}: a loop needs at least 2 iterations; "
                               "use min_trips >= 2")
        for fn in op.ops:
            if isinstance(fn, func.FuncOp) and not fn.is_declaration:
                schedule_early(fn)
                annotate(fn, find_loops(fn, self.min_trips))
