"""torch-mlir's ONNX importer and its pipeline to linalg-on-tensors, run in the shared lowering
child process (:mod:`rdu_compiler.frontend.lower_server`) so that a native crash becomes an
:class:`OnnxImportError`.
"""

from __future__ import annotations

import re
from typing import Any

from rdu_compiler.frontend import mlir_bindings
from rdu_compiler.frontend.onnx.errors import (
    ONNX_OP_RE,
    OnnxImportError,
    first_line,
    lowering_error,
    nearest_alternative,
    op_error,
    short,
)

#: The torch-mlir pass pipeline from the torch dialect (with onnx ops) to linalg-on-tensors.
ONNX_TO_LINALG = (
    "builtin.module(func.func(convert-torch-onnx-to-torch), torch-lower-to-backend-contract, "
    "func.func(cse,canonicalize), torch-backend-to-linalg-on-tensors-backend-pipeline)"
)


def _lower(proto: Any, where: str, node_kinds: dict[str, str], expand: frozenset[str] = frozenset()) -> tuple[str, list[str], list[str]]:
    """torch-mlir's ONNX importer and pipeline, in this process: (generic MLIR text, functions).

    ``expand``: ONNX ops (default domain) that the importer replaces by their ONNX function
    body, beside torch-mlir's default allowlist.
    """
    ir = mlir_bindings.ir()
    from torch_mlir.dialects import torch as torch_d
    from torch_mlir.extras import onnx_importer

    ctx = ir.Context()
    ctx.enable_multithreading(False)
    torch_d.register_dialect(ctx)
    config = onnx_importer.Config()
    if expand:
        allow = dict(config.function_expansion_allowlists_by_domain or {})
        allow[""] = set(allow.get("", set())) | set(expand)
        config.function_expansion_allowlists_by_domain = allow
    try:
        info = onnx_importer.ModelInfo(proto, config=config)
        module = info.create_module(context=ctx).operation
        imp = onnx_importer.NodeImporter.define_function(info.main_graph, module)
        imp.import_all()
    except Exception as e:  # noqa: BLE001 - the importer raises plain Python errors
        op_type = None
        m = re.search(r'op_type: "(\w+)"', str(e))
        if m:
            op_type = m.group(1)
        raise op_error(where, "ONNX importer", op_type, None, short(first_line(e))) from None
    _run_pipeline(module, ctx, where, node_kinds)
    return module.get_asm(print_generic_op_form=True), _func_names(module), _op_nodes(module, node_kinds)


def _op_nodes(module: Any, node_kinds: dict[str, str]) -> list[str]:
    """Per op of the (single) lowered function, in order: the ONNX node it came from ('' if
    unknown), read from the op's MLIR location (the importer names locations after nodes)."""
    out: list[str] = []
    for fn in module.regions[0].blocks[0].operations:
        if fn.operation.name != "func.func":
            continue
        for op in fn.regions[0].blocks[0].operations:
            names = re.findall(r'"([^"]+)"', str(op.location))
            out.append(next((n for n in names if n in node_kinds), ""))
        break
    return out


def lower_isolated(
    proto: Any, where: str, node_kinds: dict[str, str], expand: frozenset[str] = frozenset()
) -> tuple[str, list[str], list[str]]:
    """:func:`_lower` in the lowering child process (:mod:`.lower_server`), so that a
    native crash of torch-mlir (an LLVM fatal error, a segfault) becomes an OnnxImportError
    instead of killing the caller. ``RDU_ONNX_IN_PROCESS=1`` runs it in this process."""
    from rdu_compiler.frontend.lower_server import Died, call_isolated

    out = call_isolated(
        __name__, "_lower_request", proto.SerializeToString(), where, node_kinds, expand,
        timeout_s=lowering_timeout_s(),
    )
    if not isinstance(out, Died):
        kind, payload = out
        if kind == "ok":
            return payload  # type: ignore[no-any-return]
        message, op_type, node = payload
        raise OnnxImportError(message, op_type, node)
    # The lowering process died: torch-mlir crashed on this model.
    lines = [ln.strip() for ln in out.stderr.splitlines() if ln.strip()]
    fatal = next((ln for ln in lines if "ERROR" in ln or "error" in ln), "")
    op_type = _op_in_text(fatal, node_kinds)
    what = f" on ONNX op '{op_type}'" if op_type else ""
    alt = nearest_alternative(op_type)
    hint = f" Nearest supported alternative: {alt}." if alt else ""
    raise OnnxImportError(
        f"{where}: torch-mlir {'hung' if out.timed_out else 'crashed'} ({out.how}){what} while lowering the model to linalg-on-tensors"
        f"{': ' + short(fatal) if fatal else ''}.{hint} Simplify or re-export the model around "
        "that op, or report it to torch-mlir with the model attached.",
        op_type,
        None,
    )


def lowering_timeout_s() -> float:
    """Seconds torch-mlir may take to lower one model before it counts as hung
    (`lower_server.lowering_timeout_s`: ``RDU_LOWERING_TIMEOUT`` or
    ``RDU_ONNX_LOWERING_TIMEOUT``, default 300)."""
    from rdu_compiler.frontend import lower_server

    return lower_server.lowering_timeout_s(300.0)


def _lower_request(
    model_bytes: bytes, where: str, node_kinds: dict[str, str], expand: frozenset[str]
) -> tuple[str, Any]:
    """In the lowering child: ("ok", :func:`_lower`'s result) or ("error", (message, op, node))."""
    import onnx

    try:
        return "ok", _lower(onnx.ModelProto.FromString(model_bytes), where, node_kinds, expand)
    except OnnxImportError as e:
        return "error", (str(e), e.op_type, e.node)
    except Exception as e:  # noqa: BLE001 - reported by the caller
        return "error", (f"{where}: torch-mlir failed: {type(e).__name__}: {first_line(e)}", None, None)


def _op_in_text(text: str, node_kinds: dict[str, str]) -> str | None:
    m = ONNX_OP_RE.search(text)
    if m:
        return m.group(1)
    for node, kind in node_kinds.items():
        if node in text:
            return kind
    return None


def _func_names(module: Any) -> list[str]:
    ir = mlir_bindings.ir()

    names = []
    for op in module.regions[0].blocks[0].operations:
        if op.operation.name == "func.func":
            names.append(ir.StringAttr(op.attributes["sym_name"]).value)
    return names


def _run_pipeline(module: Any, ctx: Any, where: str, node_kinds: dict[str, str]) -> None:
    ir = mlir_bindings.ir()
    PassManager = mlir_bindings.pass_manager()  # noqa: N806 - the class, by its name

    errors: list[tuple[str, str]] = []

    def collect(diag: Any) -> bool:
        if "ERROR" in str(diag.severity).upper():
            errors.append((str(diag.location), str(diag.message)))
        return True

    with ctx:
        handler = ctx.attach_diagnostic_handler(collect)
        try:
            PassManager.parse(ONNX_TO_LINALG).run(module)
        except ir.MLIRError as e:
            errors += [(str(d.location), str(d.message)) for d in e.error_diagnostics]
            raise lowering_error(where, "torch-mlir lowering", errors, e, node_kinds) from None
        finally:
            handler.detach()
