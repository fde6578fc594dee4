"""Source locations and short summaries for frontend error messages (torch-free)."""

from __future__ import annotations

import linecache
import os
import re

__all__ = ["fmt_where", "frame_where", "summarize"]

_MAX_SUMMARY_CHARS = 400


def frame_where(filename: str, lineno: int, code: str | None = None) -> str:
    """'file.py:123: code' for one source location (code read from the file when absent)."""
    if code is None:
        code = linecache.getline(filename, lineno).strip()
    where = f"{os.path.basename(filename)}:{lineno}"
    return f"{where}: {code}" if code else where


def fmt_where(where: str) -> str:
    """'file.py:12: code' -> 'file.py:12 `code`' for use inside a sentence."""
    loc, sep, code = where.partition(": ")
    return f"{loc} `{code.strip()}`" if sep and code.strip() else loc


def summarize(exc: BaseException, limit: int = _MAX_SUMMARY_CHARS) -> str:
    """The first meaningful line of an exception message, shortened, as 'Type: message'."""
    text = str(exc).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    first = lines[0] if lines else ""
    first = re.split(r"\s+\((?:unhinted|Size-like symbols):", first)[0]
    first = re.sub(r"\s+", " ", first).strip()
    if len(first) > limit:
        first = first[: limit - 3].rstrip() + "..."
    name = type(exc).__name__
    return f"{name}: {first}" if first else name
