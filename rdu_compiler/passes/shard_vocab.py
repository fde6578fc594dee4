"""rdu-shard's vocabulary-parallel embedding (Megatron's `VocabParallelEmbedding`).

A token-embedding lookup is a kernel whose payload yields one `tensor.extract` from a
weight table `[V, D]` (a capture) at row `id`, the token id read from a user input
(`rdu.input`). Under `rdu-shard{tp=N}` with `V % N == 0`, socket r holds rows
`[r V/N, (r+1) V/N)` of the table (the argument is recorded `rdu.shard = array<i64: 0, N, 1>`,
so the runtime gives each socket its rows) and looks up

    ok    = lo_r <= id < hi_r
    value = ok ? table_r[id - r V/N, :] : 0

so every token's row is non-zero on exactly one socket: the result is a **partial sum**
and the first reader gets an `rdu.all_reduce` of the `[tokens, D]` embeddings (one more
all-reduce per call than the replicated table; Megatron's).

The rank-dependent bounds come from one constant `tensor<N x 3 x i64>`, row r =
`(r V/N, lo_r, hi_r)`, taken per socket with `rdu.shard dim 0 group N` (GSPMD's
partition-id slice, no new op) and read as three 1-element inputs. `lo_0` is -2^62 and
`hi_{N-1}` is 2^62, so an id outside `[0, V)` is not masked away on every socket: socket 0
(negative ids) or socket N-1 (ids >= V) reads outside its shard and the emulator's bounds
check refuses the run, as it refuses the unsharded lookup (never a silent zero row).

A vocabulary that N does not divide (GPT-2's 50257 at N = 2) keeps the table
**replicated** (each socket looks up every row whole, no all-reduce), and the pass says so:
the kernel's `rdu.tp_loop` and the module's `rdu.tp_notes` (copied into the compile
report's `tp_notes`). Padding the table to a multiple of N (Megatron's
`make-vocab-size-divisible-by`) would change the weights' shape the user passes in; not
done [NF: the lookup is a small share of a decode step, the table's HBM is the cost].

A table read any other way (a position embedding indexed by computed positions, a gather
whose index is not a user input, a table with another use in the payload) is left to the
general rules (replicated).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xdsl.dialects import arith, tensor
from xdsl.dialects.builtin import (
    AffineMapAttr,
    ArrayAttr,
    DenseIntOrFPElementsAttr,
    FloatAttr,
    IndexType,
    IntegerAttr,
    IntegerType,
    StringAttr,
    TensorType,
    i64,
)
from xdsl.ir import BlockArgument, Operation
from xdsl.ir.affine import AffineExpr, AffineMap
from xdsl.rewriter import Rewriter

from rdu_compiler.dialects import rdu
from rdu_compiler.passes.shard_layout import PARTIAL, Shard, is_input, weight_like

if TYPE_CHECKING:
    from rdu_compiler.passes.rdu_shard import Sharder

NOTES_ATTR = "rdu.tp_notes"
_FAR = 2**62  # an id bound no table reaches: the edge sockets keep out-of-range ids (bounds check)


def embedding_lookup(k: rdu.KernelOp) -> tuple[int, tensor.ExtractOp] | None:
    """(capture index of the table, its `tensor.extract`) when `k` is a token-embedding
    lookup (module docstring), else None."""
    if len(k.results) != 1 or k.reduction_dims or k.scan_dim is not None or k.kind.data == rdu.Pattern.SCATTER:
        return None
    block = k.body.block
    last = block.last_op
    if not isinstance(last, rdu.YieldOp) or len(last.values) != 1:
        return None
    ext = last.values[0].owner
    if not isinstance(ext, tensor.ExtractOp) or len(ext.indices) != 2:
        return None
    src, n_mapped = ext.tensor, len(k.inputs) + len(k.inits)
    if not isinstance(src, BlockArgument) or src.block is not block or src.index < n_mapped or len(list(src.uses)) != 1:
        return None
    c = src.index - n_mapped
    table = k.captures[c]
    if not isinstance(table.type, TensorType) or len(table.type.get_shape()) != 2 or not weight_like(table):
        return None
    row = ext.indices[0]
    while isinstance(row.owner, arith.IndexCastOp):
        row = row.owner.operands[0]
    if not isinstance(row, BlockArgument) or row.block is not block or row.index >= len(k.inputs):
        return None
    ids = k.inputs[row.index]
    if not isinstance(ids, BlockArgument) or not is_input(ids):
        return None
    return c, ext


def vocab_parallel(sh: Sharder, k: rdu.KernelOp) -> bool:
    """Split the table of token-embedding lookup `k` by vocabulary rows over `sh.tp`
    sockets (module docstring); True when done (the result is then partial), False when
    `k` is not such a lookup or its vocabulary does not divide (then noted)."""
    found = embedding_lookup(k)
    if found is None:
        return False
    c, ext = found
    table = k.captures[c]
    vocab = table.type.get_shape()[0]  # type: ignore[attr-defined]
    tp = sh.tp
    if vocab % tp:
        note = (f"kernel '{k.label}': embedding table of {vocab} rows kept replicated: tp = {tp} does not divide "
                "the vocabulary (pad the vocabulary to a multiple of tp to split it)")
        k.attributes["rdu.tp_loop"] = StringAttr(f"replicated: vocabulary {vocab} not a multiple of tp {tp}")
        sh.notes.append(note)
        return False
    per = vocab // tp
    local_table = sh.to(table, Shard(0, 1, tp), k)
    rows = [[r * per, r * per if r else -_FAR, (r + 1) * per if r < tp - 1 else _FAR] for r in range(tp)]
    const = arith.ConstantOp(DenseIntOrFPElementsAttr.from_list(TensorType(i64, [tp, 3]), [x for r in rows for x in r]))
    bounds = rdu.ShardOp(const.result, TensorType(i64, [1, 3]), 0, tp)
    block = k.parent_block()
    assert block is not None
    block.insert_op_before(const, k)
    block.insert_op_before(bounds, k)
    sh.lay[bounds.result] = Shard(0, 1, tp)
    # the kernel again, with the three bounds as inputs and its shard of the table
    rank = len(k.domain_sizes)
    maps = list(k.indexing_maps.data)
    n_in = len(k.inputs)
    const_maps = [AffineMapAttr(AffineMap(rank, 0, (AffineExpr.constant(0), AffineExpr.constant(j)))) for j in range(3)]
    captures = list(k.captures)
    captures[c] = local_table
    body = k.detach_region(k.body)
    payload = body.block
    n_mapped = n_in + len(k.inits)
    Rewriter.replace_value_with_new_type(payload.args[n_mapped + c], local_table.type)  # the payload sees its shard
    args = [payload.insert_arg(i64, n_in + j) for j in range(3)]
    _mask(payload, ext, args)
    extra = {n: v for n, v in k.properties.items()
             if n not in ("kind", "domain", "indexing_maps", "iterator_types", "operandSegmentSizes")}
    new = rdu.KernelOp([*k.inputs, bounds.result, bounds.result, bounds.result], list(k.inits), captures,
                       [r.type for r in k.results], k.kind.data, k.domain_sizes,
                       [*maps[:n_in], *const_maps, *maps[n_in:]], list(k.iterator_types.data), body, extra)
    new.attributes.update(k.attributes)
    new.attributes["rdu.tp_loop"] = StringAttr(f"vocabulary-parallel: rows {per} of {vocab} per socket (partial)")
    block.insert_op_before(new, k)
    k.results[0].replace_all_uses_with(new.results[0])
    k.detach()
    k.erase()
    sh.lay[new.results[0]] = PARTIAL
    return True


def _mask(payload: object, ext: tensor.ExtractOp, bounds: list[BlockArgument]) -> None:
    """Rewrite `ext` (reading row `id`) to read row `id - offset` of the socket's shard where
    `lo <= id < hi`, row 0 elsewhere, and yield 0 there."""
    index = IndexType()
    off, lo, hi = (arith.IndexCastOp(b, index) for b in bounds)
    row = ext.indices[0]
    ge = arith.CmpiOp(row, lo, "sge")
    lt = arith.CmpiOp(row, hi, "slt")
    ok = arith.AndIOp(ge, lt)
    local = arith.SubiOp(row, off)
    zero_row = arith.ConstantOp(IntegerAttr(0, index))
    safe = arith.SelectOp(ok, local, zero_row)
    new_ops: list[Operation] = [off, lo, hi, ge, lt, ok, local, zero_row, safe]
    blk = ext.parent_block()
    assert blk is not None
    for op in new_ops:
        blk.insert_op_before(op, ext)
    ext.operands[1] = safe.result
    elt = ext.result.type
    zero = arith.ConstantOp(IntegerAttr(0, elt) if isinstance(elt, IntegerType) else FloatAttr(0.0, elt))  # type: ignore[arg-type]
    masked = arith.SelectOp(ok, ext.result, zero)
    blk.insert_op_after(zero, ext)
    blk.insert_op_after(masked, zero)
    last = blk.last_op
    assert isinstance(last, rdu.YieldOp)
    last.operands[0] = masked.result


def tp_notes(module: object) -> list[str]:
    """The `rdu.tp_notes` rdu-shard wrote on `module` (what it kept replicated and why)."""
    attr = getattr(module, "attributes", {}).get(NOTES_ATTR)
    return [a.data for a in attr.data if isinstance(a, StringAttr)] if isinstance(attr, ArrayAttr) else []


def notes_attr(notes: list[str]) -> ArrayAttr[StringAttr]:
    """The module attribute `rdu.tp_notes` of the pass's notes."""
    return ArrayAttr([StringAttr(n) for n in notes])
