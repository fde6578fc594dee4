"""Decompositions applied with torch.export's ``run_decompositions`` before torch-mlir sees the
graph (:func:`decomposition_table`): torch-mlir's FX table, plus ops rewritten here because
torch-mlir's lowering changes eager PyTorch's numbers, computes in float64, or cannot run on
the emulator.

Numbers (eager's where torch-mlir's lowering differs):

- `aten.gelu(approximate="tanh")`: torch-mlir's lowering uses 0.797724 for sqrt(2/pi)
  (0.7978846), about 2e-4 relative error; here the exact constant, in eager's order
  `0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x^3)))`, in float32 for bf16/f16.
- `aten.maximum`/`minimum`, `clamp` (scalar and tensor bounds), `clamp_min`/`clamp_max`,
  `hardtanh` (relu6, hardswish, hardsigmoid go through it or clamp): torch-mlir lowers them
  to `cmpf ogt|olt|ult|ugt + select`, which turns a NaN operand into a number; eager
  propagates NaN. Here: `where(isnan(x) | (x > y), x, y)`-style selects that keep NaN.
- `aten.leaky_relu`: torch-mlir builds `max(x, 0) + slope * min(x, 0)` with the same
  NaN-dropping selects; here eager's `where(x > 0, x, x * slope)`.
- `aten.argmax`/`argmin`, the indices of `aten.max.dim`/`min.dim`: torch-mlir's
  `cmpf ogt|olt` never selects a NaN; eager returns the first NaN's index.
- uint8 comparisons, min/max, divisions, sorts and right shifts: torch-mlir reads the
  signless i8 as signed; computed on int16 instead (`_UINT8_WIDENED`).
- integer `div(rounding_mode="floor")`: torch-mlir computes it in f64 (`sitofp`, `divf`,
  `floor`, `fptosi`), which is inexact beyond 2^53 and turns a division by zero into an
  undefined float-to-int cast; here a truncating integer division (`arith.divsi`, which
  the emulator checks for zero divisors) corrected towards -inf.

Every decomposition returns `NotImplemented` (keep the op) where torch-mlir's lowering is
already exact (integer min/max, non-tanh GELU, float floor division).

Float32 kept (:func:`_var_mean_same_dtype`): torch-mlir's var_mean computes in float64, which
would put f64 tensors into every LayerNorm; softmax / log-softmax through ``amax`` (a
single-result reduction instead of ``max.dim``'s dead argmax).

Lowerings that fail or do not run:

``embedding_bag``: torch-mlir lowers ``aten._embedding_bag`` to a masked reduction that the
emulator refuses, and drops ``per_sample_weights`` without a word. Here it becomes ops the
pipeline supports, O(N) in the indices: a gather of the rows, a multiply by the per-sample
weights, and a scatter-add (sum, mean) or scatter-max (max) of the rows into their bags.

``scatter`` family with a negative ``dim``: torch-mlir's lowering segfaults (SIGSEGV, or
an allocation failure) on ``scatter`` / ``scatter_add`` / ``scatter_reduce`` with
``dim < 0``; the same op with ``dim + rank`` lowers and runs.
"""

from __future__ import annotations

import math
from typing import Any

import torch

__all__ = [
    "decomposition_table",
    "embedding_bag_decompositions",
    "numerics_decompositions",
    "positive_dim_decompositions",
]

aten = torch.ops.aten

#: sqrt(2 / pi), as eager PyTorch's GELU kernel (M_SQRT2 * M_2_SQRTPI * 0.5).
_SQRT_2_OVER_PI = math.sqrt(2.0) * (2.0 / math.sqrt(math.pi)) * 0.5
_GELU_KAPPA = 0.044715


def _is_float(x: Any) -> bool:
    return isinstance(x, torch.Tensor) and x.dtype.is_floating_point


def _gelu(x: torch.Tensor, approximate: str = "none") -> Any:
    if approximate != "tanh":
        return NotImplemented
    xf = x.float() if x.dtype in (torch.bfloat16, torch.float16) else x
    # pow(x, 3) is one math.fpowi (x * x * x, eager's x_cube), reading x once
    inner = _SQRT_2_OVER_PI * (xf + _GELU_KAPPA * torch.pow(xf, 3))
    y = 0.5 * xf * (1.0 + torch.tanh(inner))
    return y.to(x.dtype)


def _nan_max(a: torch.Tensor, b: Any) -> torch.Tensor:
    """max(a, b) with a NaN in either operand giving NaN (b may be a scalar)."""
    pick_a = torch.isnan(a) | (a > b)
    return torch.where(pick_a, a, b)


def _nan_min(a: torch.Tensor, b: Any) -> torch.Tensor:
    pick_a = torch.isnan(a) | (a < b)
    return torch.where(pick_a, a, b)


def _maximum(a: torch.Tensor, b: torch.Tensor) -> Any:
    if not (_is_float(a) or _is_float(b)):
        return NotImplemented
    dtype = torch.result_type(a, b)
    return _nan_max(a.to(dtype), b.to(dtype))  # a NaN b: neither isnan(a) nor a > b, so b


def _minimum(a: torch.Tensor, b: torch.Tensor) -> Any:
    if not (_is_float(a) or _is_float(b)):
        return NotImplemented
    dtype = torch.result_type(a, b)
    return _nan_min(a.to(dtype), b.to(dtype))


def _bound(x: torch.Tensor, v: Any) -> Any:
    """A clamp bound as the value to compare with: scalars stay Python numbers."""
    if isinstance(v, torch.Tensor):
        return v.to(x.dtype)
    return v


def _clamp(x: torch.Tensor, lo: Any = None, hi: Any = None) -> Any:
    """Eager's clamp: NaN in x (or in a tensor bound) propagates; bounds applied min then max."""
    if not _is_float(x) or (lo is None and hi is None):
        return NotImplemented
    if any(isinstance(v, torch.Tensor) and torch.result_type(x, v) != x.dtype for v in (lo, hi) if v is not None):
        return NotImplemented  # a promoting clamp: keep torch-mlir's handling of the dtypes
    y = x
    if lo is not None:
        b = _bound(x, lo)
        # a scalar bound is never NaN: "y unless y < lo" (ordered: false for a NaN y) keeps NaN
        y = _nan_max(y, b) if isinstance(b, torch.Tensor) else torch.where(y < b, b, y)
    if hi is not None:
        b = _bound(x, hi)
        y = _nan_min(y, b) if isinstance(b, torch.Tensor) else torch.where(y > b, b, y)
    return y


def _clamp_min(x: torch.Tensor, lo: Any) -> Any:
    return _clamp(x, lo, None)


def _clamp_max(x: torch.Tensor, hi: Any) -> Any:
    return _clamp(x, None, hi)


def _hardtanh(x: torch.Tensor, lo: Any = -1.0, hi: Any = 1.0) -> Any:
    return _clamp(x, lo, hi)


def _leaky_relu(x: torch.Tensor, slope: Any = 0.01) -> Any:
    if not _is_float(x):
        return NotImplemented
    return torch.where(x > 0, x, x * slope)


def _div_mode(a: Any, b: Any, *, rounding_mode: str | None = None) -> Any:
    if rounding_mode != "floor":
        return NotImplemented
    if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
        return NotImplemented
    if any(t.dtype.is_floating_point or t.dtype in (torch.bool, torch.uint8) for t in (a, b)):
        return NotImplemented  # uint8: widened first (_UINT8_WIDENED)
    dtype = torch.result_type(a, b)
    a, b = a.to(dtype), b.to(dtype)
    q = torch.div(a, b, rounding_mode="trunc")
    r = a - q * b
    return q - ((r != 0) & ((r < 0) != (b < 0))).to(dtype)


_INSIDE_ARG_BEST: list[bool] = []  # set while an argmax decomposition calls the op it decomposes


def _arg_best(x: torch.Tensor, dim: Any, keepdim: bool, is_max: bool) -> Any:
    """argmax / argmin as eager: the first NaN's index where a NaN is present (eager ranks NaN
    above everything), else the first best value's. torch-mlir's lowering compares with
    `cmpf ogt|olt`, which never picks a NaN."""
    if _INSIDE_ARG_BEST or not _is_float(x):
        return NotImplemented
    flat = dim is None
    v = x.reshape(-1) if flat else x
    d = 0 if flat else dim
    keep = keepdim and not flat
    nan = torch.isnan(v)
    fill = float("-inf") if is_max else float("inf")
    _INSIDE_ARG_BEST.append(True)
    try:
        masked = torch.where(nan, fill, v)
        best = torch.argmax(masked, d, keep) if is_max else torch.argmin(masked, d, keep)
        first_nan = torch.argmax(nan.to(torch.int32), d, keep)  # integer argmax: first maximum
    finally:
        _INSIDE_ARG_BEST.pop()
    idx = torch.where(nan.any(d, keep), first_nan, best)
    if flat and keepdim:
        idx = idx.reshape([1] * x.dim())
    return idx


def _argmax(x: torch.Tensor, dim: Any = None, keepdim: bool = False) -> Any:
    return _arg_best(x, dim, keepdim, True)


def _argmin(x: torch.Tensor, dim: Any = None, keepdim: bool = False) -> Any:
    return _arg_best(x, dim, keepdim, False)


def _max_dim(x: torch.Tensor, dim: int, keepdim: bool = False) -> Any:
    """torch.max(x, dim): the values (`maximumf`, NaN-propagating) and eager's indices."""
    idx = _arg_best(x, dim, keepdim, True)
    if idx is NotImplemented:
        return NotImplemented
    return torch.amax(x, dim, keepdim), idx


def _min_dim(x: torch.Tensor, dim: int, keepdim: bool = False) -> Any:
    idx = _arg_best(x, dim, keepdim, False)
    if idx is NotImplemented:
        return NotImplemented
    return torch.amin(x, dim, keepdim), idx


#: Ops whose torch-mlir lowering reads a uint8 tensor (a signless i8) as signed: `cmpi slt`,
#: `maxsi`, `divsi`, `shrsi` give 200 < 100 and max(1, 255) == 1. Computed on int16 (exact for
#: every uint8 value), the result narrowed back to uint8 where eager returns uint8.
_UINT8_WIDENED = [
    aten.lt.Tensor, aten.lt.Scalar, aten.le.Tensor, aten.le.Scalar, aten.gt.Tensor, aten.gt.Scalar,
    aten.ge.Tensor, aten.ge.Scalar, aten.maximum.default, aten.minimum.default, aten.amax.default,
    aten.amin.default, aten.max.dim, aten.min.dim, aten.max.default, aten.min.default, aten.argmax.default,
    aten.argmin.default, aten.clamp.default, aten.clamp.Tensor, aten.clamp_min.default, aten.clamp_max.default,
    aten.div.Tensor_mode, aten.remainder.Tensor, aten.remainder.Scalar, aten.fmod.Tensor, aten.fmod.Scalar,
    aten.sort.default, aten.topk.default, aten.bitwise_right_shift.Tensor, aten.bitwise_right_shift.Tensor_Scalar,
    aten.__rshift__.Scalar, aten.__rshift__.Tensor, aten.sum.default, aten.sum.dim_IntList, aten.prod.default,
    aten.prod.dim_int, aten.mul.Tensor,  # uint8 * k segfaulted torch-mlir; int16 keeps the low 8 bits exactly
]


def _is_u8(a: Any) -> bool:
    return isinstance(a, torch.Tensor) and a.dtype == torch.uint8


def _uint8_widened(op: Any, then: Any) -> Any:
    """`op` on int16 copies of its uint8 tensor arguments; else `then` (or keep the op)."""

    def decomposition(*args: Any, **kwargs: Any) -> Any:
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        if not any(_is_u8(a) for a in tensors):
            return then(*args, **kwargs) if then is not None else NotImplemented
        all_u8 = all(_is_u8(a) for a in tensors)
        out = op(*[a.to(torch.int16) if _is_u8(a) else a for a in args], **kwargs)

        def narrow(t: Any) -> Any:
            if all_u8 and isinstance(t, torch.Tensor) and t.dtype == torch.int16:
                return t.to(torch.uint8)
            return t

        return tuple(narrow(t) for t in out) if isinstance(out, tuple | list) else narrow(out)

    return decomposition


def numerics_decompositions() -> dict[Any, Any]:
    """aten op overload -> decomposition, for `ExportedProgram.run_decompositions`."""
    table = _float_decompositions()
    for op in _UINT8_WIDENED:
        table[op] = _uint8_widened(op, table.get(op))
    return table


def _float_decompositions() -> dict[Any, Any]:
    table: dict[Any, Any] = {
        aten.gelu.default: _gelu,
        aten.maximum.default: _maximum,
        aten.minimum.default: _minimum,
        aten.clamp.default: _clamp,
        aten.clamp.Tensor: _clamp,
        aten.clamp_min.default: _clamp_min,
        aten.clamp_min.Tensor: _clamp_min,
        aten.clamp_max.default: _clamp_max,
        aten.clamp_max.Tensor: _clamp_max,
        aten.hardtanh.default: _hardtanh,
        aten.leaky_relu.default: _leaky_relu,
        aten.div.Tensor_mode: _div_mode,
        aten.argmax.default: _argmax,
        aten.argmin.default: _argmin,
        aten.max.dim: _max_dim,
        aten.min.dim: _min_dim,
    }
    return table


# --------------------------------------------------------------------------------------
# embedding_bag, scatter with a negative dim
# --------------------------------------------------------------------------------------

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
    """``aten._embedding_bag`` / ``aten.embedding_bag.padding_idx`` as gather + segment reduce,
    O(N) in the number of indices (no bags x indices mask).

    Shapes: ``weight`` (V, D), ``indices`` (N,), ``offsets`` (B,) or (B + 1,) with
    ``include_last_offset``; returns (output (B, D), offset2bag (N,), bag_size (B,),
    max_indices (B, D) for mode max else (B,)). Bag b holds the indices
    ``offsets[b] <= j < offsets[b + 1]``; the last bag runs to N, or to the last offset
    with ``include_last_offset`` (PyTorch documents that it equals N; for other values
    eager's CPU kernels disagree among modes); entries equal to ``padding_idx`` (>= 0) are
    skipped. An empty bag gives zeros.

    How: each index's bag is a running count of the bag starts at or before it (the
    starts marked by a scatter-add of ones, then a cumsum: ``offset2bag``); skipped
    entries go to a spare bag B that is dropped. The gathered rows (times the per-sample
    weights) are scatter-added into their bags (``index_add``: sum, mean) or
    scatter-maxed (``scatter_reduce(amax, include_self=False)``: max), in index order as
    eager sums them; mean divides by the bag sizes, another scatter-add. torch-mlir lowers
    both scatters to ``tm_tensor.scatter``, which rdu-convert-linalg turns into ``scatter``
    kernels over the N indices. ``output`` equals eager's; of the auxiliary outputs (for
    autograd) offset2bag and bag_size follow the definitions above and max_indices is
    not computed (zeros), so :func:`~.checks.refuse_embedding_bag_internals` refuses a
    model that reads them.
    """
    n = indices.shape[0]
    dev = indices.device
    starts = offsets[:-1] if include_last_offset else offsets
    n_bags = starts.shape[0]
    d = weight.shape[1]
    # offset2bag[j]: the number of bag starts <= j, minus one (starts may equal N: empty bags)
    marks = torch.zeros(n + 1, dtype=torch.int64, device=dev).index_add(0, starts, torch.ones_like(starts))
    offset2bag = marks[:n].cumsum(0) - 1
    valid = torch.ones(n, dtype=torch.bool, device=dev)
    if include_last_offset:  # the last offset ends the last bag (it should equal N)
        valid = valid & (torch.arange(n, device=dev) < offsets[-1])
    if padding_idx is not None and padding_idx >= 0:
        valid = valid & (indices != padding_idx)
    seg = torch.where(valid, offset2bag, n_bags)  # skipped entries: the spare bag n_bags
    rows = weight.index_select(0, indices)  # (N, D)
    if per_sample_weights is not None:
        rows = rows * per_sample_weights.to(rows.dtype).unsqueeze(1)
    bag_size = torch.zeros(n_bags + 1, dtype=torch.int64, device=dev).index_add(0, seg, torch.ones_like(seg))[:n_bags]
    dest = torch.zeros(n_bags + 1, d, dtype=rows.dtype, device=dev)
    if mode == _MAX:
        best = dest.scatter_reduce(0, seg.unsqueeze(1).expand(n, d), rows, "amax", include_self=False)
        return best[:n_bags], offset2bag, bag_size, torch.zeros(n_bags, d, dtype=torch.int64, device=dev)
    output = dest.index_add(0, seg, rows)[:n_bags]  # (B, D)
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


# --------------------------------------------------------------------------------------
# Float32 kept; the table
# --------------------------------------------------------------------------------------


def _reduced_dims(x: torch.Tensor, dim: Any) -> list[int]:
    """Normalized reduction dims of ``x`` (all dims when ``dim`` is None or empty)."""
    if dim is None:
        return list(range(x.dim()))
    dims = [dim] if isinstance(dim, int) else list(dim)
    if not dims:
        return list(range(x.dim()))
    return sorted(d % max(x.dim(), 1) for d in dims)


def _var_mean_same_dtype(
    x: torch.Tensor, dim: Any = None, *, correction: Any = None, keepdim: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """``aten.var_mean.correction`` in the input's dtype (two-pass: mean, then squares).

    torch-mlir's own decomposition of var_mean computes in float64, which would put f64
    tensors into the linalg output (every LayerNorm); this keeps them float32.
    """
    dims = _reduced_dims(x, dim)
    n = 1
    for d in dims:
        n *= x.shape[d]
    corr = 1 if correction is None else correction
    mean = torch.ops.aten.mean.dim(x, dims, True)
    centered = torch.ops.aten.sub.Tensor(x, mean)
    sq = torch.ops.aten.mul.Tensor(centered, centered)
    var = torch.ops.aten.sum.dim_IntList(sq, dims, keepdim)
    var = torch.ops.aten.div.Scalar(var, max(n - corr, 0))
    if not keepdim:
        mean = torch.ops.aten.squeeze.dims(mean, dims)
    return var, mean


def _var_same_dtype(
    x: torch.Tensor, dim: Any = None, *, correction: Any = None, keepdim: bool = False
) -> torch.Tensor:
    """``aten.var.correction`` in the input's dtype (see :func:`_var_mean_same_dtype`)."""
    return _var_mean_same_dtype(x, dim, correction=correction, keepdim=keepdim)[0]


def _softmax_single_pass_max(x: torch.Tensor, dim: int, half_to_float: bool) -> torch.Tensor:
    """``aten._softmax``: exp(x - amax(x)) / sum(exp(x - amax(x))) along ``dim``.

    torch-mlir's own decomposition goes through ``aten.max.dim``, which yields a two-result
    linalg.generic with a dead i64 argmax; ``amax`` keeps the max a single-result reduction.
    """
    if half_to_float:
        x = torch.ops.aten._to_copy.default(x, dtype=torch.float32)
    m = torch.ops.aten.amax.default(x, [dim], True)
    e = torch.ops.aten.exp.default(torch.ops.aten.sub.Tensor(x, m))
    return torch.ops.aten.div.Tensor(e, torch.ops.aten.sum.dim_IntList(e, [dim], True))


def _log_softmax_single_pass_max(x: torch.Tensor, dim: int, half_to_float: bool) -> torch.Tensor:
    """``aten._log_softmax``: (x - amax) - log(sum(exp(x - amax))) along ``dim``."""
    if half_to_float:
        x = torch.ops.aten._to_copy.default(x, dtype=torch.float32)
    m = torch.ops.aten.amax.default(x, [dim], True)
    shifted = torch.ops.aten.sub.Tensor(x, m)
    lse = torch.ops.aten.log.default(
        torch.ops.aten.sum.dim_IntList(torch.ops.aten.exp.default(shifted), [dim], True)
    )
    return torch.ops.aten.sub.Tensor(shifted, lse)


def decomposition_table() -> dict[Any, Any]:
    """torch-mlir's FX decomposition table plus this project's float32-preserving ones."""
    from torch_mlir.extras.fx_decomp_util import get_decomposition_table

    table = dict(get_decomposition_table())
    table[torch.ops.aten.var_mean.correction] = _var_mean_same_dtype
    table[torch.ops.aten.var.correction] = _var_same_dtype
    table[torch.ops.aten._softmax.default] = _softmax_single_pass_max
    table[torch.ops.aten._log_softmax.default] = _log_softmax_single_pass_max
    table.update(numerics_decompositions())  # eager's numbers where torch-mlir's lowering differs
    table.update(embedding_bag_decompositions())
    table.update(positive_dim_decompositions())
    return table
