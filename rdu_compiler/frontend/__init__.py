"""PyTorch frontend: load a ``model.py``, export it with torch.export, lower it to
linalg-on-tensors MLIR text through torch-mlir, and save/load its weights.

``rdu_compiler.frontend.torch_import`` (with ``torch_lower``, which runs torch-mlir's
pipelines in a child process) imports torch_mlir; it is imported lazily here, so ``from rdu_compiler.frontend import FrontendError``
does not load torch-mlir.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rdu_compiler.frontend.errors import FrontendError

if TYPE_CHECKING:
    from rdu_compiler.frontend.torch_import import (
        ImportedProgram,
        import_torch,
        load_model_file,
        load_weights,
        save_weights,
    )

__all__ = [
    "FrontendError",
    "ImportedProgram",
    "import_torch",
    "load_model_file",
    "load_weights",
    "save_weights",
]

_LAZY = {"ImportedProgram", "import_torch", "load_model_file", "load_weights", "save_weights"}


def __getattr__(name: str) -> Any:
    """Import the torch_import names on first use (keeps torch/torch-mlir out of plain imports)."""
    if name in _LAZY:
        from rdu_compiler.frontend import torch_import

        return getattr(torch_import, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
