"""Errors a user sees: each says what went wrong, where, and what to do."""

from __future__ import annotations

from xdsl.utils.exceptions import PassFailedException


class RduError(Exception):
    """Base class of every error this project raises on purpose (exit code 2 in the CLIs)."""


class CompileError(RduError, PassFailedException):
    """A pass refused the program (an xDSL pass failure, so `rdu-opt --verify-diagnostics` prints it).

    Attributes:
        pass_name: the pass that refused (`rdu-convert-linalg`, ...).
        reproducer: path of the pass's input IR, written by the driver, or None.
    """

    def __init__(self, pass_name: str, message: str):
        super().__init__(message)
        self.pass_name = pass_name
        self.message = message
        self.reproducer: str | None = None

    def __str__(self) -> str:
        text = f"{self.pass_name}: {self.message}"
        if self.reproducer:
            # the pass's input may hold ops xDSL does not register (linalg.batch_matmul, tm_tensor)
            text += f"\nReproduce with: rdu-opt {self.reproducer} -p '{self.pass_name}' --allow-unregistered-dialect"
        return text


class EmulatorError(RduError):
    """The emulator refused the program (capacity rule broken, unsupported payload op)."""
