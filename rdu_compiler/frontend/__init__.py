"""The frontends: a PyTorch module (:mod:`.torch`) or an ONNX model (:mod:`.onnx`) lowered to
linalg-on-tensors MLIR text through torch-mlir, with the weights kept apart.

Shared, torch-free: :mod:`.program` (``ImportedProgram``), :mod:`.weights` (safetensors
files), :mod:`.locations` (model lines / ONNX nodes in error messages), :mod:`.lower_server`
(the torch-mlir child process both frontends lower in), :mod:`.errors`.

The names below are imported lazily, so ``from rdu_compiler.frontend import FrontendError``
loads neither torch nor torch-mlir.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rdu_compiler.frontend.errors import FrontendError

if TYPE_CHECKING:
    from rdu_compiler.frontend.program import ImportedProgram
    from rdu_compiler.frontend.torch.export import import_torch
    from rdu_compiler.frontend.torch.model_file import load_model_file
    from rdu_compiler.frontend.weights import load_weights, save_weights

__all__ = [
    "FrontendError",
    "ImportedProgram",
    "import_torch",
    "load_model_file",
    "load_weights",
    "save_weights",
]

_LAZY = {
    "ImportedProgram": "rdu_compiler.frontend.program",
    "import_torch": "rdu_compiler.frontend.torch.export",
    "load_model_file": "rdu_compiler.frontend.torch.model_file",
    "load_weights": "rdu_compiler.frontend.weights",
    "save_weights": "rdu_compiler.frontend.weights",
}


def __getattr__(name: str) -> Any:
    """Import the names of :data:`__all__` on first use (keeps torch/torch-mlir out of plain imports)."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
