"""Settings of the Triton backend, in one typed place.

Triton decides at kernel-definition time whether a `@triton.jit` function runs compiled
on a GPU or through its interpreter (numpy on the CPU), from the environment variable
`TRITON_INTERPRET`; older Triton versions read it once, when `triton` is imported. So
the variable must be set before `triton` is imported and before a generated
`kernels.py` is loaded. `prepare()` does that (on a machine without CUDA, or when asked
for the CPU) and is called by every entry point of this package before it imports
Triton; the generated `kernels.py` starts with the same few lines (`ENV_PREAMBLE`), so
it runs stand-alone too.

Environment variables read here (all optional):

- `TRITON_INTERPRET=1`: force the interpreter (also on a CUDA machine).
- `RDU_TRITON_AUTOTUNE=0`: use only the first (rdu-tiling-derived) config of each
  kernel's autotune space. Autotuning is always off under the interpreter.
- `RDU_TRITON_MAX_ROW`: the widest row (elements) that a fused row kernel (softmax,
  layer norm, RMS norm) keeps in registers; wider rows run as looped reductions.
- `RDU_TRITON_DOT_PRECISION`: `ieee` (default: fp32 matmuls as exact fp32, as PyTorch
  does by default) or `tf32`.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

#: The first lines of every generated kernels.py: pick the interpreter when no GPU is
#: present, before Triton is imported (see the module docstring).
ENV_PREAMBLE = """\
import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # no GPU: Triton's interpreter (CPU)

import triton  # noqa: E402
import triton.language as tl  # noqa: E402

_INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"
_AUTOTUNE = not _INTERPRET and os.environ.get("RDU_TRITON_AUTOTUNE", "1") != "0"
"""


#: TRITON_INTERPRET as the user set it (prepare() changes the variable afterwards)
_USER_INTERPRET = os.environ.get("TRITON_INTERPRET")


@dataclass(frozen=True)
class TritonSettings:
    """How generated kernels are built and run.

    Attributes:
        interpret: run through Triton's interpreter on the CPU (no GPU, or forced).
        autotune: search each kernel's small autotune space on first launch.
        max_row: widest row (elements, a power of two) a fused row kernel keeps whole.
        dot_precision: `tl.dot` input precision for fp32 operands (`ieee` or `tf32`).
    """

    interpret: bool
    autotune: bool
    max_row: int = 16384
    dot_precision: str = "ieee"

    @property
    def device(self) -> str:
        """The torch device tensors live on: `cuda`, or `cpu` under the interpreter."""
        return "cpu" if self.interpret else "cuda"


def _cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def prepare(device: str | None = None) -> TritonSettings:
    """Choose compiled GPU kernels or the interpreter, set `TRITON_INTERPRET` accordingly
    (before Triton is imported), and return the settings.

    Args:
        device: `"cuda"`, `"cpu"` or None (CUDA when available, else the interpreter).

    Raises:
        RuntimeError: `device="cuda"` on a machine without CUDA, or after Triton was
            imported in the other mode.
    """
    want_cpu = device == "cpu" or (device is None and not _cuda_available())
    if device == "cuda" and not _cuda_available():
        raise RuntimeError("device 'cuda' requested but torch sees no CUDA device")
    forced = _USER_INTERPRET == "1" and device != "cuda"  # the user's choice, not an earlier prepare()
    interpret = want_cpu or forced
    if interpret:
        os.environ["TRITON_INTERPRET"] = "1"
    elif "TRITON_INTERPRET" in os.environ:
        os.environ["TRITON_INTERPRET"] = "0"
    if "triton" in sys.modules:
        try:  # Triton >= 3.4 reads the variable at each @triton.jit; keep its knob in step
            from triton import knobs

            knobs.runtime.interpret = interpret
        except (ImportError, AttributeError):  # pragma: no cover - older Triton
            pass
    max_row = int(os.environ.get("RDU_TRITON_MAX_ROW", "16384"))
    if max_row < 1 or max_row & (max_row - 1):
        raise RuntimeError(f"RDU_TRITON_MAX_ROW must be a power of two, got {max_row}")
    precision = os.environ.get("RDU_TRITON_DOT_PRECISION", "ieee")
    if precision not in ("ieee", "tf32"):
        raise RuntimeError(f"RDU_TRITON_DOT_PRECISION must be 'ieee' or 'tf32', got {precision!r}")
    autotune = not interpret and os.environ.get("RDU_TRITON_AUTOTUNE", "1") != "0"
    return TritonSettings(interpret=interpret, autotune=autotune, max_row=max_row, dot_precision=precision)


@contextlib.contextmanager
def interpret_mode(interpret: bool) -> Iterator[None]:
    """Within the block, `@triton.jit` defines interpreted (True) or compiled (False) kernels;
    the environment variable and Triton's knob are restored afterwards."""
    saved_env = os.environ.get("TRITON_INTERPRET")
    knobs: Any = None
    saved_knob: Any = None
    if "triton" in sys.modules:
        try:
            from triton import knobs as _knobs

            knobs = _knobs
            saved_knob = knobs.runtime.__dict__.get("interpret")
            knobs.runtime.interpret = interpret
        except (ImportError, AttributeError):  # pragma: no cover - older Triton
            knobs = None
    os.environ["TRITON_INTERPRET"] = "1" if interpret else "0"
    try:
        yield
    finally:
        if saved_env is None:
            os.environ.pop("TRITON_INTERPRET", None)
        else:
            os.environ["TRITON_INTERPRET"] = saved_env
        if knobs is not None:
            if saved_knob is None:
                knobs.runtime.__dict__.pop("interpret", None)
            else:
                knobs.runtime.interpret = saved_knob


def generation_defaults() -> TritonSettings:
    """Settings that shape the generated source (no device decision, Triton not imported)."""
    max_row = int(os.environ.get("RDU_TRITON_MAX_ROW", "16384"))
    precision = os.environ.get("RDU_TRITON_DOT_PRECISION", "ieee")
    return TritonSettings(interpret=False, autotune=True, max_row=max_row, dot_precision=precision)
