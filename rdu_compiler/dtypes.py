"""One table of element types: MLIR element type <-> numpy / torch / Triton / bytes.

Every layer that turns an MLIR element type into a host type reads this table (the
emulator, the cost model's byte counts, the Triton generator and its torch reference, the
program boundary). bf16 goes through `ml_dtypes.bfloat16` on the numpy side (numpy has
none); `index` is int64 on the host and int32 inside Triton kernels. MLIR integers are
signless: `i8` is numpy int8 / torch int8 (a uint8 tensor is the same bits, see
`runtime.boundary.same_bits`).

torch is imported only by the functions that need it (`torch_dtype`, `to_numpy`,
`to_torch`), so this module stays at the ground floor of the import graph.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import ml_dtypes
import numpy as np
from xdsl.dialects.builtin import (
    BFloat16Type,
    Float16Type,
    Float32Type,
    Float64Type,
    IndexType,
    IntegerType,
)
from xdsl.ir import Attribute

from rdu_compiler.errors import EmulatorError, RduError

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class ElementType:
    """One row of the table.

    Attributes:
        mlir: the MLIR spelling ("f32", "bf16", "i1", "index").
        numpy: the host numpy dtype.
        torch: the name of the torch dtype (`getattr(torch, name)`).
        triton: the `tl.*` dtype inside Triton kernels (index is int32 there).
        triton_unsigned: the same-width unsigned `tl.*` dtype (integers; bitcasts for
            unsigned ops), else None.
        triton_pointer: the pointer type in a Triton kernel signature (AOT compile;
            index is int64 in memory).
        bits: the width in bits (i1: 1); `numpy.itemsize` gives the stored bytes.
    """

    mlir: str
    numpy: np.dtype[Any]
    torch: str
    triton: str
    triton_unsigned: str | None
    triton_pointer: str
    bits: int

    @property
    def itemsize(self) -> int:
        """Bytes one element takes in memory (i1: 1, bf16: 2)."""
        return int(self.numpy.itemsize)

    @property
    def is_float(self) -> bool:
        return self.numpy.kind == "f" or self.mlir == "bf16"


TABLE: dict[str, ElementType] = {
    e.mlir: e
    for e in (
        ElementType("f64", np.dtype(np.float64), "float64", "tl.float64", None, "*fp64", 64),
        ElementType("f32", np.dtype(np.float32), "float32", "tl.float32", None, "*fp32", 32),
        ElementType("f16", np.dtype(np.float16), "float16", "tl.float16", None, "*fp16", 16),
        ElementType("bf16", np.dtype(ml_dtypes.bfloat16), "bfloat16", "tl.bfloat16", None, "*bf16", 16),
        ElementType("i64", np.dtype(np.int64), "int64", "tl.int64", "tl.uint64", "*i64", 64),
        ElementType("i32", np.dtype(np.int32), "int32", "tl.int32", "tl.uint32", "*i32", 32),
        ElementType("i16", np.dtype(np.int16), "int16", "tl.int16", "tl.uint16", "*i16", 16),
        ElementType("i8", np.dtype(np.int8), "int8", "tl.int8", "tl.uint8", "*i8", 8),
        ElementType("i1", np.dtype(np.bool_), "bool", "tl.int1", "tl.int1", "*i1", 1),
        ElementType("index", np.dtype(np.int64), "int64", "tl.int32", "tl.uint32", "*i64", 64),
    )
}


class UnsupportedElementType(EmulatorError):
    """An MLIR element type with no row in `dtypes.TABLE`."""


def _key(t: Attribute) -> str | None:
    if isinstance(t, Float32Type):
        return "f32"
    if isinstance(t, Float64Type):
        return "f64"
    if isinstance(t, Float16Type):
        return "f16"
    if isinstance(t, BFloat16Type):
        return "bf16"
    if isinstance(t, IndexType):
        return "index"
    if isinstance(t, IntegerType):
        key = f"i{t.width.data}"
        return key if key in TABLE else None
    return None


def lookup(t: Attribute, what: str = "supported by the emulator") -> ElementType:
    """The table row of MLIR element type `t`.

    Raises:
        UnsupportedElementType: `t` has no row (e.g. i4, f8, complex); the message says
            the type is not `what`.
    """
    key = _key(t)
    if key is None:
        raise UnsupportedElementType(f"element type {t} is not {what}")
    return TABLE[key]


def numpy_dtype(t: Attribute) -> np.dtype[Any]:
    """The numpy dtype of an MLIR element type (bf16 through ml_dtypes; index: int64).

    Raises:
        UnsupportedElementType: an element type with no numpy equivalent.
    """
    return lookup(t).numpy


def itemsize(t: Attribute) -> int:
    """Bytes one element of MLIR element type `t` takes in memory.

    Raises:
        UnsupportedElementType: an element type not in the table.
    """
    return lookup(t).itemsize


def is_float(t: Attribute) -> bool:
    """Whether `t` is a float element type (f16, bf16, f32, f64)."""
    return isinstance(t, Float16Type | BFloat16Type | Float32Type | Float64Type)


def is_low_float(t: Attribute) -> bool:
    """fp16 / bf16 (types Triton's math functions do not take; they go through fp32)."""
    return isinstance(t, Float16Type | BFloat16Type)


def torch_dtype(t: Attribute) -> torch.dtype:
    """The torch dtype of an MLIR element type (index: int64).

    Raises:
        UnsupportedElementType: an element type not in the table.
    """
    import torch

    return getattr(torch, lookup(t, "supported by torch").torch)


def numpy_of_torch(dtype: torch.dtype) -> np.dtype[Any]:
    """The numpy dtype of a torch dtype (bf16 through ml_dtypes).

    Raises:
        RduError: a torch dtype with no numpy equivalent (complex32, float8, ...).
    """
    name = str(dtype).removeprefix("torch.")
    for e in TABLE.values():
        if e.torch == name:
            return e.numpy
    import torch

    try:
        return torch.empty(0, dtype=dtype).numpy().dtype
    except TypeError as err:
        raise RduError(f"torch dtype {dtype} has no numpy equivalent") from err


def to_numpy(t: torch.Tensor) -> np.ndarray:
    """A tensor's values as numpy; bf16 through its bits (numpy has no bf16; ml_dtypes does)."""
    import torch

    t = t.detach().cpu()
    if t.dtype == torch.bfloat16:
        return t.contiguous().view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return t.numpy()


def to_torch(a: np.ndarray) -> torch.Tensor:
    """The inverse of `to_numpy` (a C-contiguous copy only where `a` is not one)."""
    import torch

    a = np.require(a, requirements="C")  # not ascontiguousarray: it makes a 0-d array 1-d
    if a.dtype == ml_dtypes.bfloat16:
        return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(a)


#: Float element types -> the unsigned integer type of their bits (MLIR prints non-finite
#: floats as hex bits).
FLOAT_BITS: dict[str, np.dtype[Any]] = {
    "f16": np.dtype(np.uint16), "bf16": np.dtype(np.uint16), "f32": np.dtype(np.uint32), "f64": np.dtype(np.uint64),
}
