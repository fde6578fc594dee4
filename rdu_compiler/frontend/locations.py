"""Model source lines of the ops of a torch-mlir function, for runtime error messages.

torch-mlir's FX importer gives each op the location of the FX node it came from
(`loc("/path/model.py":12:0)`); `op_locations` reads them per op of `@main`, in order,
so that "kernel 'k5_map'" (the kernel built from op #5) can be traced to a model line.
"""

from __future__ import annotations

import linecache
import os
import re
from typing import Any

_FILE_LINE = re.compile(r'"([^"]+)":(\d+):\d+')


def op_locations(module: Any) -> list[str]:
    """Per op of the first `func.func` of a torch-mlir `module`: 'model.py:12 `code`', or ''
    where the location names no file (constants, unknown)."""
    for fn in module.operation.regions[0].blocks[0].operations:
        if fn.operation.name != "func.func":
            continue
        return [_where(str(op.location)) for op in fn.regions[0].blocks[0].operations]
    return []


def _where(loc: str) -> str:
    m = _FILE_LINE.search(loc)
    if m is None:
        return ""
    path, line = m.group(1), int(m.group(2))
    code = linecache.getline(path, line).strip()
    where = f"{os.path.basename(path)}:{line}"
    return f"model line {where} `{code}`" if code else f"model line {where}"


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
    lines = [op_nodes[i] for i in holders if i < len(op_nodes) and op_nodes[i]]
    return list(dict.fromkeys(lines))
