"""Run torch-mlir lowering in a child process, so that a native crash becomes an error.

torch-mlir is C++: an unsupported corner of an op can end in a segfault or an LLVM fatal
error that would kill the user's process without a word. Both frontends (torch and ONNX)
therefore run their torch-mlir pass pipelines through :func:`call_isolated`, which calls a
module-level function by name in a long-lived child Python process (started on first use,
reused across calls, restarted after it dies) and returns what it returned, re-raises what
it raised, or returns a :class:`Died` describing how the child ended.

Protocol: length-prefixed pickles over the child's stdin/stdout; the child's stderr goes to
a temporary file whose new text is handed back in :class:`Died`. A function may write
progress lines ``rdu-lower: <text>`` to stderr (see :func:`progress`) so that the caller
knows what the child was doing when it died.

Environment: ``RDU_LOWER_IN_PROCESS=1`` (or the older ``RDU_ONNX_IN_PROCESS=1``) runs the
function in the calling process instead (used inside the child itself).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any

__all__ = ["Died", "call_isolated", "in_process", "lowering_timeout_s", "prestart", "progress", "progress_lines"]

_PROGRESS = "rdu-lower: "


def in_process() -> bool:
    """Whether lowering runs in this process (the child, or ``RDU_LOWER_IN_PROCESS=1``)."""
    return bool(os.environ.get("RDU_LOWER_IN_PROCESS") or os.environ.get("RDU_ONNX_IN_PROCESS"))


def lowering_timeout_s(default: float = 300.0) -> float:
    """Seconds one lowering may take before the child counts as hung and is stopped.

    ``RDU_LOWERING_TIMEOUT`` (or the older ``RDU_ONNX_LOWERING_TIMEOUT``) overrides ``default``.

    Raises:
        FrontendError: the variable is not a number of seconds > 0.
    """
    name = "RDU_LOWERING_TIMEOUT" if os.environ.get("RDU_LOWERING_TIMEOUT") else "RDU_ONNX_LOWERING_TIMEOUT"
    value = os.environ.get(name)
    if not value:
        return default
    try:
        seconds = float(value)
    except ValueError:
        seconds = float("nan")
    if not seconds > 0:
        from rdu_compiler.frontend.errors import FrontendError

        raise FrontendError(f"{name}={value!r} is not a number of seconds > 0; set it to e.g. 600, or unset it")
    return seconds


def progress(text: str) -> None:
    """Note on stderr what the lowering is about to do (read back by :func:`progress_lines`
    after a crash). Does nothing outside the child."""
    if os.environ.get("RDU_LOWER_CHILD"):
        sys.stderr.write(_PROGRESS + text.replace("\n", " ") + "\n")
        sys.stderr.flush()


def progress_lines(stderr: str) -> list[str]:
    """The :func:`progress` notes found in a dead child's ``stderr``, in order."""
    return [ln[len(_PROGRESS):].strip() for ln in stderr.splitlines() if ln.startswith(_PROGRESS)]


@dataclass(frozen=True)
class Died:
    """The child ended without answering.

    Attributes:
        how: 'signal SIGSEGV', 'exit code 1', or 'no result after 300 s, stopped'.
        stderr: what the child wrote to stderr during this call.
        timed_out: the child was stopped after the timeout.
    """

    how: str
    stderr: str
    timed_out: bool = False


def prestart() -> None:
    """Start the lowering child now (it imports torch-mlir while the caller exports)."""
    if not in_process():
        _Server.get()


def call_isolated(module: str, function: str, *args: Any, timeout_s: float | None = None) -> Any:
    """``module.function(*args)`` in the lowering child; its result, or a :class:`Died`.

    Args:
        module, function: a module-level function importable in a fresh interpreter.
        args: picklable arguments.
        timeout_s: seconds before the child counts as hung (default :func:`lowering_timeout_s`).

    Returns:
        The function's (picklable) result, or a :class:`Died` if the child crashed or hung.

    Raises:
        Whatever the function raised (re-raised here when it pickles and unpickles;
        otherwise a RuntimeError carrying its type and message). An interrupt
        (KeyboardInterrupt, a signal turned into an exception) while waiting stops the
        child, so the next call starts a fresh one and never reads this call's answer.
    """
    import importlib

    if in_process():
        return getattr(importlib.import_module(module), function)(*args)
    import pickle

    server = _Server.get()
    timeout = timeout_s if timeout_s is not None else lowering_timeout_s()
    kind, payload = server.call(pickle.dumps((module, function, args)), timeout)
    if kind == "ok":
        return payload
    if kind == "raised":
        raise payload
    return payload  # a Died


class _Server:
    """A child Python process that runs requested functions, restarted after it dies. One
    per process (a forked child gets its own)."""

    _current: _Server | None = None

    def __init__(self) -> None:
        import subprocess
        import tempfile

        self.pid = os.getpid()
        self.stderr = tempfile.TemporaryFile()
        code = "from rdu_compiler.frontend.lower_server import _die_with_parent, _serve; _die_with_parent(); _serve()"
        env = {**os.environ, "RDU_LOWER_IN_PROCESS": "1", "RDU_ONNX_IN_PROCESS": "1", "RDU_LOWER_CHILD": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self.stderr, env=env, bufsize=0,
        )

    @classmethod
    def get(cls) -> _Server:
        cur = cls._current
        if cur is None or cur.pid != os.getpid() or cur.proc.poll() is not None:
            if cur is not None and cur.pid == os.getpid():
                cur.close()
            cls._current = cur = cls()
        return cur

    def call(self, request: bytes, timeout_s: float) -> tuple[str, Any]:
        """Send one request; ("ok", result), ("raised", exception) or ("died", Died)."""
        start = self.stderr.seek(0, 2)
        try:
            return self._call(request, timeout_s, start)
        except BaseException:  # an interrupt mid-call: its answer must never reach the next call
            self.proc.kill()
            self.proc.wait()
            self.close()
            _Server._current = None
            raise

    def _call(self, request: bytes, timeout_s: float, start: int) -> tuple[str, Any]:
        import pickle
        import signal
        import struct

        timed_out = False
        try:
            assert self.proc.stdin is not None and self.proc.stdout is not None
            self.proc.stdin.write(struct.pack("<Q", len(request)) + request)
            self.proc.stdin.flush()
            head = self._read(8, timeout_s)
            if head is None:
                timed_out = True
            elif len(head) == 8:
                (n,) = struct.unpack("<Q", head)
                body = self._read(n, timeout_s)
                if body is not None and len(body) == n:
                    return pickle.loads(body)  # type: ignore[no-any-return]
                timed_out = body is None
        except (BrokenPipeError, OSError):
            pass
        if timed_out:
            self.proc.kill()
        code = self.proc.wait()
        if timed_out:
            how = f"no result after {timeout_s:.0f} s, stopped"
        else:
            how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
        self.stderr.seek(start)
        text = self.stderr.read().decode(errors="replace")
        self.close()
        _Server._current = None
        return "died", Died(how, text, timed_out)

    def _read(self, n: int, timeout_s: float) -> bytes | None:
        """``n`` bytes from the child (fewer at EOF), or None after ``timeout_s``."""
        import select
        import time

        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout_s
        chunks: list[bytes] = []
        got = 0
        while got < n:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, min(n - got, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                assert self.proc.stdin is not None
                self.proc.stdin.close()
                self.proc.wait(timeout=5)
        except Exception:  # noqa: BLE001 - best effort
            self.proc.kill()
            self.proc.wait()
        self.stderr.close()


def _die_with_parent() -> None:
    """In the child (Linux): SIGKILL it when the parent dies, so a killed compile leaves no
    lowering running on. Elsewhere, or if the parent died before this ran, the child ends
    at its next read of the request pipe (EOF)."""
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - not Linux: best effort
        pass


def _serve() -> None:
    """The child: read requests from stdin, answer on (the original) stdout."""
    import importlib
    import pickle
    import struct

    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # stray prints go to stderr, not into the protocol
    inp = sys.stdin.buffer
    import torch_mlir.ir  # noqa: F401 - loaded once, before the first request
    import torch_mlir.passmanager  # noqa: F401

    while True:
        head = inp.read(8)
        if len(head) < 8:
            return
        (n,) = struct.unpack("<Q", head)
        module, function, args = pickle.loads(inp.read(n))
        try:
            result: Any = ("ok", getattr(importlib.import_module(module), function)(*args))
        except Exception as e:  # noqa: BLE001 - re-raised by the caller
            result = ("raised", e)
        try:
            data = pickle.dumps(result)
            pickle.loads(data)  # an exception whose __init__ takes other arguments fails here
        except Exception:  # noqa: BLE001 - an unpicklable (or un-unpicklable) result or exception
            exc = result[1] if result[0] == "raised" else None
            text = f"{type(exc).__name__}: {exc}" if exc is not None else "unpicklable result"
            data = pickle.dumps(("raised", RuntimeError(text)))
        out.write(struct.pack("<Q", len(data)) + data)
        out.flush()
