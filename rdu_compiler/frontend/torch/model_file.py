"""Loading a ``model.py``: its ``model`` and ``example_inputs`` (or ``get_model()``), with errors
that name the line of the file that failed.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import traceback
import uuid
from pathlib import Path
from typing import Any

import torch

from rdu_compiler.frontend.errors import FrontendError
from rdu_compiler.frontend.locations import fmt_where, frame_where, summarize


def _last_frame_in(exc: BaseException, path: Path) -> str | None:
    """The innermost traceback frame of ``exc`` inside file ``path``, as 'file.py:N: code'."""
    target = os.path.realpath(path)
    found: str | None = None
    for fs in traceback.extract_tb(exc.__traceback__):
        if os.path.realpath(fs.filename) == target:
            found = frame_where(fs.filename, fs.lineno or 0, fs.line)
    return found


def load_model_file(path: str | os.PathLike[str]) -> tuple[torch.nn.Module, tuple[Any, ...]]:
    """Execute a ``model.py`` and return its ``(model, example_inputs)``.

    The file defines either ``model`` (an ``nn.Module``) and ``example_inputs`` (a tuple of
    tensors), or a function ``get_model()`` returning both. ``model``/``example_inputs``
    win when both forms are present. The file is executed as a fresh module each call.

    Raises:
        FrontendError: the file does not exist or is not a ``.py`` file; it has a syntax
            error; executing it (or ``get_model()``) raises; it defines no model; ``model``
            is not an ``nn.Module``; ``example_inputs`` is missing or not a tuple.
    """
    p = Path(path)
    if not p.exists():
        raise FrontendError(
            f"Model file '{p}' does not exist. Pass the path of a Python file that defines "
            "`model` (an nn.Module) and `example_inputs` (a tuple of tensors), or a function "
            "`get_model()` returning both."
        )
    if not p.is_file() or p.suffix != ".py":
        raise FrontendError(
            f"Model file '{p}' is not a Python (.py) file. Pass a model.py that defines "
            "`model` and `example_inputs`, or `get_model()`."
        )

    mod_name = f"_rdu_model_{p.stem}_{uuid.uuid4().hex[:8]}"
    spec = importlib.util.spec_from_file_location(mod_name, p)
    if spec is None or spec.loader is None:  # pragma: no cover - only for odd paths
        raise FrontendError(f"Cannot load '{p}' as a Python module.")
    module = importlib.util.module_from_spec(spec)
    # Make siblings of model.py importable (helper modules next to it).
    parent = str(p.resolve().parent)
    added = parent not in sys.path
    if added:
        sys.path.insert(0, parent)
    sys.modules[mod_name] = module
    try:
        try:
            spec.loader.exec_module(module)
        except SyntaxError as e:
            code = (e.text or "").strip()
            where = f"{p.name}:{e.lineno}" + (f": {code}" if code else "")
            raise FrontendError(
                f"Model file '{p}' has a syntax error at {where} ({e.msg}). Fix the file and "
                "run again."
            ) from None
        except FrontendError:
            raise
        except BaseException as e:  # noqa: BLE001 - anything the user's file raises
            if isinstance(e, KeyboardInterrupt):
                raise
            where = _last_frame_in(e, p)
            at = f" at {fmt_where(where)}" if where else ""
            hint = (
                " Install the missing package or fix the import."
                if isinstance(e, ImportError)
                else " Fix the file so that `python " + p.name + "` runs, then try again."
            )
            raise FrontendError(
                f"Executing model file '{p}' failed{at}: {summarize(e)}.{hint}"
            ) from None

        if hasattr(module, "model"):
            model = module.model
            if not hasattr(module, "example_inputs"):
                raise FrontendError(
                    f"Model file '{p}' defines `model` but no `example_inputs`. Add "
                    "`example_inputs = (tensor, ...)`: a tuple with one example tensor per "
                    "positional argument of model.forward."
                )
            example_inputs = module.example_inputs
        elif hasattr(module, "get_model"):
            get_model = module.get_model
            if not callable(get_model):
                raise FrontendError(f"`get_model` in '{p}' is not a function.")
            try:
                result = get_model()
            except BaseException as e:  # noqa: BLE001
                if isinstance(e, KeyboardInterrupt):
                    raise
                where = _last_frame_in(e, p)
                at = f" at {fmt_where(where)}" if where else ""
                raise FrontendError(
                    f"`get_model()` in model file '{p}' raised{at}: {summarize(e)}. Fix it "
                    "so that it returns `(model, example_inputs)`."
                ) from None
            if not (isinstance(result, tuple) and len(result) == 2):
                raise FrontendError(
                    f"`get_model()` in '{p}' must return a pair `(model, example_inputs)`, "
                    f"not {type(result).__name__}"
                    + (f" of length {len(result)}" if isinstance(result, tuple) else "")
                    + "."
                )
            model, example_inputs = result
        else:
            raise FrontendError(
                f"Model file '{p}' defines neither `model` (with `example_inputs`) nor "
                "`get_model()`. Add `model = MyModule().eval()` and `example_inputs = "
                "(torch.randn(...),)`, or a function `get_model()` returning both."
            )
    finally:
        if added:
            try:
                sys.path.remove(parent)
            except ValueError:  # pragma: no cover
                pass

    if not isinstance(model, torch.nn.Module):
        raise FrontendError(
            f"`model` in '{p}' is a {type(model).__name__}, not a torch.nn.Module. Wrap the "
            "computation in an nn.Module subclass."
        )
    if not isinstance(example_inputs, tuple):
        raise FrontendError(
            f"`example_inputs` in '{p}' is a {type(example_inputs).__name__}, not a tuple. Use "
            "a tuple with one entry per positional argument of model.forward, e.g. "
            "`example_inputs = (x,)`."
        )
    return model, example_inputs
