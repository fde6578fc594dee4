"""The `rdu` dialect's tensor-parallel ops: `rdu.all_reduce`, `rdu.all_gather`, `rdu.shard`.

An SPMD program (written by `rdu-shard{tp=N}`) is one function every socket of a group of
`group` sockets runs on its own shard of the weights. Between sections (never inside one:
they take and give off-chip tensors) these ops exchange what the sockets hold:

```mlir
%s = rdu.all_reduce %p group 2 : tensor<16x64xf32> -> tensor<16x64xf32>
%g = rdu.all_gather %x dim 1 group 2 blocks 3 : tensor<16x96xf32> -> tensor<16x192xf32>
%h = rdu.shard %y dim 1 group 2 blocks 3 : tensor<16x192xf32> -> tensor<16x96xf32>
```

Layout of a shard: a dim of `N` elements sharded over `g` sockets in `blocks = A` blocks is
viewed as `[A, g, N / (A g)]`; socket `r` holds `[:, r, :]` (`N / g` elements). `blocks = 1`
(the default) is a contiguous block shard (Megatron's column shard); `blocks = 3` on GPT-2's
fused q|k|v columns gives each socket its heads of q, of k and of v.

- `rdu.all_reduce`: element-wise sum over the group (every socket holds a partial sum of
  the same shape; all get the total). Result type = operand type.
- `rdu.all_gather`: every socket gets the whole tensor from the group's shards along `dim`
  (result `dim` = operand `dim` x `group`).
- `rdu.shard`: this socket's shard of a tensor every socket holds whole (a rank-dependent
  slice, no data crosses sockets: GSPMD's dynamic-slice by partition id). Result `dim` =
  operand `dim` / `group`. With `ways` (a multiple of `group`, default `group`) the result
  is one of `ways` distinct shards, each held by tp / ways sockets: socket r takes piece
  `(r // (tp / ways)) % group` of its operand (a shard over `ways / group` refined).
- an `rdu.all_gather` over `group` < tp sockets gathers the `group` distinct shards a
  value has (socket q x tp / group holds shard q).

Verifiers: `group >= 2`; when the module says `rdu.tp = T`, `group` divides T (a collective
stays inside one tensor-parallel group: one pipeline stage of a tp x pp program); when the module names a fabric, `group` divides its socket count
(`[sockets].count`); shapes and element types as above; `dim` inside the rank; the sharded
dim divisible by `blocks x group`.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from xdsl.dialects.builtin import I64, IntegerAttr, ModuleOp, TensorType, i64
from xdsl.ir import Attribute, SSAValue
from xdsl.irdl import (
    IRDLOperation,
    irdl_op_definition,
    operand_def,
    opt_prop_def,
    prop_def,
    result_def,
    traits_def,
)
from xdsl.traits import Pure
from xdsl.utils.exceptions import VerifyException

from rdu_compiler.dialects.rdu.fabric_checks import module_fabric


def _check_group(op: IRDLOperation, name: str, group: int) -> None:
    if group < 2:
        raise VerifyException(f"{name}: group {group}; a collective spans >= 2 sockets (tp = 1 needs none)")
    tp = _module_tp(op)
    if tp is not None and tp % group:
        raise VerifyException(f"{name}: group {group} does not divide the program's tp = {tp} (the module's rdu.tp); "
                              "a collective spans the sockets of one tensor-parallel group (one pipeline stage)")
    fabric = module_fabric(op)
    sockets = fabric.node.sockets if fabric is not None else None
    if sockets is not None and sockets % group:
        raise VerifyException(
            f"{name}: group {group} does not divide the {sockets} sockets of fabric '{fabric.name}' "  # type: ignore[union-attr]
            "([sockets].count); use a group size that divides it"
        )


def _module_tp(op: IRDLOperation) -> int | None:
    """The `rdu.tp` of the outermost module around `op` (None when none says)."""
    tp, parent = None, op.parent_op()
    while parent is not None:
        attr = parent.attributes.get("rdu.tp") if isinstance(parent, ModuleOp) else None
        tp = attr.value.data if isinstance(attr, IntegerAttr) else tp
        parent = parent.parent_op()
    return tp


def _tensors(name: str, source: Attribute, result: Attribute) -> tuple[tuple[int, ...], tuple[int, ...]]:
    if not isinstance(source, TensorType) or not isinstance(result, TensorType):
        raise VerifyException(f"{name}: {source} -> {result}; a collective takes and gives off-chip tensors")
    if source.get_element_type() != result.get_element_type():
        raise VerifyException(f"{name}: element type {source.get_element_type()} -> {result.get_element_type()}; "
                              "a collective does not convert")
    return tuple(source.get_shape()), tuple(result.get_shape())


@irdl_op_definition
class AllReduceOp(IRDLOperation):
    """Sum of `source` over the `group` sockets; every socket gets the total (see module doc).

    ```mlir
    %s = rdu.all_reduce %p group 2 : tensor<16x64xf32> -> tensor<16x64xf32>
    ```
    """

    name = "rdu.all_reduce"
    source = operand_def(TensorType)
    result = result_def(TensorType)
    group = prop_def(IntegerAttr[I64])
    traits = traits_def(Pure())

    assembly_format = "$source `group` $group attr-dict `:` type($source) `->` type($result)"

    def __init__(self, source: SSAValue, group: int):
        super().__init__(operands=[source], result_types=[source.type], properties={"group": IntegerAttr(group, i64)})

    def verify_(self) -> None:
        _check_group(self, "rdu.all_reduce", self.group.value.data)
        src, res = _tensors("rdu.all_reduce", self.source.type, self.result.type)
        if src != res:
            raise VerifyException(f"rdu.all_reduce: operand shape {list(src)} but result {list(res)}; a sum keeps the shape")


class _ShardedDimOp(IRDLOperation):
    """Shared by all_gather and shard: `dim`, `group`, `blocks` and the shape rule."""

    source = operand_def(TensorType)
    result = result_def(TensorType)
    dim = prop_def(IntegerAttr[I64])
    group = prop_def(IntegerAttr[I64])
    blocks = opt_prop_def(IntegerAttr[I64])
    traits = traits_def(Pure())

    assembly_format = "$source `dim` $dim `group` $group (`blocks` $blocks^)? attr-dict `:` type($source) `->` type($result)"

    GATHERS: ClassVar[bool] = True

    def __init__(self, source: SSAValue, result_type: Attribute, dim: int, group: int, blocks: int = 1):
        props: dict[str, Attribute] = {"dim": IntegerAttr(dim, i64), "group": IntegerAttr(group, i64)}
        if blocks != 1:
            props["blocks"] = IntegerAttr(blocks, i64)
        super().__init__(operands=[source], result_types=[result_type], properties=props)

    @property
    def n_blocks(self) -> int:
        return self.blocks.value.data if self.blocks is not None else 1

    def verify_(self) -> None:
        name, dim, group, blocks = self.name, self.dim.value.data, self.group.value.data, self.n_blocks
        _check_group(self, name, group)
        src, res = _tensors(name, self.source.type, self.result.type)
        if len(src) != len(res) or not 0 <= dim < len(src):
            raise VerifyException(f"{name}: dim {dim} of rank-{len(src)} operand and rank-{len(res)} result; "
                                  "both have one rank and dim is one of its dims")
        whole, part = (res, src) if self.GATHERS else (src, res)
        if any(a != b for d, (a, b) in enumerate(zip(whole, part, strict=True)) if d != dim) or whole[dim] != part[dim] * group:
            raise VerifyException(
                f"{name}: operand {list(src)} -> result {list(res)} with group {group} along dim {dim}; the "
                f"{'result' if self.GATHERS else 'operand'}'s dim {dim} is the other's x {group}, other dims equal"
            )
        if blocks < 1 or whole[dim] % (blocks * group):
            raise VerifyException(f"{name}: blocks {blocks} x group {group} does not divide dim {dim} ({whole[dim]})")


@irdl_op_definition
class AllGatherOp(_ShardedDimOp):
    """The whole tensor on every socket from the group's shards along `dim` (module doc).

    ```mlir
    %g = rdu.all_gather %x dim 1 group 2 : tensor<16x32xf32> -> tensor<16x64xf32>
    ```
    """

    name = "rdu.all_gather"
    GATHERS: ClassVar[bool] = True


@irdl_op_definition
class ShardOp(_ShardedDimOp):
    """This socket's shard along `dim` of a tensor every socket holds whole (module doc).

    ```mlir
    %h = rdu.shard %y dim 0 group 4 : tensor<512x64xf32> -> tensor<128x64xf32>
    ```
    """

    name = "rdu.shard"
    GATHERS: ClassVar[bool] = False
    ways = opt_prop_def(IntegerAttr[I64])

    assembly_format = (
        "$source `dim` $dim `group` $group (`blocks` $blocks^)? (`ways` $ways^)? attr-dict `:` type($source) `->` type($result)"
    )

    def __init__(self, source: SSAValue, result_type: Attribute, dim: int, group: int, blocks: int = 1,
                 ways: int | None = None):
        super().__init__(source, result_type, dim, group, blocks)
        if ways is not None and ways != group:
            self.properties["ways"] = IntegerAttr(ways, i64)

    @property
    def n_ways(self) -> int:
        """Distinct shards after this op: socket r takes piece (r // (tp / ways)) % group
        of its operand (`ways = group` from a whole tensor)."""
        return self.ways.value.data if self.ways is not None else self.group.value.data

    def verify_(self) -> None:
        super().verify_()
        if self.n_ways % self.group.value.data:
            raise VerifyException(f"rdu.shard: ways {self.n_ways} is not a multiple of group {self.group.value.data}")


COLLECTIVE_OPS = (AllReduceOp, AllGatherOp)
TP_OPS = (AllReduceOp, AllGatherOp, ShardOp)


def shard_of(arr: np.ndarray, dim: int, group: int, blocks: int, rank: int) -> np.ndarray:
    """Socket `rank`'s shard of `arr` along `dim` (the layout of the module docstring):
    `arr.shape[dim] / group` elements, `blocks` runs of `shape[dim] / (blocks group)`.

    Raises:
        ValueError: `blocks x group` does not divide the dim, or `rank` is not in the group.
    """
    n = arr.shape[dim]
    if n % (blocks * group) or not 0 <= rank < group:
        raise ValueError(f"cannot take shard {rank} of {group} in {blocks} blocks of a dim of {n}")
    inner = n // (blocks * group)
    view = arr.reshape(*arr.shape[:dim], blocks, group, inner, *arr.shape[dim + 1:])
    part = np.take(view, rank, axis=dim + 1)
    return part.reshape(*arr.shape[:dim], blocks * inner, *arr.shape[dim + 1:])


def gather_shards(parts: list[np.ndarray], dim: int, blocks: int) -> np.ndarray:
    """The whole tensor from every socket's shard along `dim` (inverse of `shard_of`)."""
    group, n = len(parts), parts[0].shape[dim]
    shape = parts[0].shape
    split = [p.reshape(*shape[:dim], blocks, n // blocks, *shape[dim + 1:]) for p in parts]
    whole = np.stack(split, axis=dim + 1)
    return whole.reshape(*shape[:dim], n * group, *shape[dim + 1:])
