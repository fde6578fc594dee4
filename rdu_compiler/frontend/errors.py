"""Errors raised by the frontend (model loading, torch.export, torch-mlir lowering)."""

from __future__ import annotations

from rdu_compiler.errors import RduError

__all__ = ["FrontendError"]


class FrontendError(RduError):
    """A frontend failure, reported to the user as one paragraph.

    The message says what went wrong, where (the model file, the aten op, the model's
    source line when known) and what to do about it. It never contains a full traceback.
    """
