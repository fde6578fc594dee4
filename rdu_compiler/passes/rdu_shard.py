"""rdu-shard{tp=N}: tensor parallelism: one SPMD program every socket of N runs on its shard.

GSPMD-style propagation over the kernel graph (Xu et al., arXiv 2105.04663), which on a
transformer yields Megatron's layout (Shoeybi et al., arXiv 1909.08053). Every tensor value
is **replicated** (every socket holds it whole), **sharded** `(dim, blocks)` (a dim of N
viewed as `[blocks, tp, N / (blocks tp)]`, socket r holds `[:, r, :]`; see
`dialects/rdu/collectives.py`) or **partial** (every socket holds a partial sum). Kernels
are visited in program order; for each the pass picks at most one loop to split across
the sockets (a loop shard `(loop, blocks)`), and converts each operand to the layout that
loop implies, through the operand's indexing map:

- an operand dim whose index is `s * d_l + rest + c` (rest: other loops, < s; `c` a
  multiple of `tp * s * (extent_l / tp / blocks)`) is sharded with block `s * extent_l /
  (tp blocks)`; socket r's copy reads it at `s * d_l + rest + c / tp`. A folded head split
  `h * 128 + e` is this form: a block shard of the merged dim is a shard of the head loop
  when the block is a multiple of the head size.
- an operand no dim of which reads the loop is replicated.
- the candidates are the loops that keep an already sharded operand as it is; the one
  that keeps the most bytes wins. With every operand replicated, a matmul whose weight
  (a value computed from function arguments alone by all-parallel kernels: a weight or its
  transpose; an argument marked `rdu.input`, a user input, is not a weight) has a parallel output loop that divides by tp is **column-parallel** on that
  loop, provided its consumers accept the shard (a head-split consumer whose head count
  does not divide by tp refuses it: the matmul is then replicated). The block layout is
  chosen from the consumers (GPT-2's fused q|k|v columns: 3 blocks, each socket its heads
  of q, k and v).
- a loop that is a **reduction** (only sums: the payload yields `acc + x`, the
  accumulator starts at 0) makes the result partial: row-parallel (o_proj, down_proj);
  the first consumer gets an `rdu.all_reduce`.
- conversions: replicated -> sharded is `rdu.shard` (no data moves; on a weight argument
  whose every use takes the same shard the argument itself becomes the shard, recorded as
  `rdu.shard = array<i64: dim, tp, blocks>` in its arg attributes, so the runtime slices
  the weights file per socket); sharded -> replicated is `rdu.all_gather`; partial -> any
  is `rdu.all_reduce` first. Views, concats and pads keep a shard when they do not touch
  the sharded dim (a reshape: when the socket's digit of the flat index stays in one dim).
- anything else (a loop an `rdu.index` reads, a scan's loop, a non-affine index, a loop
  that does not divide, a max-reduction) is replicated: the operands are gathered first.
  The result is never silently wrong; it may gather more than Megatron would.
- function results are replicated (gathered / reduced at the end).

GQA: KV heads are split when `n_kv_heads % tp == 0`; otherwise the K/V projections stay
replicated (every socket computes all KV heads, its query heads pick theirs from them).
The token embedding (a lookup of a user input's ids in a weight table) is split by
vocabulary rows when tp divides the vocabulary (`passes/shard_vocab.py`: masked lookup,
partial rows, one all-reduce), else replicated with a note in `rdu.tp_notes`;
`vocab=false` keeps it replicated. The LM head is column-parallel (vocabulary split) with
an all-gather of the logits at the end; a tied embedding / LM head (GPT-2) then holds one
shard of the table for both.

Layout ops (views, concats, pads) follow `passes/shard_views.py`. A re-split of a value
already sharded over fewer ways (GQA's expanded KV heads at tp > n_kv_heads) is lifted to
where the data is made (`passes/shard_refine.py`), so it does not end a section.

Where: after rdu-fold-views (head-split reshapes are folded into maps, so the head loop is
visible) and before rdu-fuse (one op per kernel: a fused payload mixes loops, and fusion
then never crosses a collective). At -O0 (no fold-views) after rdu-inline-splats.

Refuses (CompileError): tp < 1, tp above the node's sockets or not dividing them, a
module sharded already. Writes `rdu.tp = N` on the module; tp = 1 changes nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import arith, func, tensor
from xdsl.dialects.builtin import (
    AffineMapAttr,
    ArrayAttr,
    DenseArrayBase,
    DictionaryAttr,
    IntegerAttr,
    ModuleOp,
    StringAttr,
    TensorType,
    i64,
)
from xdsl.ir import Attribute, BlockArgument, Operation, SSAValue
from xdsl.ir.affine import (
    AffineDimExpr,
    AffineMap,
)
from xdsl.passes import ModulePass
from xdsl.rewriter import Rewriter

from rdu_compiler.dialects import rdu
from rdu_compiler.errors import CompileError
from rdu_compiler.kernel.traffic import itemsize
from rdu_compiler.passes.common import fabric_for, functions
from rdu_compiler.passes.shard_layout import (
    ARG_SHARD_ATTR,
    INPUT_ATTR,
    PARTIAL,
    TP_ATTR,
    Layout,
    Shard,
    arg_shards,
    from_linear,
    is_zero,
    linear,
    mark_inputs,
    mentions,
    mentions_map,
    module_tp,
    same_shard,
    weight_like,
)
from rdu_compiler.passes.shard_refine import lift_refining_shards
from rdu_compiler.passes.shard_views import shard_concat, shard_pad, shard_view
from rdu_compiler.passes.shard_vocab import NOTES_ATTR, notes_attr, vocab_parallel

__all__ = ["INPUT_ATTR", "TP_ATTR", "RduShardPass", "arg_shards", "mark_inputs", "module_tp"]

def _shape(v: SSAValue) -> tuple[int, ...] | None:
    return tuple(v.type.get_shape()) if isinstance(v.type, TensorType) else None


def _local_type(t: Attribute, dim: int, tp: int) -> TensorType:
    assert isinstance(t, TensorType)
    shape = list(t.get_shape())
    shape[dim] //= tp
    return TensorType(t.get_element_type(), shape)


def _nbytes(v: SSAValue) -> int:
    shape = _shape(v)
    return math.prod(shape) * itemsize(v.type) if shape is not None else 0


class Sharder:
    def __init__(self, fn: func.FuncOp, tp: int, vocab: bool = True):
        self.fn, self.tp, self.vocab = fn, tp, vocab
        self.notes: list[str] = []  # what the pass kept replicated and why (module `rdu.tp_notes`)
        self.lay: dict[SSAValue, Layout] = {}
        self.memo: dict[tuple[SSAValue, Layout], SSAValue] = {}

    # ------------------------------------------------------------------ layouts
    def layout(self, v: SSAValue) -> Layout:
        return self.lay.get(v)

    def to(self, v: SSAValue, want: Layout, before: Operation) -> SSAValue:
        """`v` converted to layout `want` (collectives inserted before `before`)."""
        have = self.layout(v)
        if have == want or _shape(v) is None:
            return v
        key = (v, want)
        if key in self.memo:
            return self.memo[key]
        out = v
        if isinstance(have, Shard) and isinstance(want, Shard):
            refined = self._refine(v, have, want, before)
            if refined is not None:
                self.memo[key] = refined
                return refined
        if have == PARTIAL:
            op = rdu.AllReduceOp(out, self.tp)
            self._insert(op, before, None)
            out = op.result
            self.memo[(v, None)] = out
        elif isinstance(have, Shard):
            t = out.type
            assert isinstance(t, TensorType)
            shape = list(t.get_shape())
            shape[have.dim] *= have.ways
            op = rdu.AllGatherOp(out, TensorType(t.get_element_type(), shape), have.dim, have.ways, have.blocks)
            self._insert(op, before, None)
            out = op.result
            self.memo[(v, None)] = out
        if isinstance(want, Shard):
            out = self._take_shard(out, want, before)
        self.memo[key] = out
        return out

    def _refine(self, v: SSAValue, have: Shard, want: Shard, before: Operation) -> SSAValue | None:
        """A shard over fewer ways refined locally to `want` (same dim and blocks, ways a
        multiple): each socket slices its own shard, nothing crosses sockets."""
        if have.dim != want.dim or have.blocks != want.blocks or want.ways % have.ways:
            return None
        group = want.ways // have.ways
        op = rdu.ShardOp(v, _local_type(v.type, want.dim, group), want.dim, group, want.blocks, ways=want.ways)
        self._insert(op, before, want)
        return op.result

    def _take_shard(self, v: SSAValue, want: Shard, before: Operation) -> SSAValue:
        if (v, want) in self.memo:
            return self.memo[(v, want)]
        local = _local_type(v.type, want.dim, want.ways)
        if isinstance(v.owner, tensor.EmptyOp):
            new: Operation = tensor.EmptyOp([], local)
        else:
            new = rdu.ShardOp(v, local, want.dim, want.ways, want.blocks)
        self._insert(new, before, want)
        self.memo[(v, want)] = new.results[0]
        return new.results[0]

    def _insert(self, op: Operation, before: Operation, layout: Layout) -> None:
        """Insert a conversion of operand 0 (or a new tensor.empty) right after what it
        converts (the block's start for an argument), so it dominates every later use of
        the memoised value; `before` (the consumer) is after that point."""
        block = before.parent_block()
        assert block is not None
        source = op.operands[0] if op.operands else None
        owner = source.owner if source is not None else None
        if isinstance(op, tensor.EmptyOp):
            block.insert_op_before(op, block.first_op)  # type: ignore[arg-type]
        elif isinstance(owner, Operation):
            block.insert_op_after(op, owner)
        else:
            block.insert_op_before(op, block.first_op)  # type: ignore[arg-type]
        self.lay[op.results[0]] = layout

    def retype(self, r: SSAValue, layout: Layout, dim_of_shard: int | None = None) -> SSAValue:
        if isinstance(layout, Shard):
            r = Rewriter.replace_value_with_new_type(r, _local_type(r.type, layout.dim, layout.ways))
        self.lay[r] = layout
        return r

    def global_shape(self, v: SSAValue) -> tuple[int, ...] | None:
        """The shape of `v` on one socket before sharding (a sharded value's type is its shard)."""
        shape = _shape(v)
        lay = self.layout(v)
        if shape is None or not isinstance(lay, Shard):
            return shape
        return tuple(n * lay.ways if d == lay.dim else n for d, n in enumerate(shape))

    # ------------------------------------------------------------------ walk
    def run(self) -> None:
        block = self.fn.body.block
        for op in list(block.ops):
            if isinstance(op, rdu.KernelOp):
                self._kernel(op)
            elif isinstance(op, rdu.ViewOp):
                shard_view(self, op)
            elif isinstance(op, rdu.ConcatOp):
                shard_concat(self, op)
            elif isinstance(op, rdu.PadOp):
                shard_pad(self, op)
            else:
                for i, v in enumerate(op.operands):
                    op.operands[i] = self.to(v, None, op)
        self._push_shards()
        lift_refining_shards(self)  # GQA: each socket expands only its own query heads' K/V
        self._shard_arguments()
        for op in list(block.ops):  # the whole-shape empties the shards replaced
            if isinstance(op, tensor.EmptyOp) and not op.results[0].uses:
                op.detach()
                op.erase()
        self.fn.update_function_type()

    # ------------------------------------------------------------------ kernels
    def _kernel(self, k: rdu.KernelOp) -> None:
        operands = [*k.inputs, *k.inits]
        maps = [m.data for m in k.indexing_maps.data]
        cands: list[tuple[int, int, int]] = []
        for v, m in zip(operands, maps, strict=True):
            lay = self.layout(v)
            if isinstance(lay, Shard):
                cands += [c for c in self._loops_for(k, m, v, lay) if c not in cands]
        if not cands and self.vocab and vocab_parallel(self, k):
            return
        if not cands:
            col = self._column_start(k)
            if col is not None:
                cands = [col]
        best: tuple[tuple[int, int, int], list[Layout], list[Layout]] | None = None
        best_score: tuple[int, int, int] | None = None
        for c in cands:  # least data moved between sockets, then most ways, then most bytes kept
            req = self.requirements(k, c)
            if req is None:
                continue
            moved = sum(_nbytes(v) for v, want in zip(operands, req[0], strict=True) if self._moves(v, want))
            kept = sum(_nbytes(v) for v, want in zip(operands, req[0], strict=True)
                       if isinstance(want, Shard) and self.layout(v) == want)
            score = (-moved, c[2], kept)
            if best_score is None or score > best_score:
                best, best_score = (c, *req), score
        if best is None:
            for i, v in enumerate(k.operands):
                k.operands[i] = self.to(v, None, k)
            for r in k.results:
                self.lay[r] = None
            return
        self.apply(k, *best)

    def _moves(self, v: SSAValue, want: Layout) -> bool:
        """Converting `v` to `want` sends data between sockets (a gather or a reduce)."""
        have = self.layout(v)
        if have == want or have is None or _shape(v) is None:
            return False
        if isinstance(have, Shard) and isinstance(want, Shard):
            return have.dim != want.dim or have.blocks != want.blocks or want.ways % have.ways != 0
        return True

    def requirements(self, k: rdu.KernelOp, cand: tuple[int, int, int]) -> tuple[list[Layout], list[Layout]] | None:
        """(layout of each input/init, layout of each result) when loop `cand[0]` is split
        in `cand[1]` blocks `cand[2]` ways; None when that split is not valid for this kernel."""
        loop, blocks, ways = cand
        tp, domain = ways, k.domain_sizes  # below, `tp` is the number of distinct shards
        extent = domain[loop]
        if blocks < 1 or ways < 2 or self.tp % ways or extent % (tp * blocks):
            return None
        per = extent // (tp * blocks)
        if any(isinstance(o, rdu.IndexOp) and o.dim.value.data == loop for o in k.body.walk()):
            return None
        if k.scan_dim is not None and k.scan_dim.value.data == loop:
            return None
        reduction = loop in k.reduction_dims
        if reduction and (ways != self.tp or not self._sums(k)):  # a partial sum is over every socket
            return None
        operands = [*k.inputs, *k.inits]
        reqs: list[Layout] = []
        for v, m in zip(operands, (m.data for m in k.indexing_maps.data), strict=True):
            shape = self.global_shape(v)
            dims = [j for j, e in enumerate(m.results) if mentions(e, loop)]
            if shape is None or not dims:
                reqs.append(None)
                continue
            if len(dims) > 1:
                return None
            j = dims[0]
            lin = linear(m.results[j])
            if lin is None:
                return None
            coeffs, c = lin
            s = coeffs.get(loop, 0)
            if s <= 0 or any(x < 0 for x in coeffs.values()):
                return None
            # mixed radix around the split loop: terms below it stay inside one of its steps,
            # terms above it (a batch loop merged with the heads, `8 * b + h`) step over its
            # whole range, so they fall in the shard's blocks and keep the socket's digit
            if sum(x * (domain[i] - 1) for i, x in coeffs.items() if i != loop and x < s) >= s:
                return None
            if any(x % (s * extent) for i, x in coeffs.items() if i != loop and x >= s):
                return None
            b_op = s * per
            if shape[j] % (tp * b_op) or c % (tp * b_op):
                return None
            reqs.append(Shard(j, shape[j] // (tp * b_op), ways))
        n_in = len(k.inputs)
        results: list[Layout] = []
        for i, _ in enumerate(k.results):
            want = reqs[n_in + i]
            if want is None:
                if not reduction or not self._zero_init(k, i):
                    return None
                results.append(PARTIAL)
            else:
                results.append(want)
        return reqs, results

    def apply(self, k: rdu.KernelOp, cand: tuple[int, int, int], reqs: list[Layout], results: list[Layout]) -> None:
        loop, _, tp = cand  # tp: the distinct shards of the loop
        n_mapped = len(k.inputs) + len(k.inits)
        for i, want in enumerate(reqs):
            k.operands[i] = self.to(k.operands[i], want, k)
        for i in range(n_mapped, len(k.operands)):
            k.operands[i] = self.to(k.operands[i], None, k)
        domain = list(k.domain_sizes)
        extent = domain[loop]
        domain[loop] //= tp
        new_maps = []
        for m in (m.data for m in k.indexing_maps.data):
            exprs = []
            for e in m.results:
                lin = linear(e)
                if lin is not None and loop in lin[0]:
                    s = lin[0][loop]  # terms above the split loop index the local shard's blocks: / tp
                    coeffs = {i: x // tp if i != loop and x >= s * extent else x for i, x in lin[0].items()}
                    e = from_linear(coeffs, lin[1] // tp)
                exprs.append(e)
            new_maps.append(AffineMapAttr(AffineMap(m.num_dims, m.num_symbols, tuple(exprs))))
        k.properties["domain"] = DenseArrayBase.from_list(i64, domain)
        k.properties["indexing_maps"] = ArrayAttr(new_maps)
        kind = "row-parallel (partial sums)" if loop in k.reduction_dims else "split"
        kind += f" {tp} ways" if tp != self.tp else ""
        k.attributes["rdu.tp_loop"] = StringAttr(f"loop {loop} {kind}")
        for r, lay in zip(list(k.results), results, strict=True):
            self.retype(r, lay)

    def _loops_for(self, k: rdu.KernelOp, m: AffineMap, v: SSAValue, lay: Shard) -> list[tuple[int, int, int]]:
        shape = self.global_shape(v)
        lin = linear(m.results[lay.dim]) if shape is not None and lay.dim < len(m.results) else None
        if lin is None or shape is None:
            return []
        w = lay.ways
        b_op = shape[lay.dim] // (lay.blocks * w)
        out = []
        for loop, s in lin[0].items():
            extent = k.domain_sizes[loop]
            if 0 < s <= b_op and b_op % s == 0 and extent % (w * (b_op // s)) == 0:
                out.append((loop, extent // (w * (b_op // s)), w))
        return out

    def _column_start(self, k: rdu.KernelOp) -> tuple[int, int, int] | None:
        """Column-parallel: a matmul whose weight input has a parallel output loop."""
        if k.kind.data != rdu.Pattern.MATMUL or len(k.results) != 1:
            return None
        if any(self.layout(v) is not None for v in (*k.inputs, *k.inits)):
            return None
        out_map = k.indexing_maps.data[len(k.inputs)].data
        best = None
        for j, e in enumerate(out_map.results):
            if not isinstance(e, AffineDimExpr) or e.position in k.reduction_dims:
                continue
            loop = e.position
            readers = [v for v, m in zip(k.inputs, k.indexing_maps.data, strict=False) if mentions_map(m.data, loop)]
            if not readers or not all(weight_like(v) for v in readers):
                continue
            pref = self._prefer(k.results[0], j, 0)
            if pref is None or k.domain_sizes[loop] % (pref[0] * pref[1]):
                continue
            if best is None or k.domain_sizes[loop] > k.domain_sizes[best[0]]:
                best = (loop, *pref)
        return best

    def _prefer(self, v: SSAValue, dim: int, depth: int) -> tuple[int, int] | None:
        """(blocks, ways) the consumers of `v` would read dim `dim` in ((1, tp): contiguous,
        one shard per socket); a consumer that splits it into heads whose count tp does not
        divide asks for gcd(heads, tp) ways (heads shared by tp / ways sockets); None when
        that gcd is 1."""
        shape = _shape(v)
        assert shape is not None
        for use in list(v.uses):
            op = use.operation
            if not isinstance(op, rdu.KernelOp) or use.index >= len(op.inputs) + len(op.inits):
                continue
            m = op.indexing_maps.data[use.index].data
            lin = linear(m.results[dim])
            if lin is None or not lin[0]:
                continue
            loop, s = max(lin[0].items(), key=lambda kv: kv[1])
            if s > 1:
                extent = op.domain_sizes[loop]
                ways = math.gcd(extent, self.tp)
                if ways < 2:
                    return None
                b_op = s * extent // ways
                return (shape[dim] // (ways * b_op), ways) if shape[dim] % (ways * b_op) == 0 else None
            if depth < 8 and not op.reduction_dims and len(op.results) == 1:
                out = op.indexing_maps.data[len(op.inputs)].data
                for j, e in enumerate(out.results):
                    if isinstance(e, AffineDimExpr) and e.position == loop:
                        deeper = self._prefer(op.results[0], j, depth + 1)
                        if deeper != (1, self.tp):
                            return deeper
        return 1, self.tp

    def _sums(self, k: rdu.KernelOp) -> bool:
        """Every result accumulates a sum: the payload yields `acc + x` for its init `acc`."""
        block = k.body.block
        last = block.last_op
        if not isinstance(last, rdu.YieldOp):
            return False
        for i, y in enumerate(last.values):
            acc = block.args[len(k.inputs) + i]
            add = y.owner
            if not isinstance(add, arith.AddfOp | arith.AddiOp) or acc not in add.operands:
                return False
        return True

    def _zero_init(self, k: rdu.KernelOp, i: int) -> bool:
        if k.init_fills is not None:
            f = int(k.init_fills.get_values()[i])
            if f >= 0:
                return is_zero(k.captures[f])
        init = k.inits[i]
        owner = init.owner
        if isinstance(owner, rdu.ShardOp):
            owner = owner.source.owner
        if isinstance(owner, rdu.KernelOp) and owner.kind.data == rdu.Pattern.FILL:
            return len(owner.inputs) == 1 and is_zero(owner.inputs[0])
        return is_zero(init)

    # ------------------------------------------------------------------ clean-up
    def _push_shards(self) -> None:
        """Move `rdu.shard` up through all-parallel kernels whose every use takes that same
        shard (a weight's transpose, a fill): the kernel then computes only the shard."""
        changed = True
        while changed:
            changed = False
            for s in [op for op in self.fn.body.block.ops if isinstance(op, rdu.ShardOp)]:
                k = s.source.owner
                if not isinstance(k, rdu.KernelOp) or len(k.results) != 1 or k.reduction_dims or len(k.captures):
                    continue
                uses = [u.operation for u in k.results[0].uses]
                if not all(isinstance(u, rdu.ShardOp) and same_shard(u, s) for u in uses):
                    continue
                e = k.indexing_maps.data[len(k.inputs)].data.results[s.dim.value.data]
                if not isinstance(e, AffineDimExpr):
                    continue
                cand = (e.position, s.n_blocks, s.n_ways)
                req = self.requirements(k, cand) if s.n_ways == s.group.value.data else None  # from whole only
                if req is None:
                    continue
                self.apply(k, cand, *req)
                for u in uses:
                    u.results[0].replace_all_uses_with(k.results[0])
                    u.detach()
                    u.erase()
                changed = True
                break

    def _shard_arguments(self) -> None:
        """A function argument every use of which takes one shard becomes that shard."""
        attrs = list(self.fn.arg_attrs.data) if self.fn.arg_attrs is not None else [DictionaryAttr({})] * len(self.fn.args)
        for arg in list(self.fn.body.block.args):
            uses = [u.operation for u in arg.uses]
            if not uses or not all(isinstance(u, rdu.ShardOp) for u in uses):
                continue
            first = uses[0]
            assert isinstance(first, rdu.ShardOp)
            if not all(same_shard(u, first) for u in uses):  # type: ignore[arg-type]
                continue
            index = arg.index
            new = Rewriter.replace_value_with_new_type(arg, first.result.type)
            assert isinstance(new, BlockArgument)
            for u in uses:
                u.results[0].replace_all_uses_with(new)
                u.detach()
                u.erase()
            entry = dict(attrs[index].data)
            ways = [first.n_ways] if first.n_ways != self.tp else []
            entry[ARG_SHARD_ATTR] = DenseArrayBase.from_list(i64, [first.dim.value.data, self.tp, first.n_blocks, *ways])
            attrs[index] = DictionaryAttr(entry)
        self.fn.arg_attrs = ArrayAttr(attrs)


@dataclass(frozen=True)
class RduShardPass(ModulePass):
    """Split the program over `tp` sockets (module docstring)."""

    name = "rdu-shard"

    tp: int = 1
    fabric: str = ""
    vocab: bool = True  # vocabulary-parallel token embedding (passes/shard_vocab.py); false: replicated

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        fabric = fabric_for(self.name, self.fabric, op)
        sockets = fabric.node.sockets
        if self.tp < 1 or self.tp > sockets or sockets % self.tp:
            raise CompileError(
                self.name,
                f"tp = {self.tp} cannot run on fabric '{fabric.name}', whose node has {sockets} socket(s) "
                f"([sockets].count); tensor parallelism splits the program over a group of sockets that divides "
                f"the node. Use a tp that divides {sockets} (1..{sockets}), or a fabric with more sockets "
                "(sn40l-node8, sn40l-rack16).",
            )
        if TP_ATTR in op.attributes:
            raise CompileError(self.name, f"the module is sharded already ({TP_ATTR} = {module_tp(op)}); "
                               "run rdu-shard once, on the unsharded program")
        op.attributes[TP_ATTR] = IntegerAttr(self.tp, i64)
        if self.tp == 1:
            return
        notes: list[str] = []
        for fn in functions(op):
            sharder = Sharder(fn, self.tp, self.vocab)
            sharder.run()
            notes += sharder.notes
        if notes:
            op.attributes[NOTES_ATTR] = notes_attr(notes)
