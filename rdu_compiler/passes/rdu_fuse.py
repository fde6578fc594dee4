"""rdu-fuse: fold elementwise producers into their consumer kernel.

A producer kernel P is folded into a consumer C when P is all-parallel with one result,
that result is read only by C (one operand), P writes it with the identity map, and C
reads it through distinct loops of its own, each possibly scaled and offset (`i`,
`2 * i + 1`: a permutation, a slice or a strided window, as `rdu-fold-views` leaves
them). The fused kernel runs P's payload on the fly inside C's, with P's operands
accessed through P's maps composed with C's: elementwise chains become one kernel, a
transpose feeding a matmul becomes the matmul's access pattern, and `exp` feeding a row
sum becomes part of the reduction. Numerics are unchanged (the same scalar ops run in
the same order per element).

A producer without arithmetic (a transpose, a copy, a dtype conversion, an iota; not a
gather) is folded into each of its consumers even when it has several: it is only an
access pattern, so every consumer reads P's operands directly and P disappears once the
last one has folded it.

Reductions are never folded into consumers (their result is only complete after the
whole reduction loop); they are joined to consumers as pipeline stages by rdu-section.

Which producer folds into which consumer is decided per consumer, from its producers
(`fusable_operand`), so the pass is two patterns applied by two walks, each visiting
every function-level kernel once: `FuseIntoConsumer` forward (in program order, a
consumer drops its dead results, starts its accumulators from constant fills, then
folds producers until none qualifies; a kernel already folded into a consumer is
gone and not visited), then `EraseDeadKernel` backward (a kernel nobody reads and
that checks nothing, after the kernels reading it).
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import arith, cf, func, tensor
from xdsl.dialects.builtin import AffineMapAttr, DenseArrayBase, ModuleOp, StringAttr, i64
from xdsl.ir import Attribute, Block, Operation, Region, SSAValue
from xdsl.ir.affine import AffineDimExpr, AffineMap
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
    op_type_rewrite_pattern,
)

from rdu_compiler.dialects import rdu
from rdu_compiler.errors import CompileError
from rdu_compiler.kernel.access import Access
from rdu_compiler.kernel.payload import classify_kernel, flops_per_point


def _distinct_loops(amap: AffineMap) -> bool:
    """Every result is a constant or `c * i + k` of one loop `i` (c >= 1), no loop
    twice: a projected permutation, possibly strided and offset, of a window."""
    dims = []
    for e in amap.results:
        try:
            coeffs, _ = Access.from_map(AffineMap(amap.num_dims, 0, (e,))).forms[0]
        except CompileError:
            return False
        used = [d for d, c in enumerate(coeffs) if c]
        if not used:
            continue
        if len(used) != 1 or coeffs[used[0]] < 1:
            return False
        dims.append(used[0])
    return len(set(dims)) == len(dims)


def _linear(amap: AffineMap) -> bool:
    """An access pattern `tiling.Access` can express, with no negative coefficient."""
    try:
        forms = Access.from_map(amap).forms
    except CompileError:
        return False
    return all(c >= 0 for coeffs, _ in forms for c in coeffs)


def _pure_loops(amap: AffineMap) -> bool:
    return all(isinstance(e, AffineDimExpr) for e in amap.results)


def _access_only(producer: rdu.KernelOp) -> bool:
    """No arithmetic and no gather: folding it into several consumers duplicates no work."""
    return producer.kind.data != rdu.Pattern.GATHER and not flops_per_point(producer.body.block)


def _skips_a_loop(amap: AffineMap) -> bool:
    try:
        return len(Access.from_map(amap).dims) != amap.num_dims
    except CompileError:
        return False


def _feeds_only_contractions(kernel: rdu.KernelOp) -> bool:
    """Every reader of the kernel's results reads them skipping one of its own loops (a
    matmul's operand, a broadcast): `fusable_operand` never folds a producer with
    arithmetic into such a reader, only FLOP-free ones."""
    uses = [u for r in kernel.results for u in r.uses]
    return bool(uses) and all(isinstance(u.operation, rdu.KernelOp) and u.index < len(u.operation.indexing_maps.data)
                              and _skips_a_loop(u.operation.indexing_maps.data[u.index].data) for u in uses)


def fusable_operand(consumer: rdu.KernelOp, max_operands: int = 6) -> int | None:
    """Index of an input of `consumer` whose producer can be folded into it, or None.

    The consumer must read the producer's result through distinct loops. If that read
    skips some consumer loops (a matmul reads A through (m, k), not n), the producer's
    payload would be recomputed along them, so only FLOP-free producers (transposes,
    broadcasts, copies) are folded then. The fused kernel keeps at most `max_operands`
    input/init operands: each needs its own PMU buffer and PCU input stream (a modelling
    limit; real PCUs have a few vector inputs).
    """
    if consumer.kind.data in (rdu.Pattern.SCAN, rdu.Pattern.SCATTER, rdu.Pattern.HASH_PROBE):
        return None
    # A FLOP-free consumer read only by contractions (the `extf` of a bf16 matmul operand)
    # takes no producer with arithmetic: it will fold into the contraction as an access
    # pattern, and the producer then streams its own (bf16) result to the contraction,
    # instead of the widened f32 one at twice the bytes.
    keep_cast = _access_only(consumer) and _feeds_only_contractions(consumer)
    for i, value in enumerate(consumer.inputs):
        producer = value.owner
        if not isinstance(producer, rdu.KernelOp) or producer.kind.data in (rdu.Pattern.SCAN, rdu.Pattern.SCATTER, rdu.Pattern.HASH_PROBE):
            continue
        if producer.reduction_dims or len(producer.results) != 1:
            continue
        if len(list(value.uses)) != 1 and not _access_only(producer):
            continue
        if keep_cast and not _access_only(producer):
            continue
        n_in = len(producer.inputs)
        if producer.body.block.args[n_in].uses:
            continue  # the producer reads its init: not a pure function of its inputs
        out_map = producer.indexing_maps.data[n_in].data
        if out_map != AffineMap.identity(out_map.num_dims):
            continue
        read = consumer.indexing_maps.data[i].data
        if len(read.results) != len(producer.domain_sizes):
            continue
        if not _distinct_loops(read) and not (_access_only(producer) and _linear(read)):
            continue  # arithmetic read through a mix of loops could be computed twice
        if not _pure_loops(read) and any(isinstance(o, rdu.IndexOp) for o in producer.body.block.ops):
            continue  # the producer's loop index would be an affine function of ours
        if len(Access.from_map(read).dims) != read.num_dims and flops_per_point(producer.body.block):
            continue  # the read skips a loop: the producer's arithmetic would be recomputed along it
        if len(consumer.inputs) + len(consumer.inits) - 1 + len(producer.inputs) > max_operands:
            continue
        return i
    return None


def fuse(consumer: rdu.KernelOp, i: int) -> rdu.KernelOp:
    """The kernel computing `consumer` with the producer of its input `i` folded in."""
    producer = consumer.inputs[i].owner
    assert isinstance(producer, rdu.KernelOp)
    p_in, c_in = len(producer.inputs), len(consumer.inputs)
    c_maps = [m.data for m in consumer.indexing_maps.data]
    p_maps = [m.data for m in producer.indexing_maps.data]
    perm = c_maps[i]  # consumer loops -> producer loops
    keep = [j for j in range(c_in) if j != i]
    inputs = [*producer.inputs, *(consumer.inputs[j] for j in keep)]
    maps = [*(m.compose(perm) for m in p_maps[:p_in]), *(c_maps[j] for j in keep), *c_maps[c_in:]]
    captures = [*producer.captures, *consumer.captures]
    p_block, c_block = producer.body.block, consumer.body.block
    p_caps = p_block.args[p_in + 1 :]
    c_inits = c_block.args[c_in : c_in + len(consumer.inits)]
    c_caps = c_block.args[c_in + len(consumer.inits) :]
    types = [a.type for a in (*p_block.args[:p_in], *(c_block.args[j] for j in keep), *c_inits, *p_caps, *c_caps)]
    block = Block(arg_types=types)
    args = list(block.args)
    n_new_in = p_in + len(keep)
    mapping: dict[SSAValue, SSAValue] = {}
    for a, b in zip(p_block.args[:p_in], args[:p_in], strict=True):
        mapping[a] = b
    n_new_init = len(c_inits)
    for a, b in zip(p_caps, args[n_new_in + n_new_init : n_new_in + n_new_init + len(p_caps)], strict=True):
        mapping[a] = b
    produced = _clone_payload(p_block, block, mapping, perm)
    c_map: dict[SSAValue, SSAValue] = {c_block.args[i]: produced}
    for a, b in zip((c_block.args[j] for j in keep), args[p_in:n_new_in], strict=True):
        c_map[a] = b
    for a, b in zip(c_inits, args[n_new_in : n_new_in + n_new_init], strict=True):
        c_map[a] = b
    for a, b in zip(c_caps, args[n_new_in + n_new_init + len(p_caps) :], strict=True):
        c_map[a] = b
    for op in c_block.ops:
        block.add_op(op.clone(value_mapper=c_map))
        for old, new in zip(op.results, block.last_op.results, strict=True):  # type: ignore[union-attr]
            c_map[old] = new
    iterators = [str(it.data.value) for it in consumer.iterator_types.data]
    kind = classify_kernel(block, len(inputs), iterators, maps, consumer.domain_sizes)
    extra: dict[str, Attribute] = {"sym_name": StringAttr(f"{consumer.label.split('_', 1)[0]}_{kind.value}")}
    if consumer.init_fills is not None:  # the consumer's captures now follow the producer's
        shifted = [f + len(p_caps) if f >= 0 else -1 for f in consumer.init_fills.get_values()]
        extra["init_fills"] = DenseArrayBase.from_list(i64, shifted)
    fused = rdu.KernelOp(
        inputs,
        list(consumer.inits),
        captures,
        [r.type for r in consumer.results],
        kind,
        consumer.domain_sizes,
        [AffineMapAttr(m) for m in maps],
        list(consumer.iterator_types.data),
        Region(block),
        extra,
    )
    return fused


def _clone_payload(src: Block, dst: Block, mapping: dict[SSAValue, SSAValue], perm: AffineMap) -> SSAValue:
    """Clone the producer's payload into dst; return the value it yields.

    `rdu.index` of producer loop j becomes the index of the consumer loop that maps to j.
    """
    loop_of = {r: e.position for r, e in enumerate(perm.results) if isinstance(e, AffineDimExpr)}
    for op in src.ops:
        if isinstance(op, rdu.YieldOp):
            return mapping[op.operands[0]]
        if isinstance(op, rdu.IndexOp):
            new = rdu.IndexOp(loop_of[op.dim.value.data])
            dst.add_op(new)
            mapping[op.result] = new.result
            continue
        dst.add_op(op.clone(value_mapper=mapping))
        for old, new_v in zip(op.results, dst.last_op.results, strict=True):  # type: ignore[union-attr]
            mapping[old] = new_v
    raise AssertionError("payload without rdu.yield")


def _live_ops(block: Block, roots: list[SSAValue]) -> set[Operation]:
    """Payload ops that compute `roots`, plus runtime checks (cf.assert) and their inputs."""
    live: set[Operation] = set()
    stack = [v.owner for v in roots if isinstance(v.owner, Operation)]
    stack += [op for op in block.ops if isinstance(op, cf.AssertOp)]
    while stack:
        op = stack.pop()
        if op in live:
            continue
        live.add(op)
        stack.extend(v.owner for v in op.operands if isinstance(v.owner, Operation))
    return live


def drop_dead_results(kernel: rdu.KernelOp) -> rdu.KernelOp | None:
    """The kernel without results nobody reads (and the payload only they needed), or None.

    torch-mlir lowers softmax's max through `aten.max.dim`, whose argmax result is never
    read; computing it would cost a compare and a select per element.
    """
    keep = [i for i, r in enumerate(kernel.results) if r.uses]
    if len(keep) == len(kernel.results) or not keep or kernel.kind.data in (rdu.Pattern.SCAN, rdu.Pattern.SCATTER, rdu.Pattern.HASH_PROBE):
        return None
    block = kernel.body.block
    n_in, n_init = len(kernel.inputs), len(kernel.inits)
    yielded = list(block.last_op.operands)  # type: ignore[union-attr]
    live = _live_ops(block, [yielded[i] for i in keep])
    dropped_args = {block.args[n_in + i] for i in range(n_init) if i not in keep}
    if any(a in op.operands for op in live for a in dropped_args):
        return None
    kept_args = [*block.args[:n_in], *(block.args[n_in + i] for i in keep), *block.args[n_in + n_init :]]
    new_block = Block(arg_types=[a.type for a in kept_args])
    mapping: dict[SSAValue, SSAValue] = dict(zip(kept_args, new_block.args, strict=True))
    for op in block.ops:
        if op in live:
            new_block.add_op(op.clone(value_mapper=mapping))
            for old, new in zip(op.results, new_block.last_op.results, strict=True):  # type: ignore[union-attr]
                mapping[old] = new
    new_block.add_op(rdu.YieldOp(*(mapping[yielded[i]] for i in keep)))
    maps = [*kernel.indexing_maps.data[:n_in], *(kernel.indexing_maps.data[n_in + i] for i in keep)]
    new = rdu.KernelOp(
        list(kernel.inputs),
        [kernel.inits[i] for i in keep],
        list(kernel.captures),
        [kernel.results[i].type for i in keep],
        kernel.kind.data,
        kernel.domain_sizes,
        list(maps),
        list(kernel.iterator_types.data),
        Region(new_block),
        {"sym_name": StringAttr(kernel.label)},
    )
    if kernel.init_fills is not None:
        fills = list(kernel.init_fills.get_values())
        new.init_fills = DenseArrayBase.from_list(i64, [fills[i] for i in keep])
    return new


def fold_init_fills(kernel: rdu.KernelOp) -> rdu.KernelOp | None:
    """The reduction kernel with every accumulator that a constant fill initialises
    started from that constant instead (`init_fills`), or None when there is none.

    A fill qualifies when it is a `fill` kernel of an `arith.constant` scalar into a
    `tensor.empty`, written with the identity map: on the chip the PCU sets its
    accumulators, so the fill needs no units, no buffer and no stream. A fill that several
    kernels read (torch-mlir shares one zero tensor between same-shaped matmuls) is
    folded into each; the caller erases it once it has no uses.
    """
    if not kernel.reduction_dims or kernel.kind.data in (rdu.Pattern.SCAN, rdu.Pattern.SCATTER, rdu.Pattern.HASH_PROBE):
        return None
    fills = list(kernel.init_fills.get_values()) if kernel.init_fills is not None else [-1] * len(kernel.inits)
    inits = list(kernel.inits)
    captures = list(kernel.captures)
    changed = False
    for j, v in enumerate(inits):
        f = v.owner
        if fills[j] != -1 or not isinstance(f, rdu.KernelOp) or f.kind.data != rdu.Pattern.FILL:
            continue
        if len(f.inputs) != 1 or not isinstance(f.inits[0].owner, tensor.EmptyOp):
            continue
        scalar = f.inputs[0]
        out_map = f.indexing_maps.data[1].data
        if not isinstance(scalar.owner, arith.ConstantOp) or out_map != AffineMap.identity(out_map.num_dims):
            continue
        if scalar.type != rdu.element_type_of(v.type) or f.inits[0].type != v.type:
            continue
        inits[j] = f.inits[0]
        fills[j] = len(captures)
        captures.append(scalar)
        changed = True
    if not changed:
        return None
    block = kernel.body.block
    kernel.body.detach_block(block)
    for c in captures[len(kernel.captures) :]:
        block.insert_arg(c.type, len(block.args))
    props = {k: a for k, a in kernel.properties.items() if k not in ("operandSegmentSizes", "init_fills")}
    props["init_fills"] = DenseArrayBase.from_list(i64, fills)
    return rdu.KernelOp(
        list(kernel.inputs),
        inits,
        captures,
        [r.type for r in kernel.results],
        kernel.kind.data,
        kernel.domain_sizes,
        list(kernel.indexing_maps.data),
        list(kernel.iterator_types.data),
        Region(block),
        props,
    )


def _at_function_level(op: Operation) -> bool:
    return isinstance(op.parent_op(), func.FuncOp)


@dataclass
class FuseIntoConsumer(RewritePattern):
    """A consumer kernel drops its unread results, starts its accumulators from constant
    fills, then folds in producers while one qualifies (module docstring)."""

    max_operands: int = 6

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: rdu.KernelOp, rewriter: PatternRewriter) -> None:
        if not _at_function_level(op):
            return
        current = op
        if (trimmed := drop_dead_results(current)) is not None:
            live = iter(trimmed.results)
            mapped = [next(live) if r.uses else None for r in current.results]
            rewriter.replace(current, trimmed, new_results=mapped)
            current = trimmed
        if (filled := fold_init_fills(current)) is not None:
            fill_kernels = {v.owner for v in current.inits} - {v.owner for v in filled.inits}
            rewriter.replace(current, filled)
            for f in fill_kernels:
                if isinstance(f, rdu.KernelOp) and not f.results[0].uses:
                    rewriter.erase(f)
            current = filled
        while (i := fusable_operand(current, self.max_operands)) is not None:
            producer = current.inputs[i].owner
            fused = fuse(current, i)
            rewriter.replace(current, fused)
            assert isinstance(producer, rdu.KernelOp)
            if not producer.results[0].uses:
                rewriter.erase(producer)
            current = fused


class EraseDeadKernel(RewritePattern):
    """A function-level kernel whose results nobody reads and whose payload checks
    nothing (no `cf.assert`) is erased: e.g. the fill of a dropped argmax result."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: rdu.KernelOp, rewriter: PatternRewriter) -> None:
        if not _at_function_level(op) or any(r.uses for r in op.results):
            return
        if not any(isinstance(o, cf.AssertOp) for o in op.body.block.walk()):
            rewriter.erase(op)


@dataclass(frozen=True)
class RduFusePass(ModulePass):
    """Fold elementwise producers (and transposes) into their single consumer kernel.

    `max_operands`: the most input/init operands a fused kernel may have (each needs a
    PMU buffer and a PCU input stream)."""

    name = "rdu-fuse"

    max_operands: int = 6

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        PatternRewriteWalker(FuseIntoConsumer(self.max_operands), apply_recursively=False).rewrite_module(op)
        PatternRewriteWalker(EraseDeadKernel(), apply_recursively=False, walk_reverse=True).rewrite_module(op)
