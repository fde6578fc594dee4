"""bf16 chains: a run of payload ops that depends on one bf16 value, evaluated by table.

A payload op whose operands are one bf16 value `r` (or ops on it alone) and constants is
a function of `r`'s 16 bits; so is every op of such ops. A *chain* is the largest set of
payload ops that depends on one such root and nothing else (no other tile value, no loop
index); its *exits* are the chain's values something outside it reads (the yield, a
combiner, another op). On a tile, each exit is then a lookup of the root's bits in a
65,536-entry table computed by running the chain's own steps on every bf16 value
(`interpreters/bf16.py` does the same for one unary op): one `np.take` per exit in place
of an ml_dtypes loop per op (GPT-2's tanh GELU: 8 bf16 ops on one value).

The table holds what the direct steps compute, element by element, so the two give the
same bits provided every step's value at an element depends on that element alone and
not on its position or the array's layout. That holds for ml_dtypes' bf16 loops (one
element at a time through `float`), for IEEE-exact numpy ops in any float type (+, -, *, /,
sqrt, rounding, comparisons, select, casts) and for integer ops; numpy's own f32 / f64
transcendentals (exp, tanh, pow, ...) and min/max have SIMD loops for contiguous arrays and
scalar ones otherwise, so a chain stops at them (`chainable` in `interpreters/payload.py`). Ops that
raise on their values (integer division, float-to-int casts, `cf.assert`) or read the tile
(`rdu.index`, `tensor.extract`) are never in a chain. `testsuite/unit/test_bf16_chains.py`
checks chains against their direct steps on every bf16 value, shuffled and strided.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

import numpy as np
from xdsl.dialects.builtin import BFloat16Type
from xdsl.ir import Operation

from rdu_compiler.interpreters import bf16
from rdu_compiler.ir import op_name

#: A payload step (`interpreters.payload.Step`): reads and writes slots of `vals`.
Step = Callable[[list[Any], Any], None]

#: A slot whose value is a constant (an `arith.constant`, or chainable ops on constants only).
CONST = -1

#: The fewest ops a chain is worth a table for [NF: a single unary op has its own table
#: (`bf16.lookup`); one bf16 binary op costs about what a lookup does].
CHAIN_MIN = 2


class BF16Chain:
    """Payload ops depending on one bf16 root slot: evaluated by table or, on arrays
    smaller than `bf16.TABLE_MIN` (and scalars), by their own steps in block order."""

    def __init__(self, root: int, ops: list[Operation], exits: list[int]):
        self.root = root
        self.ops = ops
        self.exits = exits
        self.steps: list[Step] = []
        self.key: Hashable = None
        self._const_steps: list[Step] = []
        self._n_slots = 0
        self._ctx: Any = None
        self._tables: tuple[np.ndarray, ...] | None = None

    def seal(self, const_steps: list[Step], n_slots: int, key: Hashable, ctx: Any) -> None:
        """Fix what building the tables needs: the payload's constant steps, its slot
        count, the chain's structural key (equal keys: the same function) and an empty
        tile context for the steps (no op of a chain reads it)."""
        self._const_steps = const_steps
        self._n_slots = n_slots
        self.key = key
        self._ctx = ctx

    def step(self, vals: list[Any], ctx: Any) -> None:
        x = vals[self.root]
        if bf16.tabled(x):
            bits = x.view(np.uint16)
            for s, t in zip(self.exits, self.tables(), strict=True):
                vals[s] = np.take(t, bits)
            return
        for st in self.steps:
            st(vals, ctx)

    def tables(self) -> tuple[np.ndarray, ...]:
        """Each exit's value on every bf16 value, indexed by the value's bits (computed by
        the chain's steps on first use; kept, by `key`, for every chain of that form)."""
        if self._tables is None:
            self._tables = bf16.tables(("chain", self.key), self._evaluate)
        return self._tables

    def _evaluate(self, values: np.ndarray) -> list[Any]:
        ctx = self._ctx
        vals: list[Any] = [None] * self._n_slots
        for st in self._const_steps:
            st(vals, ctx)
        vals[self.root] = values
        for st in self.steps:
            st(vals, ctx)
        return [vals[s] for s in self.exits]


def op_props(op: Operation) -> tuple[tuple[str, str], ...]:
    """`op`'s properties and attributes as sorted (name, text) pairs (part of what makes two
    ops the same: payload CSE, a chain's structural key)."""
    return tuple(sorted((k, str(a)) for k, a in [*op.properties.items(), *op.attributes.items()]))


def is_bf16(t: Any) -> bool:
    """Whether `t` (an xDSL type) is bf16."""
    return isinstance(t, BFloat16Type)


def find_chains(payload: Any, ops: list[Operation],
                chainable: Callable[[Operation], bool]) -> tuple[dict[Operation, BF16Chain], set[Operation]]:
    """The chains among `ops` (a `CompiledPayload`'s evaluated ops, in block order,
    numbered in `payload.slots`; `payload.readers` gives each slot's readers): each member op mapped
    to its chain; and the ops computing constants only (which read no tile value).

    A slot's source is CONST, the bf16 root it depends on alone, or None (anything else).
    A chainable op whose non-constant operands share one root has that root; any other op
    with a bf16 result is a root itself."""
    slots = payload.slots
    src: dict[int, int | None] = {}
    for v, s in slots.items():
        if s not in src and not isinstance(v.owner, Operation):  # a block argument
            src[s] = s if is_bf16(v.type) else None
    members: dict[int, list[Operation]] = {}
    constants: set[Operation] = set()
    for op in ops:
        ins = {src.get(slots[v]) for v in op.operands} - {CONST}
        if chainable(op) and not ins:
            out: int | None = CONST
            constants.add(op)
        elif chainable(op) and len(ins) == 1 and (root := next(iter(ins))) is not None:
            out = root
            members.setdefault(root, []).append(op)
        else:
            out = None
        for r in op.results:
            s = slots[r]
            src[s] = s if out is None and is_bf16(r.type) else out
    chain_of: dict[Operation, BF16Chain] = {}
    for root, group in members.items():
        if len(group) < CHAIN_MIN:
            continue
        inside = set(group)
        made = [slots[r] for op in group for r in op.results]
        exits = [s for s in dict.fromkeys(made) if any(u not in inside for u in payload.readers.get(s, ()))]
        if not exits:
            continue
        chain = BF16Chain(root, group, exits)
        for op in group:
            chain_of[op] = chain
    return chain_of, constants


def structural_key(chain: BF16Chain, slots: dict[Any, int], constant_values: list[Any]) -> Hashable:
    """What the chain computes, independent of slot numbers: each op's name, properties,
    result types and operands (the root, an earlier member's result, or a constant's
    dtype and bits)."""
    local: dict[int, tuple[Any, ...]] = {chain.root: ("root",)}
    parts: list[Any] = []
    for i, op in enumerate(chain.ops):
        refs = []
        for v in op.operands:
            s = slots[v]
            ref = local.get(s)
            if ref is None:
                c = np.asarray(constant_values[s])
                ref = ("const", c.dtype.str, c.tobytes())
            refs.append(ref)
        parts.append((op_name(op), op_props(op), tuple(str(r.type) for r in op.results), tuple(refs)))
        for j, r in enumerate(op.results):
            local[slots[r]] = ("op", i, j)
    return (tuple(parts), tuple(local[s] for s in chain.exits))
