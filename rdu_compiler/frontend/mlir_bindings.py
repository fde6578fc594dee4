"""torch-mlir's Python bindings as the frontends use them, typed ``Any``.

torch-mlir's native extension (``torch_mlir._mlir_libs._mlir``) comes with a ``py.typed``
folder that holds stubs for two dialects only, so a type checker finds no ``ir.Context``,
``ir.MLIRError`` or ``PassManager`` behind the star imports of ``torch_mlir.ir`` and
``torch_mlir.passmanager``. These accessors import the real modules (lazily: only the
lowering child and the importers load torch-mlir) and say what they are to a checker:
untyped.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["ir", "pass_manager"]


def ir() -> Any:
    """The module ``torch_mlir.ir`` (Context, Module, Location, attributes, MLIRError)."""
    return importlib.import_module("torch_mlir.ir")


def pass_manager() -> Any:
    """The class ``torch_mlir.passmanager.PassManager``."""
    return importlib.import_module("torch_mlir.passmanager").PassManager
