"""The one element-type table (rdu_compiler/dtypes.py) agrees with numpy, torch and itself."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
import torch
from xdsl.dialects.builtin import (
    BFloat16Type,
    Float16Type,
    Float32Type,
    Float64Type,
    IndexType,
    IntegerType,
)

from rdu_compiler import dtypes
from rdu_compiler.errors import EmulatorError

TYPES = {
    "f64": Float64Type(), "f32": Float32Type(), "f16": Float16Type(), "bf16": BFloat16Type(),
    "i64": IntegerType(64), "i32": IntegerType(32), "i16": IntegerType(16), "i8": IntegerType(8),
    "i1": IntegerType(1), "index": IndexType(),
}


@pytest.mark.parametrize("name", sorted(TYPES))
def test_row_matches_its_mlir_type_numpy_and_torch(name):
    t = TYPES[name]
    row = dtypes.lookup(t)
    assert row.mlir == str(t) == name
    assert dtypes.torch_dtype(t).itemsize == row.itemsize == dtypes.itemsize(t)
    assert dtypes.numpy_of_torch(dtypes.torch_dtype(t)) == row.numpy
    assert row.is_float == dtypes.is_float(t)


def test_unsupported_type_is_refused_by_name():
    with pytest.raises(EmulatorError, match="i4"):
        dtypes.numpy_dtype(IntegerType(4))


def test_bf16_round_trips_through_its_bits():
    t = torch.tensor([1.5, -2.0, float("inf")], dtype=torch.bfloat16)
    a = dtypes.to_numpy(t)
    assert a.dtype == ml_dtypes.bfloat16
    back = dtypes.to_torch(a)
    assert back.dtype == torch.bfloat16 and torch.equal(back, t)
    assert dtypes.to_torch(np.asarray(3.0, np.float32)).shape == ()  # rank 0 kept
