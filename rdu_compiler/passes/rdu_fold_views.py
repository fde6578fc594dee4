"""rdu-fold-views: fold reshapes and slices into the access patterns of the kernels that read them.

A kernel input `%v = rdu.view(%src)` is replaced by `%src`, read through the view's
index map composed with the kernel's map, when that composition is linear (the access
patterns of `tiling.Access`):

- `<slice>`: source index `j` = `offset_j + stride_j * i_j` (same rank);
- `<reshape>` that only *expands* dims (`4096x4096 -> 1x4096x32x128`: the source
  index is `i_1 * 128 + i_3`) or drops / inserts unit dims (`1x32x4096 -> 32x4096`).
  A reshape that merges two dims of size > 1 (`1x4096x32x128 -> 4096x4096`) needs a
  floordiv/mod to undo. When the kernel walks each merged dim with a loop of its own
  that no result map and no `rdu.index` uses (a matmul's reduction loop), that loop is
  split into one loop per merged source dim (`split_loops_for_merge`): the kernel then
  reads the source as is and its other operands read the split loop through a linear
  form. Otherwise the view stays.

The address generators of the PMUs compute these patterns (sn40l.md: a logical tensor
is addressed by affine patterns; a transpose is an access pattern, not an op), so a view
between two kernels no longer separates them: `rdu-fuse`, which runs next, can fold the
producer into the consumer. Views read by something other than a kernel input (a store,
a concat, a kernel's init, a scan) are left alone, and a view left without uses is
erased. Numerics are unchanged: the same elements are read.

The pass is one pattern (`FoldInputViews`, on each function-level `rdu.kernel`) applied
by a single forward walk: folding one kernel's inputs never enables a fold elsewhere (a
view shared by two kernels is folded by each; a chain of views is followed within one
kernel), so one visit per kernel reaches the fixed point.

    rdu-opt -p rdu-fold-views in.mlir
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import func
from xdsl.dialects.builtin import (
    AffineMapAttr,
    ArrayAttr,
    DenseArrayBase,
    IntegerAttr,
    ModuleOp,
    StringAttr,
    i64,
)
from xdsl.ir.affine import AffineConstantExpr, AffineDimExpr, AffineExpr, AffineMap
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
    op_type_rewrite_pattern,
)

from rdu_compiler.dialects import rdu
from rdu_compiler.kernel.payload import classify_kernel


def reshape_map(src: tuple[int, ...], dst: tuple[int, ...]) -> AffineMap | None:
    """The map from `dst` indices to `src` indices of a row-major reshape, or None when
    a source index is not linear in the destination's (two non-unit dims merged).

    Example: `reshape_map((8, 64), (1, 8, 4, 16))` is `(d0, d1, d2, d3) -> (d1, d2 * 16 + d3)`.
    """
    if math.prod(src) != math.prod(dst):
        return None
    exprs: list[AffineExpr] = []
    j = 0
    for size in src:
        if size == 1:
            exprs.append(AffineConstantExpr(0))
            continue
        while j < len(dst) and dst[j] == 1:
            j += 1
        group: list[int] = []
        prod = 1
        while j < len(dst) and prod < size:
            if dst[j] != 1:
                group.append(j)
                prod *= dst[j]
            j += 1
        if prod != size:
            return None  # a destination dim spans several source dims: floordiv/mod
        expr: AffineExpr | None = None
        stride = 1
        for d in reversed(group):
            term = AffineDimExpr(d) * stride if stride != 1 else AffineDimExpr(d)
            expr = term if expr is None else term + expr
            stride *= dst[d]
        assert expr is not None
        exprs.append(expr)
    if any(dst[k] != 1 for k in range(j, len(dst))):
        return None
    return AffineMap(len(dst), 0, tuple(exprs))


def slice_map(view: rdu.ViewOp) -> AffineMap | None:
    """`(i...) -> (offset + stride * i ...)` of a same-rank slice, or None (rank-reducing)."""
    src, dst = rdu.shape_of(view.source.type), rdu.shape_of(view.result.type)
    if view.offsets is None or view.strides is None or len(src) != len(dst):
        return None
    offsets, strides = list(view.offsets.get_values()), list(view.strides.get_values())
    if len(offsets) != len(src) or len(strides) != len(src) or any(s < 1 for s in strides):
        return None
    exprs = []
    for d, (o, s) in enumerate(zip(offsets, strides, strict=True)):
        e: AffineExpr = AffineDimExpr(d) * s if s != 1 else AffineDimExpr(d)
        exprs.append(e + o if o else e)
    return AffineMap(len(dst), 0, tuple(exprs))


def view_map(view: rdu.ViewOp) -> AffineMap | None:
    """Result indices -> source indices of a view, when linear (module docstring)."""
    mode = view.mode.data
    if mode == rdu.ViewMode.SLICE:
        return slice_map(view)
    if mode == rdu.ViewMode.RESHAPE:
        return reshape_map(rdu.shape_of(view.source.type), rdu.shape_of(view.result.type))
    return None


def _groups(src: tuple[int, ...], dst: tuple[int, ...]) -> list[tuple[list[int], list[int]]] | None:
    """The reshape as groups of (source dims, destination dims) of size > 1 with equal
    products, where each group has one source or one destination dim; None otherwise."""
    s = [d for d, n in enumerate(src) if n != 1]
    t = [d for d, n in enumerate(dst) if n != 1]
    out: list[tuple[list[int], list[int]]] = []
    i = j = 0
    while i < len(s) and j < len(t):
        gs, gt = [s[i]], [t[j]]
        ps, pt = src[s[i]], dst[t[j]]
        i, j = i + 1, j + 1
        while ps != pt:
            if ps < pt and i < len(s):
                gs.append(s[i])
                ps *= src[s[i]]
                i += 1
            elif pt < ps and j < len(t):
                gt.append(t[j])
                pt *= dst[t[j]]
                j += 1
            else:
                return None
        if len(gs) > 1 and len(gt) > 1:
            return None
        out.append((gs, gt))
    return out if i == len(s) and j == len(t) else None


def split_loops_for_merge(kernel: rdu.KernelOp, i: int, maps: list[AffineMap]) -> list[AffineMap] | None:
    """Read input `i`, a reshape that merges dims (`1x16x4x16 -> 16x64`), from its source
    by splitting the kernel loop that walks each merged dim into one loop per source dim
    (in place: domain, iterator types, `rdu.index` dims). Returns the kernel's new maps,
    operand `i` reading the view's source, or None (nothing changed) unless every merged
    dim is walked by a loop of its own that no result map and no `rdu.index` uses.

    The loop nest is the same set of points in the same order, so the payload and its
    numbers are unchanged; the other operands read the split loop through a linear form.
    """
    view = kernel.inputs[i].owner
    assert isinstance(view, rdu.ViewOp)
    src, dst = rdu.shape_of(view.source.type), rdu.shape_of(view.result.type)
    groups = _groups(src, dst)
    if groups is None:
        return None
    read = maps[i]
    n_in = len(kernel.inputs)
    out_dims = set().union(*(m.results[k].used_dims() for m in maps[n_in:] for k in range(len(m.results))))
    index_dims = {o.dim.value.data for o in kernel.body.block.walk() if isinstance(o, rdu.IndexOp)}
    split: dict[int, list[int]] = {}  # loop -> source dims it becomes
    for gs, gt in groups:
        if len(gs) == 1:
            continue
        e = read.results[gt[0]]
        if not isinstance(e, AffineDimExpr) or e.position in out_dims or e.position in index_dims:
            return None
        if sum(e.position in r.used_dims() for r in read.results) != 1:
            return None
        split[e.position] = gs
    if not split:
        return None
    domain = kernel.domain_sizes
    new_pos: list[list[int]] = []
    sizes: list[int] = []
    for d, n in enumerate(domain):
        parts = [src[g] for g in split[d]] if d in split else [n]
        new_pos.append(list(range(len(sizes), len(sizes) + len(parts))))
        sizes += parts
    subst: list[AffineExpr] = []
    for d in range(len(domain)):
        expr: AffineExpr | None = None
        stride = 1
        for p in reversed(new_pos[d]):
            term = AffineDimExpr(p) * stride if stride != 1 else AffineDimExpr(p)
            expr = term if expr is None else term + expr
            stride *= sizes[p]
        assert expr is not None
        subst.append(expr)
    s_map = AffineMap(len(sizes), 0, tuple(subst))
    new_maps = [m.compose(s_map) for m in maps]
    moved = new_maps[i]  # destination indices over the new loops
    src_exprs: list[AffineExpr] = [AffineConstantExpr(0)] * len(src)
    for gs, gt in groups:
        if len(gs) > 1:  # merged: one new loop per source dim
            d = read.results[gt[0]].position  # type: ignore[union-attr]
            for g, p in zip(gs, new_pos[d], strict=True):
                src_exprs[g] = AffineDimExpr(p)
            continue
        expr = None
        stride = 1
        for t in reversed(gt):  # one source dim read through split destination dims
            term = moved.results[t] * stride if stride != 1 else moved.results[t]
            expr = term if expr is None else term + expr
            stride *= dst[t]
        src_exprs[gs[0]] = expr  # type: ignore[assignment]
    new_maps[i] = AffineMap(len(sizes), 0, tuple(src_exprs))
    iters = list(kernel.iterator_types.data)
    kernel.properties["domain"] = DenseArrayBase.from_list(i64, sizes)
    kernel.properties["iterator_types"] = ArrayAttr([iters[d] for d in range(len(domain)) for _ in new_pos[d]])
    for o in kernel.body.block.walk():
        if isinstance(o, rdu.IndexOp):
            o.properties["dim"] = IntegerAttr(new_pos[o.dim.value.data][0], i64)
    return new_maps


def fold_input_views(kernel: rdu.KernelOp, rewriter: PatternRewriter) -> bool:
    """Read every foldable view input of `kernel` from its source instead (in place;
    views left without uses are erased through `rewriter`). Returns whether anything
    changed. Tiled kernels are left alone: their buffers were sized for the patterns they
    have (the pass runs before rdu-tile)."""
    if kernel.kind.data in (rdu.Pattern.SCAN, rdu.Pattern.SCATTER, rdu.Pattern.HASH_PROBE) or kernel.tile is not None:
        return False
    maps = [m.data for m in kernel.indexing_maps.data]
    changed = False
    for i, value in enumerate(list(kernel.inputs)):
        while isinstance(view := value.owner, rdu.ViewOp):
            vmap = view_map(view)
            if vmap is not None:
                maps[i] = vmap.compose(maps[i])
            elif view.mode.data == rdu.ViewMode.RESHAPE and (split := split_loops_for_merge(kernel, i, maps)) is not None:
                maps = split
            else:
                break
            value = view.source
            operands = list(kernel.operands)
            operands[i] = value
            kernel.operands = operands
            changed = True
            if not view.result.uses:
                rewriter.erase(view)
    if changed:
        kernel.properties["indexing_maps"] = ArrayAttr([AffineMapAttr(m) for m in maps])
        iterators = [str(it.data.value) for it in kernel.iterator_types.data]
        kind = classify_kernel(kernel.body.block, len(kernel.inputs), iterators, maps, kernel.domain_sizes)
        if kind != kernel.kind.data:
            kernel.properties["kind"] = rdu.PatternAttr(kind)
            kernel.properties["sym_name"] = StringAttr(f"{kernel.label.split('_', 1)[0]}_{kind.value}")
    return changed


class FoldInputViews(RewritePattern):
    """A function-level kernel reads its foldable view inputs from their sources."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: rdu.KernelOp, rewriter: PatternRewriter) -> None:
        if not isinstance(op.parent_op(), func.FuncOp):
            return  # kernels in sections (after rdu-section) read streams: left as they are
        if fold_input_views(op, rewriter):
            rewriter.notify_op_modified(op)


@dataclass(frozen=True)
class RduFoldViewsPass(ModulePass):
    """Fold slices and expanding reshapes into the input access patterns of kernels."""

    name = "rdu-fold-views"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        PatternRewriteWalker(FoldInputViews(), apply_recursively=False).rewrite_module(op)
