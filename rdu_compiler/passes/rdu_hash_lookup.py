"""rdu-hash-lookup: a `CollisionlessTable` lookup becomes a `hash_probe` kernel (issue 16).

The frontend carries `torch.ops.rdu.hash_find(ids, index)` through torch-mlir as a
`linalg.generic` marked `library_call = "rdu_hash_find"` over (ids `tensor<Nxi64>`, index
`tensor<Bx4x2xi64>`) -> `tensor<Nxi64>` (`frontend/torch/custom_ops.py`: torch-mlir refuses an
opaque custom op, and its backend contract refuses `func.call`). The marker's payload is
not its meaning.

This pass replaces every marker by one kernel over the N IDs, Plasticine's HashReduce
family on the fabric: the IDs stream in, each is hashed twice (the table's two SplitMix64
seeds, `hash_seeds`), both candidate buckets of the index (a capture: 64 B per bucket, 4
slots of ID and row number) are read, the 8 slots compared, and the row number (`miss_row`
when absent: the marker's constant argument, `rdu_hash_find(128)`, else -1) streams out:

```mlir
%e = tensor.empty() : tensor<Nxi64>
%rows = "rdu.kernel"(%ids, %e, %index) <{kind = #rdu.pattern<hash_probe>, hash_seeds = array<i64: s1, s2>, miss_row = 128,
    domain = array<i64: N>, ...}> ({ ^bb0(%id: i64, %o: i64, %ix: tensor<Bx4x2xi64>): rdu.yield %o : i64 })
```

The rows are then gathered by the kernels torch-mlir made of the model's `F.embedding` /
`F.embedding_bag` (a miss reads the zero row the module appends), from the tier
`rdu-allocate` gives the table. The index's tier is the probe's `capture_tiers`; its bytes
are `kernel.traffic.gathered_bytes` (2 buckets per ID at the tier's burst).

It runs after `rdu-convert-linalg`, which keeps the markers, tagged with their op number
(`rdu.op = "k7"`: the kernel is `k7_hash_probe` and the report names the model line), and
refuses any other `library_call`. It refuses a marker whose types are not
(N x i64, B x 4 x 2 x i64) -> N x i64 with B a power of two.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import tensor
from xdsl.dialects.builtin import (
    AffineMapAttr,
    DenseArrayBase,
    IntegerAttr,
    ModuleOp,
    StringAttr,
    TensorType,
    i64,
)
from xdsl.dialects.linalg.ops import GenericOp
from xdsl.ir import Block, Region
from xdsl.ir.affine import AffineConstantExpr, AffineMap
from xdsl.passes import ModulePass

from rdu_compiler.dialects import rdu
from rdu_compiler.embedding.probe import SEEDS
from rdu_compiler.errors import CompileError
from rdu_compiler.passes.common import functions
from rdu_compiler.passes.convert.common import iter_attrs

CALL = "rdu_hash_find"
#: The attribute rdu-convert-linalg puts on a kept call: the kernel name prefix ("k7").
OP_ATTR = "rdu.op"


_NAME = re.compile(re.escape(CALL) + r"(?:\((-?\d+)\))?")


def library_call(op: object) -> str | None:
    """The `library_call` of a `linalg.generic`, without constant arguments
    (`rdu_hash_find(128)` -> `rdu_hash_find`), else None."""
    if not isinstance(op, GenericOp) or op.library_call is None:
        return None
    name = op.library_call.data
    return CALL if _NAME.fullmatch(name) else name


def miss_row_of(op: GenericOp) -> int:
    """The marker's miss row: its constant argument, else -1 (`CollisionlessTable.find`)."""
    m = _NAME.fullmatch(op.library_call.data if op.library_call is not None else "")
    return int(m.group(1)) if m and m.group(1) is not None else -1


def is_hash_find(op: object) -> bool:
    return library_call(op) == CALL


def probe_kernel(call: GenericOp, name: str) -> tuple[list[tensor.EmptyOp], rdu.KernelOp]:
    """The `hash_probe` kernel replacing `call` (and a new `tensor.empty` for its init,
    unless the marker's output is one).

    Raises:
        CompileError: operand or result types other than (N x i64, B x 4 x 2 x i64) -> N x i64.
    """
    ids, index = (list(call.inputs) + [None, None])[:2]
    ok = len(call.inputs) == 2 and len(call.results) == 1
    if ok:
        assert ids is not None and index is not None
        it, xt, rt = ids.type, index.type, call.results[0].type
        ok = all(isinstance(t, TensorType) for t in (it, xt, rt))
        if ok:
            n, b = rdu.shape_of(it), rdu.shape_of(xt)
            ok = (len(n) == 1 and rt == it and str(rdu.element_type_of(it)) == "i64" and len(b) == 3 and b[1:] == (4, 2)
                  and b[0] >= 1 and not b[0] & (b[0] - 1) and str(rdu.element_type_of(xt)) == "i64")
    if not ok:
        types = ", ".join(str(a.type) for a in call.inputs)
        raise CompileError(
            "rdu-hash-lookup",
            f"library call {CALL}({types}) is not a hash lookup of N raw int64 IDs in a cuckoo index "
            "tensor<Bx4x2xi64> (B a power of two) giving N int64 row numbers; build the lookup with "
            "rdu_compiler.frontend.torch.collisionless (its modules flatten the IDs and pass the table's index)",
        )
    assert ids is not None and index is not None
    n = rdu.shape_of(ids.type)[0]
    out = call.outputs[0] if len(call.outputs) == 1 else None
    new = [] if out is not None and isinstance(out.owner, tensor.EmptyOp) and out.type == ids.type else [tensor.EmptyOp([], ids.type)]
    init = new[0].results[0] if new else out
    assert init is not None
    block = Block(arg_types=[i64, i64, index.type])
    block.add_op(rdu.YieldOp(block.args[1]))
    ident = AffineMapAttr(AffineMap.identity(1))
    kernel = rdu.KernelOp(
        [ids], [init], [index], [ids.type], rdu.Pattern.HASH_PROBE, [n], [ident, ident],
        iter_attrs(["parallel"]), Region(block),
        {"sym_name": StringAttr(f"{name}_hash_probe"), "hash_seeds": DenseArrayBase.from_list(i64, list(SEEDS)),
         "miss_row": IntegerAttr(miss_row_of(call), i64)},
    )
    return new, kernel


def resident_form(kernel: rdu.KernelOp) -> rdu.KernelOp:
    """`kernel` (a hash_probe with its index as a capture) with the index as a second input
    read at `(d0) -> (0, 0, 0)`: held whole in the kernel's PMUs (`rdu-tile` chooses it)."""
    ids, init, index = kernel.inputs[0], kernel.inits[0], kernel.captures[0]
    block = Block(arg_types=[i64, i64, i64])
    block.add_op(rdu.YieldOp(block.args[2]))
    ident = AffineMapAttr(AffineMap.identity(1))
    whole = AffineMapAttr(AffineMap(1, 0, (AffineConstantExpr(0),) * 3))
    props = {k: v for k, v in kernel.properties.items()
             if k not in ("kind", "domain", "indexing_maps", "iterator_types", "operandSegmentSizes")}
    new = rdu.KernelOp([ids, index], [init], [], [kernel.results[0].type], rdu.Pattern.HASH_PROBE, kernel.domain_sizes,
                       [ident, whole, ident], iter_attrs(["parallel"]), Region(block), props)
    new.attributes.update(kernel.attributes)
    return new


@dataclass(frozen=True)
class RduHashLookupPass(ModulePass):
    """Lower `linalg.generic {library_call = "rdu_hash_find"}` (a collisionless-table lookup) to
    `hash_probe` kernels."""

    name = "rdu-hash-lookup"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for fn in functions(op):
            for i, call in enumerate(list(fn.body.block.ops)):
                if not is_hash_find(call):
                    continue
                assert isinstance(call, GenericOp)
                tag = call.attributes.get(OP_ATTR)
                empty, kernel = probe_kernel(call, tag.data if isinstance(tag, StringAttr) else f"k{i}")
                fn.body.block.insert_ops_before([*empty, kernel], call)
                call.results[0].replace_all_uses_with(kernel.results[0])
                fn.body.block.erase_op(call)
