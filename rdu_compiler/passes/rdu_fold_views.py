"""rdu-fold-views: fold reshapes and slices into the access patterns of the kernels that read them.

A kernel input `%v = rdu.view(%src)` is replaced by `%src`, read through the view's
index map composed with the kernel's map, when that composition is linear (the access
patterns of `tiling.Access`):

- `mode = "slice"`: source index `j` = `offset_j + stride_j * i_j` (same rank);
- `mode = "reshape"` that only *expands* dims (`4096x4096 -> 1x4096x32x128`: the source
  index is `i_1 * 128 + i_3`) or drops / inserts unit dims (`1x32x4096 -> 32x4096`).
  A reshape that merges two dims of size > 1 (`1x4096x32x128 -> 4096x4096`) needs a
  floordiv/mod to undo, so it stays a view.

The address generators of the PMUs compute these patterns (sn40l.md: a logical tensor
is addressed by affine patterns; a transpose is an access pattern, not an op), so a view
between two kernels no longer separates them: `rdu-fuse`, which runs next, can fold the
producer into the consumer. Views read by something other than a kernel input (a store,
a concat, a kernel's init, a scan) are left alone, and a view left without uses is
erased. Numerics are unchanged: the same elements are read.

    rdu-opt -p rdu-fold-views in.mlir
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import AffineMapAttr, ArrayAttr, ModuleOp, StringAttr
from xdsl.ir.affine import AffineConstantExpr, AffineDimExpr, AffineExpr, AffineMap
from xdsl.passes import ModulePass
from xdsl.rewriter import Rewriter

from rdu_compiler.dialects import rdu
from rdu_compiler.passes.common import functions
from rdu_compiler.passes.payload import classify_kernel


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
    if mode == "slice":
        return slice_map(view)
    if mode == "reshape":
        return reshape_map(rdu.shape_of(view.source.type), rdu.shape_of(view.result.type))
    return None


def fold_input_views(kernel: rdu.KernelOp) -> bool:
    """Read every foldable view input of `kernel` from its source instead (in place).
    Returns whether anything changed."""
    if kernel.kind.data == rdu.Pattern.SCAN:
        return False
    maps = [m.data for m in kernel.indexing_maps.data]
    changed = False
    for i, value in enumerate(list(kernel.inputs)):
        while isinstance(view := value.owner, rdu.ViewOp) and (vmap := view_map(view)) is not None:
            maps[i] = vmap.compose(maps[i])
            value = view.source
            operands = list(kernel.operands)
            operands[i] = value
            kernel.operands = operands
            changed = True
            if not view.result.uses:
                Rewriter.erase_op(view)
    if changed:
        kernel.properties["indexing_maps"] = ArrayAttr([AffineMapAttr(m) for m in maps])
        iterators = [it.data.value for it in kernel.iterator_types.data]
        kind = classify_kernel(kernel.body.block, len(kernel.inputs), iterators, maps, kernel.domain_sizes)
        if kind != kernel.kind.data:
            kernel.properties["kind"] = rdu.PatternAttr(kind)
            kernel.properties["sym_name"] = StringAttr(f"{kernel.label.split('_', 1)[0]}_{kind.value}")
    return changed


@dataclass(frozen=True)
class RduFoldViewsPass(ModulePass):
    """Fold slices and expanding reshapes into the input access patterns of kernels."""

    name = "rdu-fold-views"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for fn in functions(op):
            for kernel in [k for k in fn.body.block.ops if isinstance(k, rdu.KernelOp)]:
                fold_input_views(kernel)
