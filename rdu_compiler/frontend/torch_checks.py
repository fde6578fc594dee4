"""Checks of an exported torch program that refuse what the compiler cannot lower.

Each check runs on the FX graph of ``torch.export`` before torch-mlir sees it, and raises a
FrontendError naming the aten op and the model's source line.
"""

from __future__ import annotations

import torch

from rdu_compiler.frontend.errors import FrontendError
from rdu_compiler.frontend.locations import fmt_where

__all__ = ["refuse_data_dependent_shapes", "refuse_embedding_bag_internals"]


def refuse_data_dependent_shapes(graph: torch.fx.Graph, model_name: str) -> None:
    """Refuse a graph where a tensor's shape depends on tensor values.

    torch.export gives such shapes *unbacked* symbols (``u0``): ``x[x > 0]``,
    ``torch.nonzero``, ``masked_select``, ``unique``, ``.item()`` used as a size. The
    dataflow program has static shapes, and torch-mlir's lowering of these ops does not end
    (it grows until the machine runs out of memory), so they are refused here.

    Raises:
        FrontendError: naming the first op whose result has a data-dependent shape and the
            model line calling it.
    """
    from torch.fx.experimental.symbolic_shapes import free_unbacked_symbols

    from rdu_compiler.frontend.torch_import import _aten_name, _user_frame

    for node in graph.nodes:
        if node.op != "call_function":
            continue
        val = node.meta.get("val")
        if not node.meta.get("unbacked_bindings") and not (
            isinstance(val, torch.Tensor) and free_unbacked_symbols(val)
        ):
            continue
        op = _aten_name(node.target) or str(node.target)
        where = _user_frame(node.meta.get("stack_trace"))
        at = f" (called at {fmt_where(where)})" if where else ""
        shape = tuple(val.shape) if isinstance(val, torch.Tensor) else val
        raise FrontendError(
            f"{model_name} computes a tensor whose shape depends on tensor values: op '{op}'"
            f"{at} returns shape {shape}, where a symbol like u0 is the number of selected "
            "elements. A dataflow program has static shapes, so this is refused before "
            "lowering. Keep the shape fixed: replace `x[mask]` / `masked_select` / `nonzero` "
            "by `torch.where(mask, x, 0)` (e.g. `torch.where(x > 0, x, 0).sum()` for "
            "`x[x > 0].sum()`), or compute the selection outside the model."
        )


def refuse_embedding_bag_internals(graph: torch.fx.Graph, model_name: str) -> None:
    """Refuse a model that reads the auxiliary results (offset2bag, bag_size,
    max_indices) of ``aten._embedding_bag``: the frontend's decomposition computes only the
    bag values exactly as eager does.

    Raises:
        FrontendError: naming the op and the model line.
    """
    import operator

    from rdu_compiler.frontend.torch_import import _aten_name, _user_frame

    for node in graph.nodes:
        name = _aten_name(node.target) if node.op == "call_function" else None
        if name not in ("aten.embedding_bag", "aten._embedding_bag", "aten._embedding_bag_forward_only"):
            continue
        for user in node.users:
            if user.target is operator.getitem and user.args[1] != 0 and user.users:
                where = _user_frame(node.meta.get("stack_trace"))
                at = f" (called at {fmt_where(where)})" if where else ""
                raise FrontendError(
                    f"{model_name} reads result #{user.args[1]} of op '{name}'{at} "
                    "(offset2bag / bag_size / max_indices, autograd internals whose values "
                    "differ by mode and device); the compiler computes only the bag values "
                    "(result #0). Use torch.nn.functional.embedding_bag's output, or compute "
                    "bag sizes from the offsets in the model."
                )
