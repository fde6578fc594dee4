"""Source locations and short summaries for frontend and runtime error messages (torch-free).

The torch path records, per op of `@main`, the model line it comes from
(`ImportedProgram.op_nodes`, from torch-mlir's locations); `payload_op_lines` maps a kernel
an emulator error names ("kernel 'k5_map'", built from op #5) back to model lines. The ONNX
path records the ONNX node of each op; `add_source_location` appends either to a compiler
error that names an op or a kernel.
"""

from __future__ import annotations

import linecache
import os
import re
from typing import Any

__all__ = ["add_source_location", "fmt_where", "frame_where", "payload_op_lines", "summarize"]

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


#: torch ops behind a linalg-level op the compiler refuses (to name the model line).
_ATEN_BEHIND = {
    "tm_tensor.sort": ("aten.sort", "aten.topk", "aten.argsort", "aten.msort", "aten.median", "aten.kthvalue"),
    "tm_tensor.scatter": ("aten.scatter", "aten.scatter_add", "aten.scatter_reduce", "aten.index_put", "aten._index_put_impl", "aten.index_add"),
    "tm_tensor.attention": ("aten.scaled_dot_product_attention", "aten._scaled_dot_product_flash_attention"),
    "ml_program.global_load": (
        "aten.rand", "aten.rand_like", "aten.randn", "aten.randn_like", "aten.bernoulli", "aten.uniform",
        "aten.normal", "aten.randint", "aten.randint_like", "aten.randperm", "aten.dropout", "aten.native_dropout",
    ),
}


_OP_INDEX_RE = re.compile(r"op '([\w.]+)' \(op #(\d+) of @")
_KERNEL_RE = re.compile(r"kernel 'k(\d+)_")


def add_source_location(err: Any, imported: Any) -> Any:
    """Append where a refused op comes from to a compiler error: the ONNX node (by the op's
    position in the imported function), or for a PyTorch model the model line of the torch
    op behind it. Returns ``err`` (its message extended when a location is known)."""
    text = str(getattr(err, "message", err))
    where = None
    op_nodes = getattr(imported, "op_nodes", None)
    m = _OP_INDEX_RE.search(text)
    index = int(m.group(2)) if m else None
    if index is None:
        k = _KERNEL_RE.search(text)
        index = int(k.group(1)) if k else None
    if op_nodes and index is not None and 0 <= index < len(op_nodes) and op_nodes[index]:
        where = op_nodes[index]
    elif m and getattr(imported, "source_lines", None):
        for aten in _ATEN_BEHIND.get(m.group(1), ()):
            line = imported.source_lines.get(aten)
            if line:
                loc, _, code = line.partition(": ")
                where = f"{aten} at {loc}" + (f" `{code.strip()}`" if code.strip() else "")
                break
    if where and hasattr(err, "message") and where not in err.message:
        err.message = f"{err.message} [from {where}]"
        err.args = (err.message,)
    elif where and not hasattr(err, "message") and err.args:
        err.args = (f"{err.args[0]} [from {where}]",)
    return err
