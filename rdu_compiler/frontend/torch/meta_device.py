"""Shape-only models: graphs exported from tensors on the meta device.

A model built under `with torch.device("meta")` has shapes and no data, which is all the
compiler needs to decide and cost a program. Its exported graph still names the meta device
wherever it makes a tensor (`torch.ones`, `torch.full`, `scalar_tensor`, `new_ones`, the
`empty_strided` that PyTorch's SDPA decomposition and HF's causal masks create). torch-mlir
lowers those factory ops only for the CPU device (`aten.empty.memory_format` is refused on
meta), and the device changes nothing the compiler computes: the program runs on the
fabric. So factory ops are retargeted to the CPU before torch-mlir sees them.
"""

from __future__ import annotations

import torch

_META = torch.device("meta")
_CPU = torch.device("cpu")


def retarget_meta_devices(graph: torch.fx.Graph) -> int:
    """Rewrite every `device=meta` keyword of a node in `graph` to `device=cpu`, in place.

    Returns the number of nodes changed. Only the `device` keyword is touched: shapes and
    dtypes (what the compiler reads) stay as exported.
    """
    changed = 0
    for node in graph.nodes:
        device = node.kwargs.get("device")
        if device is not None and torch.device(device) == _META:
            node.kwargs = {**node.kwargs, "device": _CPU}
            changed += 1
    return changed
