"""Where a PyTorch model's ops come from (the model line in an FX node's stack trace) and the
one-paragraph errors for torch.export and torch-mlir's FX importer failures.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import traceback
import warnings
from collections.abc import Iterable, Iterator
from typing import Any

import torch

from rdu_compiler.frontend.errors import FrontendError
from rdu_compiler.frontend.locations import fmt_where, frame_where, summarize
from rdu_compiler.frontend.torch.lower import op_from_diagnostics

FRAME_RE = re.compile(r'File "([^"]+)", line (\d+), in [^\n]*\n([^\n]*)')


def is_library_frame(filename: str) -> bool:
    """True for frames inside torch / torch_mlir themselves (not the model's code)."""
    norm = filename.replace("\\", "/")
    return any(
        f"/{pkg}/" in norm for pkg in ("torch", "torch_mlir", "functorch", "torchgen")
    ) or norm.startswith("<")


def user_frame(stack_trace: str | None) -> str | None:
    """The innermost non-torch frame of an FX ``stack_trace``, as 'file.py:N: code'."""
    if not stack_trace:
        return None
    frames = FRAME_RE.findall(stack_trace)
    for filename, lineno, code in reversed(frames):
        if not is_library_frame(filename):
            return frame_where(filename, int(lineno), code.strip() or None)
    return None


def aten_name(target: Any) -> str | None:
    """'aten.gelu' for ``torch.ops.aten.gelu.default`` (None for non-op targets)."""
    schema = getattr(target, "_schema", None)
    if schema is None:
        return None
    ns, _, name = schema.name.partition("::")
    return f"{ns}.{name}" if name else None


def collect_source_lines(graphs: Iterable[torch.fx.Graph]) -> dict[str, str]:
    """aten op name -> first user source line among the call_function nodes of ``graphs``."""
    out: dict[str, str] = {}
    for g in graphs:
        for node in g.nodes:
            if node.op != "call_function":
                continue
            name = aten_name(node.target)
            if name is None or name in out:
                continue
            where = user_frame(node.meta.get("stack_trace"))
            if where:
                out[name] = where
    return out


def export_error(exc: BaseException, module: torch.nn.Module) -> FrontendError:
    """Turn a torch.export failure into a one-paragraph FrontendError."""
    text = str(exc)
    # Where in the user's code: innermost non-torch frame of the Python traceback (non-strict
    # export runs forward() eagerly), else the last non-torch 'File "...", line N' in the text.
    where: str | None = None
    for fs in traceback.extract_tb(exc.__traceback__):
        if not is_library_frame(fs.filename):
            where = frame_where(fs.filename, fs.lineno or 0, fs.line)
    if where is None or "rdu_compiler/frontend" in where:
        where = None
        for filename, lineno, code in FRAME_RE.findall(text):
            if not is_library_frame(filename):
                where = frame_where(filename, int(lineno), code.strip() or None)
    at = f" at {fmt_where(where)}" if where else ""
    name = type(module).__name__
    data_dependent = (
        "data-dependent" in text
        or "data dependent" in text
        or "GuardOnDataDependentSymNode" in type(exc).__name__
        or "DataDependent" in type(exc).__name__
    )
    if data_dependent:
        return FrontendError(
            f"torch.export could not trace {name}{at}: the Python control flow depends on "
            f"tensor values ({summarize(exc, 200)}). A compiled graph must have the same "
            "operations for every input: replace the branch with torch.where(...) (or "
            "torch.cond), or make it depend only on tensor shapes or Python constants."
        )
    return FrontendError(
        f"torch.export could not export {name}{at}: {summarize(exc)}. Make "
        "`torch.export.export(model, example_inputs)` succeed on the model first (see "
        "https://pytorch.org/docs/stable/export.html); common fixes are calling model.eval(), "
        "removing Python side effects and data-dependent branches from forward()."
    )


@contextlib.contextmanager
def quiet_torch_warnings() -> Iterator[None]:
    """Silence torch's internal noise during export: pytree deprecation warnings, and the
    log records and stderr prints (partial graph dumps, symbolic-shape warnings) torch emits
    before raising an error that this module reports itself as a FrontendError."""
    loggers = [logging.getLogger("torch")] + [
        logging.getLogger(name)
        for name in list(logging.root.manager.loggerDict)
        if name.startswith("torch.") or name.startswith("torch_mlir")
    ]
    saved = [(lg, lg.level, lg.propagate, lg.disabled) for lg in loggers]
    for lg in loggers:
        lg.disabled = True
    try:
        # torch.export print()s the partial graph of a failed trace to stderr.
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
            warnings.filterwarnings("ignore", category=FutureWarning, message=".*LeafSpec.*")
            yield
    finally:
        for lg, level, propagate, disabled in saved:
            lg.setLevel(level)
            lg.propagate = propagate
            lg.disabled = disabled


def effect_error(
    graph: torch.fx.Graph, source_lines: dict[str, str], model_name: str
) -> FrontendError:
    """FrontendError for a graph that threads effect tokens (side-effecting ops)."""
    op = None
    for node in graph.nodes:
        if node.op == "call_function" and "with_effects" in str(node.target):
            inner = node.args[1] if len(node.args) > 1 else None
            op = aten_name(inner) or str(inner)
            break
    where = source_lines.get(op) if op else None
    at = f" (called at {fmt_where(where)})" if where else ""
    what = f"op '{op}'{at}" if op else "an op"
    return FrontendError(
        f"{model_name} uses {what} with side effects (torch.export threads it with an effect "
        "token; e.g. torch.linalg.inv / cholesky run error checks, print/logging ops), which "
        "a dataflow graph cannot express. Use the *_ex variants (torch.linalg.inv_ex, "
        "cholesky_ex) or remove the side effect from forward()."
    )


def import_failure(
    exc: BaseException, graph: torch.fx.Graph, source_lines: dict[str, str], model_name: str
) -> FrontendError:
    """FrontendError for a failure inside torch-mlir's FX importer (names the op if it can)."""
    text = str(exc)
    op = None
    for node in graph.nodes:
        name = aten_name(node.target) if node.op == "call_function" else None
        if name and (name in text or name.replace("aten.", "aten::") in text):
            op = name
            break
    if op is None:
        op = op_from_diagnostics(text)
    where = source_lines.get(op) if op else None
    at = f" (called at {fmt_where(where)})" if where else ""
    what = f" op '{op}'{at} of" if op else ""
    return FrontendError(
        f"torch-mlir's FX importer cannot import{what} {model_name}: {summarize(exc)}. "
        "Unsupported dtypes (complex, float8, quantized) and ops returning non-tensor values "
        "are the usual causes; rewrite that part of the model with supported tensor ops."
    )
