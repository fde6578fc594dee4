"""The `rdu` dialect's transfer and layout ops: `rdu.load`, `rdu.store` (AGCU transfers
between off-chip tensors and a section's streams) and `rdu.view`, `rdu.concat`, `rdu.pad`
(layout changes folded into buffer access patterns, not kernels).

Each has a custom syntax (its docstring shows it) and a verifier that checks ranks, shapes,
element types and attribute ranges, naming the op and what to change.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from xdsl.dialects.builtin import I64, DenseArrayBase, IntegerAttr, TensorType, i64
from xdsl.ir import Attribute, SSAValue
from xdsl.irdl import (
    IRDLOperation,
    irdl_op_definition,
    operand_def,
    opt_prop_def,
    prop_def,
    result_def,
    traits_def,
    var_operand_def,
)
from xdsl.traits import HasParent, Pure
from xdsl.utils.exceptions import VerifyException

from rdu_compiler.dialects.rdu.attrs import (
    StreamType,
    Tier,
    TierAttr,
    ViewMode,
    ViewModeAttr,
    as_stream,
    as_tensor,
    element_type_of,
)
from rdu_compiler.dialects.rdu.ops import SectionOp

_I64_ARRAY = DenseArrayBase.constr(i64)


def _dense(values: Sequence[int]) -> DenseArrayBase:
    return DenseArrayBase.from_list(i64, list(values))


def _shape(t: Attribute) -> tuple[int, ...] | None:
    """Shape of a tensor or stream type, None for anything else (a scalar)."""
    if isinstance(t, StreamType):
        return t.get_shape()
    if isinstance(t, TensorType):
        return tuple(t.get_shape())
    return None


def _shaped(op: str, what: str, t: Attribute) -> tuple[int, ...]:
    shape = _shape(t)
    if shape is None:
        raise VerifyException(f"{op}: {what} is {t}, not a tensor or stream; pass a shaped value")
    return shape


def _same_kind(op: str, source: Attribute, result: Attribute) -> None:
    if isinstance(source, StreamType) != isinstance(result, StreamType):
        raise VerifyException(
            f"{op}: source {source} and result {result} must both be tensors or both streams; "
            "a layout op does not move data on or off chip (use rdu.load / rdu.store)"
        )
    if element_type_of(source) != element_type_of(result):
        raise VerifyException(
            f"{op}: source element type {element_type_of(source)} differs from the result's "
            f"{element_type_of(result)}; a layout op does not convert (use a map kernel)"
        )


def _verify_transfer(op: str, source: Attribute, result: Attribute) -> None:
    if _shape(source) != _shape(result) or element_type_of(source) != element_type_of(result):
        raise VerifyException(
            f"{op}: {source} -> {result}: a transfer keeps shape and element type; make the "
            "result the same shape and element type as the source"
        )


@irdl_op_definition
class LoadOp(IRDLOperation):
    """AGCU transfer of an off-chip tensor in `tier` into a stream of the enclosing section.

    ```mlir
    %a = rdu.load %x from <hbm> agcu [2, -1] : tensor<16x64xf32> -> !rdu.stream<16x64xf32>
    ```

    `agcu_sites` (after `rdu-place`): the AGCU of each net of the transfer, as flattened
    (row, col) pairs on the grid's edge columns. The result has the source's shape and
    element type."""

    name = "rdu.load"
    source = operand_def(TensorType)
    result = result_def(StreamType)
    tier = prop_def(TierAttr)
    agcu_sites = opt_prop_def(_I64_ARRAY)
    traits = traits_def(HasParent(SectionOp))

    assembly_format = (
        "$source `from` $tier (`agcu` $agcu_sites^)? attr-dict `:` type($source) `->` type($result)"
    )

    def __init__(self, source: SSAValue, tier: Tier = Tier.HBM):
        super().__init__(
            operands=[source], result_types=[as_stream(source.type)], properties={"tier": TierAttr(tier)}
        )

    def verify_(self) -> None:
        _verify_transfer("rdu.load", self.source.type, self.result.type)


@irdl_op_definition
class StoreOp(IRDLOperation):
    """AGCU transfer of a stream into an off-chip tensor in `tier`; `agcu_sites` as `rdu.load`.

    ```mlir
    %s = rdu.store %r to <ddr> agcu [2, 4] : !rdu.stream<16x64xf32> -> tensor<16x64xf32>
    ```
    """

    name = "rdu.store"
    source = operand_def(StreamType)
    result = result_def(TensorType)
    tier = prop_def(TierAttr)
    agcu_sites = opt_prop_def(_I64_ARRAY)
    traits = traits_def(HasParent(SectionOp))

    assembly_format = (
        "$source `to` $tier (`agcu` $agcu_sites^)? attr-dict `:` type($source) `->` type($result)"
    )

    def __init__(self, source: SSAValue, tier: Tier = Tier.HBM):
        super().__init__(
            operands=[source], result_types=[as_tensor(source.type)], properties={"tier": TierAttr(tier)}
        )

    def verify_(self) -> None:
        _verify_transfer("rdu.store", self.source.type, self.result.type)


@irdl_op_definition
class ViewOp(IRDLOperation):
    """A data layout change folded into buffer access patterns, not a kernel.

    ```mlir
    %r = rdu.view %x <reshape> : tensor<4x8xf32> -> tensor<32xf32>
    %s = rdu.view %x <slice> offsets [0, 2] sizes [4, 4] strides [1, 2] : tensor<4x8xf32> -> tensor<4x4xf32>
    ```

    `<reshape>`: same elements, new shape (`tensor.expand_shape`/`collapse_shape`).
    `<slice>`: a static strided window (`tensor.extract_slice`), with `offsets`, `sizes`,
    `strides` (one per source dim); the result's shape is `sizes`, from which unit
    dimensions may be dropped (a rank-reducing slice). Works on tensors and on streams.
    """

    name = "rdu.view"
    source = operand_def()
    result = result_def()
    mode = prop_def(ViewModeAttr)
    offsets = opt_prop_def(_I64_ARRAY)
    sizes = opt_prop_def(_I64_ARRAY)
    strides = opt_prop_def(_I64_ARRAY)
    traits = traits_def(Pure())

    assembly_format = (
        "$source $mode (`offsets` $offsets^)? (`sizes` $sizes^)? (`strides` $strides^)? attr-dict "
        "`:` type($source) `->` type($result)"
    )

    def __init__(
        self,
        source: SSAValue,
        result_type: Attribute,
        mode: ViewMode = ViewMode.RESHAPE,
        offsets: Sequence[int] | None = None,
        sizes: Sequence[int] | None = None,
        strides: Sequence[int] | None = None,
    ):
        props: dict[str, Attribute | None] = {"mode": ViewModeAttr(mode)}
        for key, values in (("offsets", offsets), ("sizes", sizes), ("strides", strides)):
            props[key] = _dense(values) if values is not None else None
        super().__init__(operands=[source], result_types=[result_type], properties=props)

    @property
    def window(self) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """`(offsets, sizes, strides)` of a slice view (empty tuples for a reshape)."""

        def values(a: DenseArrayBase[I64] | None) -> tuple[int, ...]:
            return tuple(int(v) for v in a.get_values()) if a is not None else ()

        return values(self.offsets), values(self.sizes), values(self.strides)

    def verify_(self) -> None:
        src_t, res_t = self.source.type, self.result.type
        mode = self.mode.data
        op = f"rdu.view <{mode}>"
        src = _shaped(op, "the source", src_t)
        res = _shaped(op, "the result", res_t)
        _same_kind(op, src_t, res_t)
        window = (self.offsets, self.sizes, self.strides)
        if mode == ViewMode.RESHAPE:
            if any(a is not None for a in window):
                raise VerifyException(f"{op}: a reshape has no offsets/sizes/strides; use <slice> for a window")
            if min((*src, *res), default=0) >= 0 and math.prod(src) != math.prod(res):
                raise VerifyException(
                    f"{op}: {src_t} has {math.prod(src)} elements but {res_t} has {math.prod(res)}; "
                    "a reshape keeps the element count"
                )
            return
        if any(a is None for a in window):
            raise VerifyException(f"{op}: a slice needs offsets, sizes and strides (one per source dim)")
        offsets, sizes, strides = self.window
        if not len(offsets) == len(sizes) == len(strides) == len(src):
            raise VerifyException(
                f"{op}: {len(offsets)} offsets, {len(sizes)} sizes, {len(strides)} strides for a source "
                f"of rank {len(src)}; give one of each per source dim"
            )
        for d, (o, n, st, extent) in enumerate(zip(offsets, sizes, strides, src, strict=True)):
            if o < 0 or n < 1 or st < 1:
                raise VerifyException(
                    f"{op}: dim {d} has offset {o}, size {n}, stride {st}; offsets must be >= 0, sizes and strides >= 1"
                )
            if extent >= 0 and o + (n - 1) * st >= extent:
                raise VerifyException(
                    f"{op}: dim {d} reads up to index {o + (n - 1) * st} of a source dim of {extent}; "
                    "the window must stay inside the source"
                )
        if not _drops_unit_dims(sizes, res):
            raise VerifyException(
                f"{op}: result shape {list(res)} is not the slice sizes {list(sizes)} (less unit dims); "
                "make the result type match the sizes"
            )


def _drops_unit_dims(sizes: Sequence[int], shape: Sequence[int]) -> bool:
    """`shape` is `sizes` with some unit dimensions removed (a rank-reducing slice)."""
    i = 0
    for n in sizes:
        if i < len(shape) and shape[i] == n:
            i += 1
        elif n != 1:
            return False
    return i == len(shape)


@irdl_op_definition
class ConcatOp(IRDLOperation):
    """Concatenation along `dim`: consecutive writes into one buffer at offsets.

    ```mlir
    %c = rdu.concat %x, %y dim 0 : (tensor<4x8xf32>, tensor<4x8xf32>) -> tensor<8x8xf32>
    ```

    All sources and the result have one rank and element type, agree on every other dim,
    and the result's `dim` is the sum of the sources'.
    """

    name = "rdu.concat"
    sources = var_operand_def()
    result = result_def()
    dim = prop_def(IntegerAttr[I64])
    traits = traits_def(Pure())

    assembly_format = "$sources `dim` $dim attr-dict `:` `(` type($sources) `)` `->` type($result)"

    def __init__(self, sources: Sequence[SSAValue], result_type: Attribute, dim: int):
        super().__init__(operands=[sources], result_types=[result_type], properties={"dim": IntegerAttr(dim, i64)})

    def verify_(self) -> None:
        dim = self.dim.value.data
        op = f"rdu.concat dim {dim}"
        res = _shaped(op, "the result", self.result.type)
        if not self.sources:
            raise VerifyException(f"{op}: no sources; concatenate at least one tensor")
        if not 0 <= dim < len(res):
            raise VerifyException(f"{op}: dim must be in [0, {len(res)}) for a result of rank {len(res)}")
        total = 0
        for i, v in enumerate(self.sources):
            shape = _shaped(op, f"source {i}", v.type)
            _same_kind(op, v.type, self.result.type)
            if len(shape) != len(res) or any(a != b for d, (a, b) in enumerate(zip(shape, res, strict=True)) if d != dim):
                raise VerifyException(
                    f"{op}: source {i} {v.type} does not fit result {self.result.type}; sources agree with "
                    "the result on every dim but the concatenated one"
                )
            total += shape[dim]
        if total != res[dim]:
            raise VerifyException(f"{op}: sources sum to {total} along dim {dim} but the result has {res[dim]}")


@irdl_op_definition
class PadOp(IRDLOperation):
    """Constant padding (`tensor.pad`): the address generator returns `value` outside the source.

    ```mlir
    %p = rdu.pad %x low [1, 1] high [1, 1] value %zero : tensor<4x8xf32>, f32 -> tensor<6x10xf32>
    ```

    `low` / `high`: elements added before / after each dim (>= 0); the result's shape is
    source + low + high, and `value` is a scalar of the source's element type.
    """

    name = "rdu.pad"
    source = operand_def()
    value = operand_def()
    result = result_def()
    low = prop_def(_I64_ARRAY)
    high = prop_def(_I64_ARRAY)
    traits = traits_def(Pure())

    assembly_format = (
        "$source `low` $low `high` $high `value` $value attr-dict "
        "`:` type($source) `,` type($value) `->` type($result)"
    )

    def __init__(
        self, source: SSAValue, value: SSAValue, result_type: Attribute, low: Sequence[int], high: Sequence[int]
    ):
        super().__init__(
            operands=[source, value],
            result_types=[result_type],
            properties={"low": _dense(low), "high": _dense(high)},
        )

    def verify_(self) -> None:
        op = "rdu.pad"
        src = _shaped(op, "the source", self.source.type)
        res = _shaped(op, "the result", self.result.type)
        _same_kind(op, self.source.type, self.result.type)
        low = [int(v) for v in self.low.get_values()]
        high = [int(v) for v in self.high.get_values()]
        if not len(low) == len(high) == len(src) == len(res):
            raise VerifyException(
                f"{op}: {len(low)} low and {len(high)} high paddings for a source of rank {len(src)} and a "
                f"result of rank {len(res)}; give one of each per dim"
            )
        if min(low + high, default=0) < 0:
            raise VerifyException(f"{op}: paddings low {low} high {high} must be >= 0 (a crop is a <slice> view)")
        want = [s + lo + hi for s, lo, hi in zip(src, low, high, strict=True)]
        if min(src, default=0) >= 0 and list(res) != want:
            raise VerifyException(f"{op}: result shape {list(res)} should be source + low + high = {want}")
        if self.value.type != element_type_of(self.source.type):
            raise VerifyException(
                f"{op}: padding value is {self.value.type} but the source's elements are "
                f"{element_type_of(self.source.type)}; pad with a scalar of the element type"
            )


LAYOUT_OPS = (ViewOp, ConcatOp, PadOp)
