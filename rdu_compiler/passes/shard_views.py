"""rdu-shard's rules for the layout ops (`rdu.view`, `rdu.concat`, `rdu.pad`): which shard
of its operand a view, concat or pad keeps (module docstring of `passes/rdu_shard.py`).

- a view keeps a shard when it does not cut the sharded dim: a slice that takes the whole
  dim (unit dims dropped unambiguously), a reshape when the socket's digit of the flat
  index (weight W = block x stride) stays inside one result dim;
- a concat keeps the shard of a source sharded along another dim (the others take it);
- a pad keeps a shard it does not pad;
- otherwise the operand is gathered (replicated) first; a partial sum is all-reduced first.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from xdsl.dialects.builtin import DenseArrayBase, TensorType, i64
from xdsl.ir import SSAValue

from rdu_compiler.dialects import rdu
from rdu_compiler.passes.shard_layout import PARTIAL, Shard

if TYPE_CHECKING:
    from rdu_compiler.passes.rdu_shard import Sharder


def _shape(v: SSAValue) -> tuple[int, ...] | None:
    return tuple(v.type.get_shape()) if isinstance(v.type, TensorType) else None


def shard_view(sh: Sharder, op: rdu.ViewOp) -> None:
    src = sh.layout(op.source)
    if src == PARTIAL:
        op.operands[0] = sh.to(op.source, None, op)
        src = None
    new = None
    if isinstance(src, Shard):
        new = _view_layout(sh, op, src)
        if new is None:
            op.operands[0] = sh.to(op.source, None, op)
    if new is None:
        sh.lay[op.result] = None
        return
    if op.mode.data == rdu.ViewMode.SLICE:
        _, sizes, _ = op.window
        sizes = list(sizes)
        sizes[src.dim] //= src.ways  # type: ignore[union-attr]
        op.properties["sizes"] = DenseArrayBase.from_list(i64, sizes)
    sh.retype(op.result, new)


def _view_layout(sh: Sharder, op: rdu.ViewOp, src: Shard) -> Shard | None:
    tp = src.ways  # the radix of the socket's digit
    shape, res = sh.global_shape(op.source), _shape(op.result)
    assert shape is not None and res is not None
    if op.mode.data == rdu.ViewMode.SLICE:
        offsets, sizes, strides = op.window
        j = src.dim
        if offsets[j] != 0 or strides[j] != 1 or sizes[j] != shape[j]:
            return None
        kept = [d for d in range(len(sizes)) if not (sizes[d] == 1 and len(res) < len(sizes))]
        if len(kept) != len(res):  # unit dims dropped ambiguously: recompute like the verifier
            return None
        return Shard(kept.index(j), src.blocks, src.ways)
    # reshape: the socket's digit of the flat index (weight W = block x stride) stays in one dim
    block = shape[src.dim] // (src.blocks * tp)
    weight = block * math.prod(shape[src.dim + 1:])
    for i in range(len(res)):
        stride = math.prod(res[i + 1:])
        if weight % stride == 0 and res[i] % (tp * (weight // stride)) == 0:
            return Shard(i, res[i] // (tp * (weight // stride)), tp)
    return None


def shard_concat(sh: Sharder, op: rdu.ConcatOp) -> None:
    dim = op.dim.value.data
    target = next((lay for v in op.sources if isinstance(lay := sh.layout(v), Shard) and lay.dim != dim), None)
    for i, v in enumerate(op.sources):
        op.operands[i] = sh.to(v, target, op)
    sh.retype(op.result, target)


def shard_pad(sh: Sharder, op: rdu.PadOp) -> None:
    src = sh.layout(op.source)
    low, high = list(op.low.get_values()), list(op.high.get_values())
    keep = isinstance(src, Shard) and low[src.dim] == 0 and high[src.dim] == 0
    if not keep:
        op.operands[0] = sh.to(op.source, None, op)
    sh.retype(op.result, src if keep else None)
