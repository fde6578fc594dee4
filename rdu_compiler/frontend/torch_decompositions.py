"""Decompositions applied before torch-mlir, for ops whose torch-mlir lowering is wrong or
cannot run on the emulator.

``embedding_bag``: torch-mlir lowers ``aten._embedding_bag`` to a masked reduction that the
emulator refuses, and drops ``per_sample_weights`` without a word. Here it becomes ops the
pipeline supports: a gather of the rows, a multiply by the per-sample weights, and a
segment reduction over a (bags x indices) membership mask (a matmul for sum/mean, a masked
max for max).

``scatter`` family with a negative ``dim``: torch-mlir's lowering segfaults (SIGSEGV, or
an allocation failure) on ``scatter`` / ``scatter_add`` / ``scatter_reduce`` with
``dim < 0``; the same op with ``dim + rank`` lowers and runs.

The decompositions that keep eager's numbers where torch-mlir's lowering changes them
(GELU tanh, NaN-propagating max/min/clamp, argmax with NaN, uint8, integer floor division)
are in ``torch_numerics.py``; ``torch_import._decomposition_table`` applies both.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["embedding_bag_decompositions", "positive_dim_decompositions"]

_SUM, _MEAN, _MAX = 0, 1, 2


def _embedding_bag(
    weight: torch.Tensor,
    indices: torch.Tensor,
    offsets: torch.Tensor,
    scale_grad_by_freq: bool = False,
    mode: int = 0,
    sparse: bool = False,
    per_sample_weights: torch.Tensor | None = None,
    include_last_offset: bool = False,
    padding_idx: int | None = -1,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``aten._embedding_bag`` / ``aten.embedding_bag.padding_idx`` as gather + segment reduce.

    Shapes: ``weight`` (V, D), ``indices`` (N,), ``offsets`` (B,) or (B + 1,) with
    ``include_last_offset``; returns (output (B, D), offset2bag (N,), bag_size (B,),
    max_indices (B, D) for mode max else (B,)). Bag b holds the indices
    ``offsets[b] <= j < offsets[b + 1]``; the last bag runs to N, or to the last offset
    with ``include_last_offset`` (PyTorch documents that it equals N; for other values
    eager's CPU kernels disagree among modes); entries equal to
    ``padding_idx`` (>= 0) are skipped. An empty bag gives zeros. ``output`` equals eager's;
    the auxiliary outputs (for autograd) follow these definitions, not eager's
    mode-dependent internals, so :func:`~.torch_checks.refuse_embedding_bag_internals`
    refuses a model that reads them.
    """
    n = indices.shape[0]
    starts = offsets[:-1] if include_last_offset else offsets
    n_bags = starts.shape[0]
    pos = torch.arange(n, device=indices.device)
    # offset2bag[j]: the bag of index j (the number of bag starts <= j, minus one)
    offset2bag = (starts.unsqueeze(0) <= pos.unsqueeze(1)).to(torch.int64).sum(1) - 1
    member = offset2bag.unsqueeze(0) == torch.arange(n_bags, device=indices.device).unsqueeze(1)
    if include_last_offset:  # the last offset ends the last bag (it should equal N)
        member = member & (pos < offsets[-1]).unsqueeze(0)
    if padding_idx is not None and padding_idx >= 0:
        member = member & (indices != padding_idx).unsqueeze(0)
    rows = weight.index_select(0, indices)  # (N, D)
    if per_sample_weights is not None:
        rows = rows * per_sample_weights.to(rows.dtype).unsqueeze(1)
    bag_size = member.to(torch.int64).sum(1)  # (B,)
    if mode == _MAX:
        masked = torch.where(member.unsqueeze(2), rows.unsqueeze(0), float("-inf"))  # (B, N, D)
        best, arg = masked.max(1)
        nonempty = (bag_size > 0).unsqueeze(1)
        output = torch.where(nonempty, best, 0.0)
        max_indices = torch.where(nonempty, indices.index_select(0, arg.reshape(-1)).reshape(arg.shape), -1)
        return output, offset2bag, bag_size, max_indices.to(torch.int64)
    output = member.to(rows.dtype) @ rows  # (B, D)
    if mode == _MEAN:
        output = output / bag_size.clamp(min=1).to(rows.dtype).unsqueeze(1)
    return output, offset2bag, bag_size, torch.zeros_like(bag_size)


def _embedding_bag_padding_idx(
    weight: torch.Tensor,
    indices: torch.Tensor,
    offsets: torch.Tensor,
    scale_grad_by_freq: bool,
    mode: int,
    sparse: bool,
    per_sample_weights: torch.Tensor | None,
    include_last_offset: bool,
    padding_idx: int | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    return _embedding_bag(
        weight, indices, offsets, scale_grad_by_freq, mode, sparse, per_sample_weights,
        include_last_offset, padding_idx,
    )


def embedding_bag_decompositions() -> dict[Any, Any]:
    """{aten op overload: decomposition} for the embedding_bag family."""
    aten = torch.ops.aten
    return {
        aten.embedding_bag.padding_idx: _embedding_bag_padding_idx,
        aten.embedding_bag.default: _embedding_bag,
        aten._embedding_bag.default: _embedding_bag,
        aten._embedding_bag_forward_only.default: _embedding_bag,
    }


def _with_positive_dim(op: Any) -> Any:
    def decomposition(self: torch.Tensor, dim: int, *args: Any, **kwargs: Any) -> Any:
        if dim >= 0:
            return NotImplemented  # kept as it is
        return op(self, dim + self.dim(), *args, **kwargs)

    return decomposition


def positive_dim_decompositions() -> dict[Any, Any]:
    """{scatter-family overload: the same op with ``dim`` made non-negative}."""
    aten = torch.ops.aten
    ops = [
        aten.scatter.src, aten.scatter.value, aten.scatter.reduce, aten.scatter.value_reduce,
        aten.scatter_add.default, aten.scatter_reduce.two,
    ]
    return {op: _with_positive_dim(op) for op in ops}
