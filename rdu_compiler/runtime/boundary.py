"""Dtypes at the program boundary: what eager PyTorch (or the ONNX graph) takes and returns
against what the compiled program computes on.

MLIR integers are signless, so a `uint8` tensor is an `i8` in the program (same bits); the
runtime reinterprets those bits on the way in and out and converts nothing else.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils import _pytree as pytree

from rdu_compiler.dtypes import numpy_of_torch


def _fx_dtypes(nodes: list[Any]) -> list[np.dtype[Any] | None]:
    out: list[np.dtype[Any] | None] = []
    for n in nodes:
        val = getattr(n, "meta", {}).get("val")
        out.append(numpy_of_torch(val.dtype) if isinstance(val, torch.Tensor) else None)
    return out


def eager_input_dtypes(imported: Any) -> dict[str, np.dtype[Any]]:
    """User input name -> the dtype the model was exported with (ONNX: the graph's declared
    dtype; PyTorch: the FX placeholder's). Empty where neither is recorded."""
    declared = getattr(imported, "input_dtypes", None)
    if declared:
        return {n: np.dtype(d) for n, d in declared.items()}
    gm = getattr(imported, "graph_module", None)
    if gm is None:
        return {}
    nodes = [n for n in gm.graph.nodes if n.op == "placeholder"]
    return {n.name: d for n, d in zip(nodes, _fx_dtypes(nodes), strict=True) if d is not None and n.name in imported.input_names}


def eager_output_dtypes(imported: Any) -> list[np.dtype[Any] | None]:
    """Per flat output, the dtype eager PyTorch returns, or the ONNX graph declares (None
    where unknown)."""
    gm = getattr(imported, "graph_module", None)
    if gm is None:
        return [np.dtype(d) for d in getattr(imported, "output_dtypes", None) or []]
    out = next(n for n in gm.graph.nodes if n.op == "output")
    return _fx_dtypes(list(pytree.tree_leaves(out.args[0])))


def same_bits(arr: np.ndarray, dtype: np.dtype[Any] | None) -> np.ndarray:
    """`arr` read as `dtype` when both are integers of one width (uint8 <-> i8): a view of
    the same memory, not a copy; else `arr` itself."""
    if dtype is None or arr.dtype == dtype:
        return arr
    if arr.dtype.kind in "iu" and dtype.kind in "iu" and arr.dtype.itemsize == dtype.itemsize:
        return np.asarray(arr).view(dtype)
    return arr
