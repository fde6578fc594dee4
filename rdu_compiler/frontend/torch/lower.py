"""torch dialect -> linalg-on-tensors, with torch-mlir run in the lowering child process.

:func:`lower_to_linalg` takes the module torch-mlir's FX importer built (torch dialect,
one ``func.func @main``), prints it with its source locations, and runs torch-mlir's two
pipelines on the text in the child of :mod:`rdu_compiler.frontend.lower_server`. A pipeline error becomes a
FrontendError naming the aten op and the model line; a native crash (torch-mlir segfaults
on some ops, e.g. ``scatter_add`` with a negative ``dim``) or a hang becomes a
FrontendError too, after :func:`_crashing_op` has found the op: every op of the module
that crashed is put in a function of its own, and the functions are bisected by lowering
halves of them in the child until one op remains.

This module imports neither torch nor torch-mlir at module level (the child imports it).
"""

from __future__ import annotations

import re
from typing import Any

from rdu_compiler.frontend import mlir_bindings
from rdu_compiler.frontend.errors import FrontendError
from rdu_compiler.frontend.locations import fmt_where, frame_where, summarize

__all__ = ["PIPELINES", "lower_text", "lower_to_linalg", "op_from_diagnostics"]

#: (stage description, pass pipeline): torch-mlir's FX -> torch backend contract, then
#: backend contract -> linalg-on-tensors (as torch_mlir.compiler_utils.lower_mlir_module).
PIPELINES = (
    (
        "torch-backend lowering",
        "builtin.module(func.func(torch-match-quantized-custom-ops), "
        "torchdynamo-export-to-torch-backend-pipeline{ extra-library=})",
    ),
    (
        "linalg lowering",
        "builtin.module(torch-backend-to-linalg-on-tensors-backend-pipeline"
        "{allow-non-finites=True})",
    ),
)

#: Seconds the torch path's lowering may take before it counts as hung (full-size models
#: take minutes); ``RDU_LOWERING_TIMEOUT`` overrides it.
TORCH_LOWERING_TIMEOUT_S = 1800.0

_OP_IN_DIAG_RES = (
    # torch.operator "torch.aten.foo.overload" (an op torch-mlir has no definition for)
    re.compile(r'name = "torch\.((?:aten|prims)\.[\w.]+)"'),
    # failed to legalize operation 'torch.aten.foo'
    re.compile(r"'torch\.((?:aten|prims)\.[\w.]+)'"),
    # an op dump: "torch.aten.foo"(...)
    re.compile(r'"torch\.((?:aten|prims)\.[\w.]+)"'),
    re.compile(r"\btorch\.((?:aten|prims)\.[\w.]+)"),
)
_LOC_RE = re.compile(r'"([^"]+)":(\d+):\d+')
#: Ops that are cloned into an isolated op's function instead of becoming its arguments.
_CLONED = ("torch.constant.", "torch.prim.ListConstruct", "torch.vtensor.literal", "arith.constant")


def op_from_diagnostics(text: str) -> str | None:
    """The aten op ('aten.erfinv') that torch-mlir's diagnostics ``text`` complain about.

    Overload suffixes are dropped ('torch.aten.median.dim' -> 'aten.median') to match the
    keys of ``ImportedProgram.source_lines``.
    """
    for rx in _OP_IN_DIAG_RES:
        m = rx.search(text)
        if m:
            return ".".join(m.group(1).split(".")[:2])
    return None


def _short_diag(msg: str, limit: int = 200) -> str:
    """One diagnostic message without the op dump torch-mlir appends (': %1 = ...')."""
    msg = msg.strip().splitlines()[0] if msg.strip() else ""
    cut = re.search(r":\s+%[\w#:]+\s*=|:\s+\"", msg)
    if cut:
        msg = msg[: cut.start()]
    return msg if len(msg) <= limit else msg[: limit - 3] + "..."


def _diag_text(diag: Any) -> str:
    """An MLIR diagnostic's message with its notes appended."""
    msg = str(diag.message)
    for note in getattr(diag, "notes", ()):
        msg += "\nnote: " + str(note.message)
    return msg


def _where_of(op: str | None, loc: str, source_lines: dict[str, str]) -> str | None:
    """The model line of aten ``op`` (from ``source_lines``), else of MLIR location ``loc``."""
    where = source_lines.get(op) if op else None
    if where is None and loc:
        m = _LOC_RE.search(loc)
        if m:
            where = frame_where(m.group(1), int(m.group(2)))
    return where


def _lowering_error(
    exc: BaseException,
    errors: list[tuple[str, str]],
    stage: str,
    source_lines: dict[str, str],
    model_name: str,
) -> FrontendError:
    """Turn a torch-mlir pipeline failure into a one-paragraph FrontendError.

    ``errors`` are the (location, message) error diagnostics. The message names the failing
    aten op, the model source line that calls it (from ``source_lines``, else from the
    diagnostic's MLIR location) and what to do.
    """
    op = None
    first_msg = ""
    first_loc = ""
    for loc, msg in errors:  # the first error naming an aten op is the culprit
        op = op_from_diagnostics(msg)
        if op:
            first_msg, first_loc = msg, loc
            break
    if op is None:
        op = op_from_diagnostics(str(exc))
        if errors:
            first_loc, first_msg = errors[0]
    where = _where_of(op, first_loc, source_lines)
    at = f" (called at {fmt_where(where)})" if where else ""
    detail = _short_diag(first_msg) if first_msg else summarize(exc, 200)
    if "'torch.operator'" in detail:
        detail = "torch-mlir has no definition of this op, it stays an opaque torch.operator"
    if op:
        return FrontendError(
            f"torch-mlir cannot lower op '{op}'{at} of {model_name} to linalg-on-tensors "
            f"({stage}: {detail}). Rewrite that line with operations torch-mlir supports "
            "(elementwise math, matmul/linear, convolution, pooling, reductions, indexing), "
            "compute it outside the model, or add a decomposition for it to the frontend."
        )
    return FrontendError(
        f"torch-mlir failed on {model_name}{at} during {stage}: {detail}. Simplify the model "
        "around that line, or report the failure with the model file attached."
    )


def _run_pipeline(
    module: Any, pipeline: str, stage: str, source_lines: dict[str, str], model_name: str
) -> None:
    """Run one torch-mlir pass pipeline on ``module`` in place.

    Error diagnostics are collected by a handler (nothing is printed and no repro file is
    written, unlike ``run_pipeline_with_repro_report``).

    Raises:
        FrontendError: the pipeline failed (see :func:`_lowering_error`).
    """
    ir = mlir_bindings.ir()
    PassManager = mlir_bindings.pass_manager()  # noqa: N806 - the class, by its name

    errors: list[tuple[str, str]] = []

    def collect(diag: Any) -> bool:
        if "ERROR" in str(diag.severity).upper():
            errors.append((str(diag.location), _diag_text(diag)))
        return True  # handled: keep MLIR from printing it to stderr

    with module.context as ctx:
        handler = ctx.attach_diagnostic_handler(collect)
        try:
            PassManager.parse(pipeline).run(module.operation)
        except ir.MLIRError as e:
            errors += [(str(d.location), _diag_text(d)) for d in e.error_diagnostics]
            raise _lowering_error(e, errors, stage, source_lines, model_name) from None
        finally:
            handler.detach()


def _count_main_results(module: Any) -> int | None:
    """Number of results of ``func.func @main`` in a torch-mlir module (None if not found)."""
    ir = mlir_bindings.ir()

    for op in module.body.operations:
        if op.operation.name != "func.func":
            continue
        if ir.StringAttr(op.attributes["sym_name"]).value != "main":
            continue
        ftype = ir.FunctionType(ir.TypeAttr(op.attributes["function_type"]).value)
        return len(ftype.results)
    return None


def lower_text(
    text: str,
    source_lines: dict[str, str],
    model_name: str,
    stages: tuple[int, ...] = (0, 1),
    generic: bool = True,
) -> tuple[str, int | None, list[str], list[int]]:
    """Parse torch-dialect MLIR ``text`` and run the :data:`PIPELINES` numbered ``stages``.

    Runs in the lowering child (see :func:`lower_to_linalg`); before each stage it writes a
    :func:`~.lower_server.progress` note naming the stage.

    Returns:
        (the module's MLIR text, generic op form when ``generic`` else with source
        locations, re-parseable; the number of results of ``@main`` or None; per op of
        ``@main`` its model line, see :func:`_op_lines`; the unused arguments of ``@main``).

    Raises:
        FrontendError: a pipeline failed (names the aten op and the model line).
    """
    ir = mlir_bindings.ir()
    from torch_mlir.dialects import torch as torch_d

    from rdu_compiler.frontend.lower_server import progress
    from rdu_compiler.frontend.torch.custom_ops import CARRIED, carry, count

    ctx = ir.Context()
    torch_d.register_dialect(ctx)
    custom = 0 in stages and '"torch.rdu.' in text
    carried = carry(text) if custom else text  # rdu custom ops as library_call markers
    with ctx:
        if custom:  # the markers' torch_c casts: running the pipeline once loads that dialect
            mlir_bindings.pass_manager().parse(PIPELINES[1][1]).run(ir.Module.parse("module {}").operation)
        module = ir.Module.parse(carried)
    for i in stages:
        stage, pipeline = PIPELINES[i]
        progress(f"stage {i} {stage}")
        _run_pipeline(module, pipeline, stage, source_lines, model_name)
    for name, call in CARRIED.items() if custom else ():
        if count(str(module), call) != len(re.findall(f'"torch.{re.escape(name)}', text)):
            raise FrontendError(
                f"torch-mlir did not keep every custom op torch.ops.{name.replace('.', '::', 1)} of {model_name} as "
                f"its marker (library_call \"{call}\"); the program would be wrong, so it is refused. Report this "
                "with the model attached."
            )
    if generic:
        out = module.operation.get_asm(print_generic_op_form=True)
    else:
        out = module.operation.get_asm(enable_debug_info=True)
    return out, _count_main_results(module), _op_lines(module), _unused_arguments(module)


def _unused_arguments(module: Any) -> list[int]:
    """Indices of the arguments of ``@main`` that no op reads (torch-mlir dropped them,
    or the model never read them)."""
    for fn in module.body.operations:
        if fn.operation.name == "func.func":
            block = fn.regions[0].blocks[0]
            return [i for i, a in enumerate(block.arguments) if not list(a.uses)]
    return []


_LIBRARY_DIRS = ("/torch/", "/torch_mlir/", "/functorch/", "/torchgen/", "/rdu_compiler/")


def _op_lines(module: Any) -> list[str]:
    """Per top-level op of ``@main``, in order: the model line it comes from, as
    'file.py:12 `code`' (the first frame of its MLIR location outside torch and this
    compiler), or '' when unknown. Kernel names ('k7_gather') index this list."""
    out: list[str] = []
    for fn in module.body.operations:
        if fn.operation.name != "func.func":
            continue
        for op in fn.regions[0].blocks[0].operations:
            where = _model_frame(str(op.location))
            out.append(fmt_where(where) if where else "")
        break
    return out


def _model_frame(loc: str) -> str | None:
    """'file.py:12: code' of the first frame of MLIR location ``loc`` outside torch and this
    compiler (a callsite location lists the innermost frame first)."""
    for filename, line in _LOC_RE.findall(loc):
        norm = filename.replace("\\", "/")
        if not norm.startswith("<") and not any(d in norm for d in _LIBRARY_DIRS):
            return frame_where(filename, int(line))
    return None


def lower_to_linalg(
    module: Any, source_lines: dict[str, str], model_name: str
) -> tuple[str, int | None, list[str], list[int]]:
    """Lower the FX importer's torch-dialect ``module`` to linalg-on-tensors, isolated.

    Returns:
        (linalg-on-tensors MLIR text in generic op form, number of results of ``@main``,
        per op of ``@main`` the model line it comes from or '', the indices of the
        arguments of ``@main`` no op reads).

    Raises:
        FrontendError: torch-mlir cannot lower an op, crashed or hung (the message names
            the aten op and the model source line when they can be found).
    """
    from rdu_compiler.frontend.lower_server import (
        Died,
        call_isolated,
        lowering_timeout_s,
        progress_lines,
    )

    text = module.operation.get_asm(enable_debug_info=True)
    timeout = lowering_timeout_s(TORCH_LOWERING_TIMEOUT_S)
    try:
        out = call_isolated(__name__, "lower_text", text, source_lines, model_name, timeout_s=timeout)
    except FrontendError:
        raise
    except Exception as e:  # noqa: BLE001 - anything else the child raised: one paragraph, not a traceback
        raise FrontendError(
            f"torch-mlir failed while lowering {model_name} to linalg-on-tensors: {summarize(e)}. "
            "Simplify or re-export the model around the op it names, or report it to torch-mlir."
        ) from None
    if not isinstance(out, Died):
        return out  # type: ignore[no-any-return]
    notes = progress_lines(out.stderr)
    stage = int(notes[-1].split()[1]) if notes else 0
    op, loc = _crashing_op(text, stage, model_name, timeout) if not out.timed_out else (None, "")
    where = _model_frame(loc) or (source_lines.get(op) if op else None)
    at = f" (called at {fmt_where(where)})" if where else ""
    what = f" on op '{op}'{at}" if op else ""
    verb = "hung" if out.timed_out else "crashed"
    fatal = next((ln.strip() for ln in out.stderr.splitlines() if "error" in ln.lower()), "")
    detail = f": {fatal[:200]}" if fatal else ""
    fix = (
        "Rewrite that line with other operations (or other arguments of the op), or report "
        "the op to torch-mlir with the model attached."
        if op
        else "Simplify the model, or report it to torch-mlir with the model file attached."
    )
    raise FrontendError(
        f"torch-mlir {verb} ({out.how}){what} of {model_name} during {PIPELINES[stage][0]}"
        f"{detail}; the compiler ran it in a separate process, so nothing else was lost. "
        + fix
    )


def _crashing_op(text: str, stage: int, model_name: str, timeout: float) -> tuple[str | None, str]:
    """(aten op, MLIR location) of the op whose lowering in ``stage`` crashes the child.

    The input of ``stage`` is rebuilt (stage 0 output for stage 1), every op is put in a
    function of its own (:func:`_single_op_functions`) and halves of the functions are
    lowered until one op is left. (None, '') when the crash cannot be pinned to one op.
    """
    from rdu_compiler.frontend.lower_server import Died, call_isolated

    if stage > 0:
        prev = call_isolated(
            __name__, "lower_text", text, {}, model_name, tuple(range(stage)), False, timeout_s=timeout
        )
        if isinstance(prev, Died):
            return None, ""
        text = prev[0]
    try:
        funcs = _single_op_functions(text)
    except Exception:  # noqa: BLE001 - best effort: the caller reports the crash without an op
        return None, ""

    def crashes(items: list[tuple[str, str, str]]) -> bool:
        body = "module {\n" + "\n".join(f for _, _, f in items) + "\n}\n"
        try:
            res = call_isolated(__name__, "lower_text", body, {}, model_name, (stage,), timeout_s=timeout)
        except Exception:  # noqa: BLE001 - an ordinary error is not the crash
            return False
        return isinstance(res, Died)

    if not funcs or not crashes(funcs):
        return None, ""
    while len(funcs) > 1:
        half = funcs[: len(funcs) // 2]
        funcs = half if crashes(half) else funcs[len(funcs) // 2:]
    name, loc, _ = funcs[0]
    return ".".join(name.split(".")[1:3]), loc


def _single_op_functions(text: str) -> list[tuple[str, str, str]]:
    """Per op of every function in ``text`` (constants excepted): (op name, its location,
    the text of a ``func.func`` holding that op alone, its operands as arguments and its
    constant operands cloned)."""
    ir = mlir_bindings.ir()
    from torch_mlir.dialects import func as func_d
    from torch_mlir.dialects import torch as torch_d

    ctx = ir.Context()
    torch_d.register_dialect(ctx)
    out: list[tuple[str, str, str]] = []
    with ctx, ir.Location.unknown():
        module = ir.Module.parse(text)
        for fn in module.body.operations:
            if fn.operation.name != "func.func":
                continue
            for op in fn.regions[0].blocks[0].operations:
                name = op.operation.name
                if name.startswith(_CLONED) or name == "func.return":
                    continue
                holder = ir.Module.create()
                args: list[Any] = []  # values that become arguments
                clones: list[Any] = []  # ops cloned, operands first

                def plan(v: Any, args: list[Any] = args, clones: list[Any] = clones) -> None:
                    owner = v.owner
                    if not isinstance(owner, ir.Block) and owner.operation.name.startswith(_CLONED):
                        if all(owner.operation != c.operation for c in clones):
                            for w in owner.operation.operands:
                                plan(w)
                            clones.append(owner)
                    elif all(v != a for a in args):
                        args.append(v)

                for v in op.operation.operands:
                    plan(v)
                with ir.InsertionPoint(holder.body):
                    f = func_d.FuncOp(
                        f"op{len(out)}", ([a.type for a in args], [r.type for r in op.operation.results])
                    )
                block = f.add_entry_block()
                mapping: list[tuple[Any, Any]] = list(zip(args, block.arguments, strict=True))

                def mapped(v: Any, mapping: list[tuple[Any, Any]] = mapping) -> Any:
                    return next(new for old, new in mapping if old == v)

                new: Any = None  # after the loop: the clone of `op` (the list ends with it)
                with ir.InsertionPoint(block):
                    for src in [*clones, op]:
                        new = src.operation.clone()
                        for i, v in enumerate(src.operation.operands):
                            new.operands[i] = mapped(v)
                        mapping += list(zip(src.operation.results, new.results, strict=True))
                    func_d.ReturnOp(list(new.results))
                f_text = holder.body.operations[0].operation.get_asm()
                out.append((name, str(op.location), f_text))
    return out
