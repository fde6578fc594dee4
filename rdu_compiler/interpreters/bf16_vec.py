"""bf16 element-wise arithmetic and f32 -> bf16 rounding on torch's vectorised CPU loops.

numpy has no bf16 type of its own: ml_dtypes' ufunc loops widen each element to f32, apply
the op and round back, one element at a time (add, subtract, multiply: ~1.0 ns an element
here; divide ~1.8 ns; the f32 -> bf16 cast ~0.56 ns). torch's CPU kernels do the same
arithmetic 16 lanes at a time (add ~0.2 ns, divide ~0.2 ns, the cast ~0.22 ns; Intel Xeon,
one thread, 2026-12-04; docs/benchmarks.md, emulator speed). torch is a dependency
already (`sgemm.py`); this module hands it tiles only, never the model's graph.

The bits are ml_dtypes'. Each op is one f32 operation on the two widened (exact) values,
then one round-to-nearest-even to bf16, in both libraries: torch's `cvtfp32_bf16` and
ml_dtypes' cast are the same rounding on every non-NaN f32, subnormals included (no flush
on either side). Where the two differ is NaN: torch writes one NaN pattern (0xffff from
the vector loop, 0x7fc0 from the scalar one), ml_dtypes keeps the f32 NaN's sign and top
payload bits. So a result that holds a NaN has those elements recomputed by ml_dtypes
(`_mend`), and the whole result has ml_dtypes' bits. `testsuite/unit/test_bf16_vec.py`
checks every op against ml_dtypes on every bf16 value against a spread of others (array
and scalar operands: torch has a scalar-operand loop of its own), NaNs and infinities
included; `scripts/check_bf16_vec.py` checks all 2^32 operand pairs of each op and every
f32 bit pattern of the cast (run 2026-12-04: no difference).

What is left to numpy: other ops and dtypes, arrays below `MIN_ELEMENTS` / `MIN_CAST_ELEMENTS`
(torch's call costs ~8 us more than numpy's), operands that are not numpy arrays or scalars of bf16,
negative strides, and an `out` array torch cannot write through (not writeable). numpy's
floating-point warnings (overflow, invalid) are not raised on the torch path.

Threads: torch runs a large op on `torch.get_num_threads()` threads (the same bits: each
element is computed alone). A forked child sets torch to one thread before its first op
(libgomp hangs in a forked child whose parent ran a parallel region; `onednn.py` does the
same). `RDU_BF16_ELEMENTWISE=numpy` switches the module off (every op through ml_dtypes).
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np

from rdu_compiler.interpreters import onednn
from rdu_compiler.interpreters.bf16 import BF16

F32 = np.dtype(np.float32)

#: Arrays below this many elements stay on ml_dtypes. torch's call costs ~8 us more than
#: numpy's (two views, the dispatch, the NaN check) [measured 2026-12-04, one thread, best of
#: 7: an add of 8,192 elements took 9.1 us through ml_dtypes and 11.1 through torch; 16,384:
#: 17.9 and 13.0; 65,536: 70.9 and 24.2].
MIN_ELEMENTS = 16384

#: The same for the f32 -> bf16 cast, cheaper in ml_dtypes [same run: 16,384 elements 7.1 us
#: through ml_dtypes, 10.3 through torch; 65,536: 27.3 and 17.9].
MIN_CAST_ELEMENTS = 32768

#: The ufuncs with a torch loop here.
UFUNCS = frozenset({np.add, np.subtract, np.multiply, np.divide})

_STATE: dict[str, Any] = {}


def _torch() -> Any:
    """torch, with the op table, or None when switched off."""
    pid = os.getpid()
    if _STATE.get("pid") != pid:
        torch = None
        if os.environ.get("RDU_BF16_ELEMENTWISE", "torch") != "numpy":
            import torch

            if onednn.in_forked_child():
                torch.set_num_threads(1)
            _STATE["ops"] = {np.add: torch.add, np.subtract: torch.sub, np.multiply: torch.mul, np.divide: torch.div}
        _STATE.update(pid=pid, torch=torch)
    return _STATE["torch"]


def available() -> bool:
    """Whether bf16 element-wise ops go through torch in this process."""
    return _torch() is not None


def _tensor(torch: Any, x: np.ndarray) -> Any:
    """A torch view of bf16 or f32 array `x` (bf16 as int16 bits, then viewed back)."""
    if x.dtype == BF16:
        x = x.view(np.int16)
        if x.flags.writeable:
            return torch.from_numpy(x).view(torch.bfloat16)
        with warnings.catch_warnings():  # a broadcast or mmap'd view: torch warns, and only reads it
            warnings.simplefilter("ignore", UserWarning)
            return torch.from_numpy(x).view(torch.bfloat16)
    if x.flags.writeable:
        return torch.from_numpy(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(x)


def _viewable(x: Any) -> bool:
    """A numpy array torch can view: no negative stride, every stride whole elements."""
    return type(x) is np.ndarray and min(x.strides, default=0) >= 0 and all(st % x.itemsize == 0 for st in x.strides)


def _mend(r: np.ndarray, fn: Any, args: tuple[Any, ...]) -> np.ndarray:
    """r with each NaN element recomputed by `fn` (ml_dtypes' NaN bits); r is written."""
    bits = r.view(np.uint16)
    # NaN: bits 0x7f81-0x7fff (max of the int16 reading) or 0xff81-0xffff (of the uint16
    # one); two reductions cost less than one masked pass
    if bits.view(np.int16).max(initial=0) > 0x7F80 or bits.max(initial=0) > 0xFF80:
        nan = (bits & 0x7FFF) > 0x7F80
        full = [np.broadcast_to(np.asarray(x), r.shape)[nan] for x in args]
        with np.errstate(all="ignore"):
            r[nan] = fn(*full)
    return r


def binary(uf: np.ufunc, x: Any, y: Any) -> np.ndarray | None:
    """`uf(x, y)` for bf16 x and y (arrays or 0-d scalars, broadcasting as numpy does) with
    ml_dtypes' bits, a new array, on torch's loop; None when it does not apply (the caller
    calls `uf` itself). `uf`: np.add, np.subtract, np.multiply or np.divide. (No `out=`:
    a NaN element is recomputed from the operands, which an in-place op would overwrite.)"""
    torch = _torch()
    if torch is None:
        return None
    fn = _STATE["ops"].get(uf)
    if fn is None:
        return None
    if type(x) is not np.ndarray:
        x = np.asarray(x) if isinstance(x, np.generic) else x
    if type(y) is not np.ndarray:
        y = np.asarray(y) if isinstance(y, np.generic) else y
    if not (_viewable(x) and _viewable(y)) or x.dtype != BF16 or y.dtype != BF16:
        return None
    if max(x.size, y.size) < MIN_ELEMENTS:
        return None
    np.broadcast_shapes(x.shape, y.shape)  # numpy's error for operands that do not broadcast
    r = fn(_tensor(torch, x), _tensor(torch, y)).view(torch.int16).numpy().view(BF16)
    return _mend(r, uf, (x, y))


def to_bf16(x: Any, out: np.ndarray | None = None) -> np.ndarray | None:
    """f32 array `x` rounded to bf16 (round-to-nearest-even, ml_dtypes' bits, NaNs
    included), a new array or written into `out` (bf16, x's shape); None when it does not
    apply (the caller casts with numpy)."""
    if type(x) is not np.ndarray or x.dtype != F32 or x.size < MIN_CAST_ELEMENTS or not _viewable(x):
        return None
    torch = _torch()
    if torch is None:
        return None
    if out is not None:
        if not (out.flags.writeable and out.dtype == BF16 and out.shape == x.shape and _viewable(out)
                and all(st for st, n in zip(out.strides, out.shape, strict=True) if n > 1)):  # no element written twice
            return None
        _tensor(torch, out).copy_(_tensor(torch, x))
        r = out
    else:
        r = _tensor(torch, x).to(torch.bfloat16).view(torch.int16).numpy().view(BF16)
    return _mend(r, lambda v: v.astype(BF16), (x,))


def copyto(out: np.ndarray, x: np.ndarray) -> None:
    """`np.copyto(out, x, casting="unsafe")`, an f32 -> bf16 one on torch's loop where
    `to_bf16` applies (the same bits)."""
    if to_bf16(x, out=out) is None:
        np.copyto(out, x, casting="unsafe")
