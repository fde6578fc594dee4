"""Dtypes at the program boundary: what eager PyTorch (or the ONNX graph) takes and returns
against what the compiled program computes on.

MLIR integers are signless, so a `uint8` tensor is an `i8` in the program (same bits); the
runtime reinterprets those bits on the way in and out and converts nothing else.
"""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np
import torch
from torch.utils import _pytree as pytree

from rdu_compiler.dtypes import numpy_of_torch, to_numpy


def _fx_dtypes(nodes: list[Any]) -> list[np.dtype[Any] | None]:
    out: list[np.dtype[Any] | None] = []
    for n in nodes:
        val = getattr(n, "meta", {}).get("val")
        out.append(numpy_of_torch(val.dtype) if isinstance(val, torch.Tensor) else None)
    return out


#: Per graph module, what `eager_input_dtypes` / `eager_output_dtypes` read off its FX
#: graph (a walk over every node), kept while the module lives: a program runs many times.
_SEEN: weakref.WeakKeyDictionary[Any, dict[str, Any]] = weakref.WeakKeyDictionary()


def _memo(gm: Any, key: str, compute: Any) -> Any:
    try:
        seen = _SEEN.setdefault(gm, {})
    except TypeError:  # not weak-referenceable: no memo
        return compute()
    if key not in seen:
        seen[key] = compute()
    return seen[key]


def eager_input_dtypes(imported: Any) -> dict[str, np.dtype[Any]]:
    """User input name -> the dtype the model was exported with (ONNX: the graph's declared
    dtype; PyTorch: the FX placeholder's). Empty where neither is recorded."""
    declared = getattr(imported, "input_dtypes", None)
    if declared:
        return {n: np.dtype(d) for n, d in declared.items()}
    gm = getattr(imported, "graph_module", None)
    if gm is None:
        return {}
    names = tuple(imported.input_names)

    def compute() -> dict[str, np.dtype[Any]]:
        nodes = [n for n in gm.graph.nodes if n.op == "placeholder"]
        return {n.name: d for n, d in zip(nodes, _fx_dtypes(nodes), strict=True) if d is not None and n.name in names}

    return dict(_memo(gm, f"in{names}", compute))


def eager_output_dtypes(imported: Any) -> list[np.dtype[Any] | None]:
    """Per flat output, the dtype eager PyTorch returns, or the ONNX graph declares (None
    where unknown)."""
    gm = getattr(imported, "graph_module", None)
    if gm is None:
        return [np.dtype(d) for d in getattr(imported, "output_dtypes", None) or []]

    def compute() -> list[np.dtype[Any] | None]:
        out = next(n for n in gm.graph.nodes if n.op == "output")
        return _fx_dtypes(list(pytree.tree_leaves(out.args[0])))

    return list(_memo(gm, "out", compute))


def same_bits(arr: np.ndarray, dtype: np.dtype[Any] | None) -> np.ndarray:
    """`arr` read as `dtype` when both are integers of one width (uint8 <-> i8): a view of
    the same memory, not a copy; else `arr` itself."""
    if dtype is None or arr.dtype == dtype:
        return arr
    if arr.dtype.kind in "iu" and dtype.kind in "iu" and arr.dtype.itemsize == dtype.itemsize:
        return np.asarray(arr).view(dtype)
    return arr


def weight_view(views: dict[str, Any], name: str, value: Any) -> np.ndarray:
    """Weight `name` as numpy: last run's array when it is a view of the same tensor's memory
    and the tensor is unchanged since (same data pointer and version counter, which every
    in-place op bumps, shape and stride changes included), else `to_numpy` again (kept only
    when it is a view of the tensor, not a copy)."""
    if not isinstance(value, torch.Tensor):
        return np.asarray(value)
    key = (value._version, value.data_ptr())
    hit = views.get(name)
    if hit is not None and hit[0] is value and hit[1] == key:
        return hit[2]
    arr = to_numpy(value)
    if value.device.type == "cpu" and arr.size and arr.ctypes.data == value.data_ptr():
        views[name] = (value, key, arr)
    return arr
