"""Checks of an exported torch program that refuse what the compiler cannot lower.

Each check runs on the FX graph of ``torch.export`` before torch-mlir sees it, and raises a
FrontendError naming the aten op and the model's source line.
"""

from __future__ import annotations

import torch
from torch.utils import _pytree as pytree

from rdu_compiler.frontend.errors import FrontendError
from rdu_compiler.frontend.locations import fmt_where
from rdu_compiler.frontend.torch.diagnostics import aten_name, user_frame

__all__ = ["refuse_data_dependent_shapes", "refuse_dropped_operands", "refuse_embedding_bag_internals"]


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

    for node in graph.nodes:
        if node.op != "call_function":
            continue
        val = node.meta.get("val")
        if not node.meta.get("unbacked_bindings") and not (
            isinstance(val, torch.Tensor) and free_unbacked_symbols(val)
        ):
            continue
        op = aten_name(node.target) or str(node.target)
        where = user_frame(node.meta.get("stack_trace"))
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

    for node in graph.nodes:
        name = aten_name(node.target) if node.op == "call_function" else None
        if name not in ("aten.embedding_bag", "aten._embedding_bag", "aten._embedding_bag_forward_only"):
            continue
        for user in node.users:
            if user.target is operator.getitem and user.args[1] != 0 and user.users:
                where = user_frame(node.meta.get("stack_trace"))
                at = f" (called at {fmt_where(where)})" if where else ""
                raise FrontendError(
                    f"{model_name} reads result #{user.args[1]} of op '{name}'{at} "
                    "(offset2bag / bag_size / max_indices, autograd internals whose values "
                    "differ by mode and device); the compiler computes only the bag values "
                    "(result #0). Use torch.nn.functional.embedding_bag's output, or compute "
                    "bag sizes from the offsets in the model."
                )


#: Ops that read only a tensor's shape / dtype: an argument read only by them may be unused.
_METADATA_READERS = frozenset(
    {
        "aten.sym_size", "aten.sym_stride", "aten.sym_numel", "aten.sym_storage_offset",
        "aten.size", "aten.stride", "aten.numel", "aten.dim",
        "aten.empty_like", "aten.zeros_like", "aten.ones_like", "aten.full_like",
        "aten.new_empty", "aten.new_zeros", "aten.new_ones", "aten.new_full",
        "aten._assert_tensor_metadata", "aten.sym_constrain_range_for_size",
    }
)


def refuse_dropped_operands(
    graph: torch.fx.Graph,
    unused: list[int],
    model_name: str,
    graph_module: torch.nn.Module | None = None,
    values: list[torch.Tensor] | None = None,
) -> None:
    """Refuse a lowering that dropped an operand: an argument of the lowered ``@main``
    (``unused``: indices, in placeholder order) that no op reads although an op of the FX
    graph reads it (torch-mlir once dropped EmbeddingBag's ``per_sample_weights``).

    torch-mlir also drops an argument legitimately when folding proves it cannot matter
    (``torch.where(c, v, v)`` never reads ``c``). So when ``graph_module`` (the FX graph,
    all placeholders positional) and ``values`` (one tensor per placeholder) are given and
    hold data, the graph is run eagerly with the argument replaced by other values of its
    shape and dtype: an argument whose change changes no output is not a dropped operand.
    Shape-only (meta) programs, which never run, are not refused.

    Raises:
        FrontendError: naming the argument, the op that read it and the model line.
    """
    placeholders = [n for n in graph.nodes if n.op == "placeholder"]
    for i in unused:
        if i >= len(placeholders):
            continue
        readers = [
            u for u in placeholders[i].users
            if u.op == "call_function" and (aten_name(u.target) or "") not in _METADATA_READERS
        ]
        if not readers:
            continue  # the model itself never reads it
        if values is not None and any(v.is_meta for v in values if isinstance(v, torch.Tensor)):
            continue  # shape only: nothing runs, so nothing can be ignored
        if graph_module is not None and values is not None and not _output_depends_on(graph_module, values, i):
            continue  # folded away by torch-mlir because it cannot change the result
        reader = readers[0]
        op = aten_name(reader.target) or str(reader.target)
        where = user_frame(reader.meta.get("stack_trace"))
        at = f" (called at {fmt_where(where)})" if where else ""
        raise FrontendError(
            f"torch-mlir dropped operand '{placeholders[i].name}' of op '{op}'{at} of "
            f"{model_name}: the lowered program never reads it, so its values would be "
            "ignored without a word. Rewrite that line with operations that use it "
            "explicitly (e.g. multiply by the weights before the reduction), or report the op."
        )


def _output_depends_on(graph_module: torch.nn.Module, values: list[torch.Tensor], i: int) -> bool:
    """Whether changing argument ``i`` (to a seeded permutation of its values, or for a
    bool to its negation, so indices stay in range) changes an output. True when that
    cannot be told (the run fails, or the new values equal the old ones)."""
    old = values[i]
    if not isinstance(old, torch.Tensor) or old.numel() == 0:
        return True
    if old.dtype == torch.bool:
        new = ~old
    else:
        g = torch.Generator().manual_seed(0)
        flat = old.reshape(-1)
        new = flat[torch.randperm(flat.numel(), generator=g)].reshape(old.shape)
        if old.is_floating_point():
            new = new + torch.randn(old.shape, generator=g, dtype=torch.float32).to(old.dtype)
    if torch.equal(new, old):
        return True
    try:
        with torch.no_grad():
            a = pytree.tree_leaves(graph_module(*values))
            b = pytree.tree_leaves(graph_module(*values[:i], new, *values[i + 1 :]))
    except Exception:  # noqa: BLE001 - cannot tell: treat as depending
        return True
    for x, y in zip(a, b, strict=True):
        if not isinstance(x, torch.Tensor):
            continue
        same = (x == y) | (x.isnan() & y.isnan()) if x.is_floating_point() else x == y
        if not bool(same.all()):
            return True
    return False
