"""Source locations and short summaries for frontend and runtime error messages (torch-free).

The torch path records, per op of `@main`, the model line it comes from
(`ImportedProgram.op_nodes`, from torch-mlir's locations); `payload_op_lines` maps a kernel
an emulator error names ("kernel 'k5_map'", built from op #5) back to model lines.
"""

from __future__ import annotations

import linecache
import os
import re

__all__ = ["fmt_where", "frame_where", "payload_op_lines", "summarize"]

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


def _model_line(where: str) -> str:
    return where if where.startswith(("model line", "ONNX node")) else f"model line {where}"


def payload_op_lines(linalg_text: str, kernel_index: int, payload_op: str, op_nodes: list[str]) -> list[str]:
    """Model lines of the ops of `@main` in `linalg_text` that could hold `payload_op` (e.g.
    'arith.divsi') of kernel `k<kernel_index>`: that op itself when it holds one, else the
    earlier ops holding one (fusion keeps the consumer's number for producers fused into it)."""
    from rdu_compiler.ir import op_name, parse_module

    module = parse_module(linalg_text, "linalg")
    fn = next(op for op in module.ops if op_name(op) == "func.func")
    holders = [
        i for i, op in enumerate(fn.regions[0].block.ops)
        if i <= kernel_index and any(op_name(inner) == payload_op for inner in op.walk())
    ]
    if kernel_index in holders:
        holders = [kernel_index]
    lines = [_model_line(op_nodes[i]) for i in holders if i < len(op_nodes) and op_nodes[i]]
    return list(dict.fromkeys(lines))
