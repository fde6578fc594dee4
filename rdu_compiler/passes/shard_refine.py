"""rdu-shard's clean-up of local re-splits: move an `rdu.shard ... group g ways W` that
re-splits a value already sharded over fewer ways up to where the data is made, so each
socket computes only its own piece and no re-split is left between two kernels.

Where it comes from: grouped-query attention with more sockets than KV heads. At tp = 4
on 2 KV heads each socket pair holds one KV head (`Shard(ways=2)`); HF's `repeat_kv`
expands it to the pair's query heads (a broadcast kernel), casts and transposes it, and
then each socket keeps its own query head through a refining `rdu.shard` (`ways 4`,
`group 2`). That op ends a section (`passes/rdu_section.py` cuts at every `TP_OPS`), so the
expanded K, K^T and V went through HBM at g times their size. After this step the expand
produces one copy per socket, and the shard is gone.

A refining shard `S` on dim `D` of a value `v` with one use (`S`) is lifted when `v` is made by

- an `rdu.view <reshape>`: the socket's digit of the flat index (block x stride of dim
  `D`, radix g) lands in one source dim (the rule of `shard_views._view_layout`); the
  shard moves onto the view's source and the view gets the local shapes;
- an all-parallel kernel (map, transpose, fill: no reduction loop, no scan, no hash
  probe or scatter, no tensor capture) whose result dim `D` is a loop `l` no other result
  dim mentions and no `rdu.index` reads:
  - if no input reads `l`, the result is the same at every index of `l` (a broadcast:
    `repeat_kv`'s expand), so every socket's piece equals the first: `l` shrinks by g
    (**absorbed**: the shard is gone);
  - if every input that reads `l` reads it as exactly `l` on one dim of the loop's extent,
    the shard moves onto each such input (the kernel then computes only the piece);
  - its inits are `tensor.empty` (they only give the shape: a smaller one is made).

A lift is made only when every branch ends absorbed (a plan is checked first, nothing is
changed otherwise): a moved shard that stops half-way would still end a section and save
nothing. Anything else keeps the shard where it is, which is exact (it is a local slice),
only slower.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from xdsl.dialects import tensor
from xdsl.dialects.builtin import DenseArrayBase, StringAttr, TensorType, i64
from xdsl.ir import Operation, SSAValue
from xdsl.ir.affine import AffineDimExpr
from xdsl.rewriter import Rewriter

from rdu_compiler.dialects import rdu
from rdu_compiler.passes.shard_layout import Shard, mentions

if TYPE_CHECKING:
    from rdu_compiler.passes.rdu_shard import Sharder

_LIFTABLE = (rdu.Pattern.MAP, rdu.Pattern.TRANSPOSE, rdu.Pattern.FILL)


def _shape(v: SSAValue) -> tuple[int, ...] | None:
    return tuple(v.type.get_shape()) if isinstance(v.type, TensorType) else None


def _piece(t: TensorType, dim: int, group: int) -> TensorType:
    shape = list(t.get_shape())
    shape[dim] //= group
    return TensorType(t.get_element_type(), shape)


def _view_source_dim(src: tuple[int, ...], res: tuple[int, ...], dim: int, blocks: int,
                     group: int) -> tuple[int, int] | None:
    """(source dim, blocks there) holding the socket's digit of result dim `dim` of a
    reshape `src -> res` split `group` ways in `blocks` blocks; None when it straddles dims."""
    if res[dim] % (blocks * group):
        return None
    weight = res[dim] // (blocks * group) * math.prod(res[dim + 1:])
    for i in range(len(src)):
        stride = math.prod(src[i + 1:])
        if weight % stride == 0 and src[i] % (group * (weight // stride)) == 0:
            return i, src[i] // (group * (weight // stride))
    return None


class _Lift:
    """Plans (`ok`) and makes (`make`) the lift of one refining shard."""

    def __init__(self, sharder: Sharder):
        self.sh = sharder

    # -------------------------------------------------------------- the rules
    def _kernel_loop(self, k: rdu.KernelOp, dim: int) -> int | None:
        """The loop result dim `dim` of `k` is, when `k` may compute one piece of it."""
        if (k.kind.data not in _LIFTABLE or len(k.results) != 1 or k.reduction_dims or k.scan_dim is not None
                or any(_shape(c) for c in k.captures)):
            return None
        out = k.indexing_maps.data[len(k.inputs)].data
        e = out.results[dim]
        if not isinstance(e, AffineDimExpr):
            return None
        loop = e.position
        if any(mentions(x, loop) for j, x in enumerate(out.results) if j != dim):
            return None
        if any(isinstance(o, rdu.IndexOp) and o.dim.value.data == loop for o in k.body.walk()):
            return None
        return loop

    def _readers(self, k: rdu.KernelOp, loop: int) -> list[tuple[int, int]] | None:
        """(operand index, dim) of each input that reads `loop`; None when one reads it
        other than as exactly `loop` over the loop's whole extent."""
        extent = k.domain_sizes[loop]
        found = []
        for i, (v, m) in enumerate(zip(k.inputs, k.indexing_maps.data, strict=False)):
            dims = [j for j, x in enumerate(m.data.results) if mentions(x, loop)]
            if not dims:
                continue
            shape = _shape(v)
            j = dims[0]
            x = m.data.results[j]
            if len(dims) > 1 or shape is None or not isinstance(x, AffineDimExpr) or shape[j] != extent:
                return None
            found.append((i, j))
        return found

    def ok(self, v: SSAValue, dim: int, blocks: int, group: int) -> bool:
        """Every branch of lifting a shard of `v` (dim, blocks, group) ends absorbed."""
        if v.uses.get_length() != 1:
            return False
        owner = v.owner
        if isinstance(owner, rdu.ViewOp):
            src, res = _shape(owner.source), _shape(v)
            if owner.mode.data != rdu.ViewMode.RESHAPE or src is None or res is None:
                return False
            at = _view_source_dim(src, res, dim, blocks, group)
            return at is not None and self.ok(owner.source, at[0], at[1], group)
        if not isinstance(owner, rdu.KernelOp):
            return False
        loop = self._kernel_loop(owner, dim)
        if loop is None or owner.domain_sizes[loop] % (blocks * group):
            return False
        if not all(isinstance(init.owner, tensor.EmptyOp) for init in owner.inits):
            return False  # an init the kernel reads would need its own piece
        readers = self._readers(owner, loop)
        if readers is None:
            return False
        if not readers:
            return True  # absorbed: a broadcast along the loop
        return all(self.ok(owner.inputs[i], j, blocks, group) for i, j in readers)

    def make(self, s: rdu.ShardOp) -> None:
        """Lift `s` (planned by `ok`): rewrite what makes its source, then erase `s`."""
        v, dim, blocks, group = s.source, s.dim.value.data, s.n_blocks, s.group.value.data
        new = self._lift(v, dim, blocks, group)
        s.result.replace_all_uses_with(new)
        s.detach()
        s.erase()
        self.sh.lay[new] = Shard(dim, blocks, s.n_ways)

    def _lift(self, v: SSAValue, dim: int, blocks: int, group: int) -> SSAValue:
        owner = v.owner
        if isinstance(owner, rdu.ViewOp):
            src, res = _shape(owner.source), _shape(v)
            assert src is not None and res is not None
            at = _view_source_dim(src, res, dim, blocks, group)
            assert at is not None
            source = self._lift(owner.source, at[0], at[1], group)
            owner.operands[0] = source
            return Rewriter.replace_value_with_new_type(v, _piece(v.type, dim, group))  # type: ignore[arg-type]
        assert isinstance(owner, rdu.KernelOp)
        loop = self._kernel_loop(owner, dim)
        assert loop is not None
        readers = self._readers(owner, loop)
        assert readers is not None
        for i, j in readers:
            owner.operands[i] = self._lift(owner.inputs[i], j, blocks, group)
        for i, init in enumerate(owner.inits):  # the result's shape: a fresh, smaller empty
            index = len(owner.inputs) + i
            empty = tensor.EmptyOp([], _piece(init.type, dim, group))  # type: ignore[arg-type]
            owner.parent_block().insert_op_before(empty, owner)  # type: ignore[union-attr]
            owner.operands[index] = empty.results[0]
        domain = list(owner.domain_sizes)
        domain[loop] //= group
        owner.properties["domain"] = DenseArrayBase.from_list(i64, domain)
        if not readers:
            note = owner.attributes.get("rdu.tp_loop")
            kept = f"broadcast loop {loop} kept 1/{group}"
            owner.attributes["rdu.tp_loop"] = StringAttr(f"{note.data}; {kept}" if isinstance(note, StringAttr) else kept)
        return Rewriter.replace_value_with_new_type(owner.results[0], _piece(v.type, dim, group))  # type: ignore[arg-type]


def lift_refining_shards(sharder: Sharder) -> int:
    """Lift every refining `rdu.shard` (group < ways) of `sharder`'s function that can be
    lifted to where its data is made (module docstring); returns how many were lifted."""
    lift, lifted = _Lift(sharder), 0
    block = sharder.fn.body.block
    for s in [op for op in block.ops if is_refining(op)]:
        assert isinstance(s, rdu.ShardOp)
        if lift.ok(s.source, s.dim.value.data, s.n_blocks, s.group.value.data):
            lift.make(s)
            lifted += 1
    return lifted


def is_refining(op: Operation) -> bool:
    """A re-split of a value already sharded over fewer ways (`group < ways`)."""
    return isinstance(op, rdu.ShardOp) and op.group.value.data != op.n_ways
