"""PyTorch -> linalg-on-tensors MLIR text, through torch.export and torch-mlir.

This is the only module of the project that imports ``torch_mlir`` (lazily, inside
:func:`import_torch`), so the rest of the compiler works on plain MLIR text, numpy arrays
and safetensors files.

The flow of :func:`import_torch`:

1. ``torch.export.export(module, example_inputs)`` -> ``ExportedProgram``; parameters,
   buffers (persistent or not) and lifted constants become graph placeholders.
2. ``run_decompositions`` with torch-mlir's decomposition table.
3. ``FxImporter.import_stateless_graph``: every placeholder becomes an argument of
   ``func.func @main``, so no weight is embedded in the IR text (no ``dense_resource``
   blobs), and non-persistent buffers (RoPE ``inv_freq``) need no state mapping.
4. torch-mlir's pipelines: torch dialect -> torch backend contract -> linalg-on-tensors.
5. The module is printed in generic op form (parseable by xDSL).
"""

from __future__ import annotations

import importlib.util
import json
import linecache
import os
import re
import sys
import traceback
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils import _pytree as pytree

from rdu_compiler.frontend.errors import FrontendError

__all__ = [
    "ImportedProgram",
    "import_torch",
    "load_model_file",
    "load_weights",
    "save_weights",
]

#: Metadata key, in a weights safetensors file, of the JSON alias map {arg name: stored name}.
ALIAS_METADATA_KEY = "rdu_aliases"
#: Metadata key of the JSON map {arg name: kind} ("parameter" | "buffer" | "constant").
KINDS_METADATA_KEY = "rdu_arg_kinds"
#: Metadata key of the weights-file format tag.
FORMAT_METADATA_KEY = "rdu_format"
WEIGHTS_FORMAT = "rdu_compiler.weights.v1"

_MAX_SUMMARY_CHARS = 400


# --------------------------------------------------------------------------------------
# The imported program
# --------------------------------------------------------------------------------------


@dataclass
class ImportedProgram:
    """A PyTorch module lowered to linalg-on-tensors, with its weights kept apart.

    Attributes:
        mlir_text: linalg-on-tensors MLIR in generic op form; one ``func.func @main`` whose
            arguments are, in order, ``arg_names`` (weights and user inputs interleaved as
            torch.export ordered them: parameters, buffers, constants, then user inputs).
        arg_names: one name per func argument, in order (the FX placeholder names, e.g.
            ``p_fc1_weight``, ``b_rotary_emb_inv_freq``, ``c_lifted_tensor_0``, ``x``).
        arg_kinds: per argument, ``"parameter"``, ``"buffer"``, ``"constant"`` or ``"input"``.
        weights: every non-``"input"`` argument's tensor, by arg name (detached, contiguous,
            CPU; tied weights are the same tensor object under several names).
        input_names: the ``"input"`` arguments, in the order of the flattened example inputs.
        num_outputs: number of results of ``@main``.
        out_spec: pytree ``TreeSpec`` rebuilding the model's output structure from the flat
            results (``pytree.tree_unflatten(results, out_spec)``).
        source_lines: aten op name (e.g. ``"aten.gelu"``) -> ``"file.py:123: code line"`` of
            the first frame outside torch in the FX node's stack trace, for error messages.
    """

    mlir_text: str
    arg_names: list[str]
    arg_kinds: list[str]
    weights: dict[str, torch.Tensor]
    input_names: list[str]
    num_outputs: int
    out_spec: Any
    source_lines: dict[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------------------------
# Loading model.py
# --------------------------------------------------------------------------------------


def _frame_where(filename: str, lineno: int, code: str | None = None) -> str:
    """'file.py:123: code' for one source location (code read from the file when absent)."""
    if code is None:
        code = linecache.getline(filename, lineno).strip()
    where = f"{os.path.basename(filename)}:{lineno}"
    return f"{where}: {code}" if code else where


def _summarize(exc: BaseException, limit: int = _MAX_SUMMARY_CHARS) -> str:
    """The first meaningful line of an exception message, shortened, as 'Type: message'."""
    text = str(exc).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    first = lines[0] if lines else ""
    if len(first) > limit:
        first = first[: limit - 3].rstrip() + "..."
    name = type(exc).__name__
    return f"{name}: {first}" if first else name


def _last_frame_in(exc: BaseException, path: Path) -> str | None:
    """The innermost traceback frame of ``exc`` inside file ``path``, as 'file.py:N: code'."""
    target = os.path.realpath(path)
    found: str | None = None
    for fs in traceback.extract_tb(exc.__traceback__):
        if os.path.realpath(fs.filename) == target:
            found = _frame_where(fs.filename, fs.lineno or 0, fs.line)
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
            at = f" at {where}" if where else ""
            hint = (
                " Install the missing package or fix the import."
                if isinstance(e, ImportError)
                else " Fix the file so that `python " + p.name + "` runs, then try again."
            )
            raise FrontendError(
                f"Executing model file '{p}' failed{at}: {_summarize(e)}.{hint}"
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
                at = f" at {where}" if where else ""
                raise FrontendError(
                    f"`get_model()` in model file '{p}' raised{at}: {_summarize(e)}. Fix it "
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


# --------------------------------------------------------------------------------------
# Source lines of aten ops
# --------------------------------------------------------------------------------------

_FRAME_RE = re.compile(r'File "([^"]+)", line (\d+), in [^\n]*\n([^\n]*)')


def _is_library_frame(filename: str) -> bool:
    """True for frames inside torch / torch_mlir themselves (not the model's code)."""
    norm = filename.replace("\\", "/")
    return any(
        f"/{pkg}/" in norm for pkg in ("torch", "torch_mlir", "functorch", "torchgen")
    ) or norm.startswith("<")


def _user_frame(stack_trace: str | None) -> str | None:
    """The innermost non-torch frame of an FX ``stack_trace``, as 'file.py:N: code'."""
    if not stack_trace:
        return None
    frames = _FRAME_RE.findall(stack_trace)
    for filename, lineno, code in reversed(frames):
        if not _is_library_frame(filename):
            return _frame_where(filename, int(lineno), code.strip() or None)
    return None


def _aten_name(target: Any) -> str | None:
    """'aten.gelu' for ``torch.ops.aten.gelu.default`` (None for non-op targets)."""
    schema = getattr(target, "_schema", None)
    if schema is None:
        return None
    ns, _, name = schema.name.partition("::")
    return f"{ns}.{name}" if name else None


def _collect_source_lines(graphs: Iterable[torch.fx.Graph]) -> dict[str, str]:
    """aten op name -> first user source line among the call_function nodes of ``graphs``."""
    out: dict[str, str] = {}
    for g in graphs:
        for node in g.nodes:
            if node.op != "call_function":
                continue
            name = _aten_name(node.target)
            if name is None or name in out:
                continue
            where = _user_frame(node.meta.get("stack_trace"))
            if where:
                out[name] = where
    return out


# --------------------------------------------------------------------------------------
# Extra decompositions
# --------------------------------------------------------------------------------------


def _reduced_dims(x: torch.Tensor, dim: Any) -> list[int]:
    """Normalized reduction dims of ``x`` (all dims when ``dim`` is None or empty)."""
    if dim is None:
        return list(range(x.dim()))
    dims = [dim] if isinstance(dim, int) else list(dim)
    if not dims:
        return list(range(x.dim()))
    return sorted(d % max(x.dim(), 1) for d in dims)


def _var_mean_same_dtype(
    x: torch.Tensor, dim: Any = None, *, correction: Any = None, keepdim: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """``aten.var_mean.correction`` in the input's dtype (two-pass: mean, then squares).

    torch-mlir's own decomposition of var_mean computes in float64, which would put f64
    tensors into the linalg output (every LayerNorm); this keeps them float32.
    """
    dims = _reduced_dims(x, dim)
    n = 1
    for d in dims:
        n *= x.shape[d]
    corr = 1 if correction is None else correction
    mean = torch.ops.aten.mean.dim(x, dims, True)
    centered = torch.ops.aten.sub.Tensor(x, mean)
    sq = torch.ops.aten.mul.Tensor(centered, centered)
    var = torch.ops.aten.sum.dim_IntList(sq, dims, keepdim)
    var = torch.ops.aten.div.Scalar(var, max(n - corr, 0))
    if not keepdim:
        mean = torch.ops.aten.squeeze.dims(mean, dims)
    return var, mean


def _var_same_dtype(
    x: torch.Tensor, dim: Any = None, *, correction: Any = None, keepdim: bool = False
) -> torch.Tensor:
    """``aten.var.correction`` in the input's dtype (see :func:`_var_mean_same_dtype`)."""
    return _var_mean_same_dtype(x, dim, correction=correction, keepdim=keepdim)[0]


def _decomposition_table() -> dict[Any, Any]:
    """torch-mlir's FX decomposition table plus this project's float32-preserving ones."""
    from torch_mlir.extras.fx_decomp_util import get_decomposition_table

    table = dict(get_decomposition_table())
    table[torch.ops.aten.var_mean.correction] = _var_mean_same_dtype
    table[torch.ops.aten.var.correction] = _var_same_dtype
    return table


# --------------------------------------------------------------------------------------
# import_torch
# --------------------------------------------------------------------------------------

_KIND_NAMES = {
    "PARAMETER": "parameter",
    "BUFFER": "buffer",
    "CONSTANT_TENSOR": "constant",
    "USER_INPUT": "input",
}


def _export_error(exc: BaseException, module: torch.nn.Module) -> FrontendError:
    """Turn a torch.export failure into a one-paragraph FrontendError."""
    text = str(exc)
    # Where in the user's code: innermost non-torch frame of the Python traceback (non-strict
    # export runs forward() eagerly), else the last non-torch 'File "...", line N' in the text.
    where: str | None = None
    for fs in traceback.extract_tb(exc.__traceback__):
        if not _is_library_frame(fs.filename):
            where = _frame_where(fs.filename, fs.lineno or 0, fs.line)
    if where is None or "rdu_compiler/frontend" in where:
        where = None
        for filename, lineno, code in _FRAME_RE.findall(text):
            if not _is_library_frame(filename):
                where = _frame_where(filename, int(lineno), code.strip() or None)
    at = f" at {where}" if where else ""
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
            f"tensor values ({_summarize(exc, 200)}). A compiled graph must have the same "
            "operations for every input: replace the branch with torch.where(...) (or "
            "torch.cond), or make it depend only on tensor shapes or Python constants."
        )
    return FrontendError(
        f"torch.export could not export {name}{at}: {_summarize(exc)}. Make "
        "`torch.export.export(model, example_inputs)` succeed on the model first (see "
        "https://pytorch.org/docs/stable/export.html); common fixes are calling model.eval(), "
        "removing Python side effects and data-dependent branches from forward()."
    )


_OP_IN_DIAG_RES = (
    re.compile(r"failed to legalize operation '(torch\.[\w.]+)'"),
    re.compile(r"torch\.operator\s*\"?([\w.]+)\"?"),
    re.compile(r"'(torch\.aten\.[\w.]+)'"),
    re.compile(r"\b(torch\.aten\.[\w]+)\b"),
    re.compile(r"\b(torch\.prims\.[\w]+)\b"),
)


def _op_from_diagnostics(text: str) -> str | None:
    """The aten op name ('aten.fft_fft') that torch-mlir's diagnostics complain about."""
    for rx in _OP_IN_DIAG_RES:
        m = rx.search(text)
        if m:
            op = m.group(1)
            if op.startswith("torch."):
                op = op[len("torch.") :]
            # 'aten.foo.default' -> 'aten.foo'; torch-mlir spells in-place/overloads as names.
            parts = op.split(".")
            if len(parts) > 2:
                op = ".".join(parts[:2])
            if op.startswith(("aten.", "prims.")) or op.count(".") == 1:
                return op
    return None


def _diag_summary(text: str) -> str:
    """The first 'error: ...' diagnostic line of a torch-mlir failure, shortened."""
    for line in text.splitlines():
        s = line.strip()
        m = re.search(r"error: (.*)", s)
        if m:
            msg = m.group(1).strip()
            return msg if len(msg) <= 200 else msg[:197] + "..."
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    first = lines[0] if lines else "unknown error"
    return first if len(first) <= 200 else first[:197] + "..."


def _lowering_error(
    exc: BaseException, stage: str, source_lines: dict[str, str], model_name: str
) -> FrontendError:
    """Turn a torch-mlir import/lowering failure into a one-paragraph FrontendError."""
    text = str(exc)
    op = _op_from_diagnostics(text)
    where = source_lines.get(op) if op else None
    if op and where is None:
        # torch-mlir's own decompositions rename ops; try a prefix match ('aten.foo' from
        # 'aten.foo_bar' or vice versa) before giving up on the source line.
        for k, v in source_lines.items():
            if k.startswith(op) or op.startswith(k):
                where = v
                break
    at = f" (called at {where})" if where else ""
    if op:
        return FrontendError(
            f"torch-mlir cannot lower op '{op}'{at} of {model_name} to linalg-on-tensors "
            f"during {stage}: {_diag_summary(text)}. Rewrite that line with operations "
            "torch-mlir supports (elementwise math, matmul/linear, convolution, reductions, "
            "indexing), compute it outside the model, or register a decomposition for it."
        )
    return FrontendError(
        f"torch-mlir failed on {model_name} during {stage}: {_diag_summary(text)}. Simplify "
        "the model or report the failure with the model file attached."
    )


def _flat_tensor_inputs(example_inputs: tuple[Any, ...]) -> list[torch.Tensor]:
    """Flatten ``example_inputs``; every leaf must be a tensor (else FrontendError)."""
    if not isinstance(example_inputs, tuple):
        raise FrontendError(
            f"example_inputs must be a tuple of tensors, not {type(example_inputs).__name__}; "
            "use `(x,)` for a single input."
        )
    leaves = pytree.tree_leaves(example_inputs)
    for i, leaf in enumerate(leaves):
        if not isinstance(leaf, torch.Tensor):
            raise FrontendError(
                f"example input #{i} is a {type(leaf).__name__} ({leaf!r:.60}); only tensor "
                "inputs are supported. Make non-tensor arguments constants of the model "
                "(attributes set in __init__ or default arguments of forward)."
            )
    return leaves


def import_torch(module: torch.nn.Module, example_inputs: tuple[Any, ...]) -> ImportedProgram:
    """Export ``module`` on ``example_inputs`` and lower it to linalg-on-tensors MLIR text.

    Args:
        module: the model, normally in eval mode (it is exported in its current mode).
        example_inputs: a tuple (possibly nested lists/tuples/dicts) of tensors, one entry
            per positional argument of ``module.forward``; their shapes and dtypes become the
            static shapes of the compiled program.

    Returns:
        The :class:`ImportedProgram` (MLIR text, argument names/kinds, weights, output spec).

    Raises:
        FrontendError: a non-tensor example input; torch.export fails (e.g. data-dependent
            control flow), summarized with the model's source line and a fix; the model
            mutates buffers or returns non-tensor values; torch-mlir cannot import or lower
            an op (the message names the aten op and the model line that calls it).
    """
    if not isinstance(module, torch.nn.Module):
        raise FrontendError(
            f"import_torch expects a torch.nn.Module, got {type(module).__name__}."
        )
    flat_inputs = _flat_tensor_inputs(example_inputs)
    model_name = type(module).__name__

    # 1. torch.export.
    try:
        ep = torch.export.export(module, example_inputs)
    except FrontendError:
        raise
    except Exception as e:  # noqa: BLE001 - torch.export raises many exception types
        raise _export_error(e, module) from None

    # 2. Decompositions torch-mlir expects.
    source_lines_pre = _collect_source_lines([ep.graph])
    try:
        ep = ep.run_decompositions(_decomposition_table())
    except Exception as e:  # noqa: BLE001
        raise FrontendError(
            f"Decomposing the exported graph of {model_name} failed: {_summarize(e)}. This "
            "usually means an op without a decomposition; rewrite it with basic tensor ops."
        ) from None
    source_lines = _collect_source_lines([ep.graph])
    for k, v in source_lines_pre.items():
        source_lines.setdefault(k, v)

    # 3. Signature: argument names, kinds and weights.
    sig = ep.graph_signature
    placeholders = [n.name for n in ep.graph.nodes if n.op == "placeholder"]
    arg_names: list[str] = []
    arg_kinds: list[str] = []
    weights: dict[str, torch.Tensor] = {}
    input_names: list[str] = []
    converted: dict[int, torch.Tensor] = {}  # id(original) -> detached contiguous tensor
    for spec in sig.input_specs:
        kind = _KIND_NAMES.get(spec.kind.name)
        name = getattr(spec.arg, "name", None)
        if kind is None or name is None:
            raise FrontendError(
                f"{model_name} has an exported input of kind {spec.kind.name} "
                f"('{spec.target}'); only parameters, buffers, constant tensors and tensor "
                "inputs are supported. Remove custom objects / side-effecting ops from forward()."
            )
        arg_names.append(name)
        arg_kinds.append(kind)
        if kind == "input":
            input_names.append(name)
            continue
        target = spec.target
        if target in ep.state_dict:
            t = ep.state_dict[target]
        elif target in ep.constants:
            t = ep.constants[target]
        else:  # pragma: no cover - torch.export invariant
            raise FrontendError(f"No tensor found for exported {kind} '{target}'.")
        if not isinstance(t, torch.Tensor):
            raise FrontendError(
                f"Exported {kind} '{target}' of {model_name} is a {type(t).__name__}, not a "
                "tensor; only tensor state is supported."
            )
        key = id(t)
        if key not in converted:
            converted[key] = t.detach().contiguous().cpu()
        weights[name] = converted[key]
    if arg_names != placeholders:  # pragma: no cover - torch.export invariant
        raise FrontendError("Internal error: graph placeholders do not match input specs.")
    if len(input_names) != len(flat_inputs):
        raise FrontendError(
            f"{model_name} was exported with {len(input_names)} tensor inputs but "
            f"example_inputs has {len(flat_inputs)} tensors; inputs that forward() does not "
            "use, or that are specialized to constants, are not supported."
        )
    mutations = [
        o for o in sig.output_specs if o.kind.name not in ("USER_OUTPUT",)
    ]
    if mutations:
        what = ", ".join(f"{o.kind.name.lower()} of '{o.target}'" for o in mutations[:3])
        raise FrontendError(
            f"{model_name} mutates its state in forward() ({what}); the compiler handles "
            "inference graphs only. Call model.eval() (BatchNorm updates running stats in "
            "training mode) or remove the in-place updates of buffers/inputs."
        )
    out_node = next(n for n in ep.graph.nodes if n.op == "output")
    flat_out = pytree.tree_leaves(out_node.args[0])
    for i, o in enumerate(flat_out):
        if not isinstance(o, torch.fx.Node):
            raise FrontendError(
                f"Output #{i} of {model_name} is a {type(o).__name__} ({o!r:.40}), not a tensor "
                "computed by the model; return only tensors from forward()."
            )
    out_spec = ep.call_spec.out_spec

    # 4. torch-mlir: FX graph -> torch dialect -> linalg-on-tensors.
    from torch_mlir import ir
    from torch_mlir.compiler_utils import (
        BackendLoweringOptions,
        OutputType,
        TorchMlirCompilerError,
        lower_mlir_module,
        run_pipeline_with_repro_report,
    )
    from torch_mlir.dialects import torch as torch_d
    from torch_mlir.extras.fx_importer import FxImporter

    ctx = ir.Context()
    torch_d.register_dialect(ctx)
    importer = FxImporter(context=ctx)
    try:
        importer.import_stateless_graph(ep.graph, func_name="main")
    except Exception as e:  # noqa: BLE001 - the importer raises plain Python errors
        raise _import_failure(e, ep.graph, source_lines, model_name) from None
    try:
        run_pipeline_with_repro_report(
            importer.module,
            "builtin.module(func.func(torch-match-quantized-custom-ops), "
            "torchdynamo-export-to-torch-backend-pipeline{ extra-library=})",
            "Lowering TorchFX IR -> Torch Backend IR",
        )
    except TorchMlirCompilerError as e:
        raise _lowering_error(e, "torch-backend lowering", source_lines, model_name) from None
    try:
        lowered = lower_mlir_module(
            False, OutputType.LINALG_ON_TENSORS, importer.module, BackendLoweringOptions()
        )
    except TorchMlirCompilerError as e:
        raise _lowering_error(e, "linalg lowering", source_lines, model_name) from None

    mlir_text = lowered.operation.get_asm(print_generic_op_form=True)
    func_results = _count_main_results(lowered, ir)
    return ImportedProgram(
        mlir_text=mlir_text,
        arg_names=arg_names,
        arg_kinds=arg_kinds,
        weights=weights,
        input_names=input_names,
        num_outputs=func_results if func_results is not None else len(flat_out),
        out_spec=out_spec,
        source_lines=source_lines,
    )


def _import_failure(
    exc: BaseException, graph: torch.fx.Graph, source_lines: dict[str, str], model_name: str
) -> FrontendError:
    """FrontendError for a failure inside torch-mlir's FX importer (names the op if it can)."""
    text = str(exc)
    op = None
    for node in graph.nodes:
        name = _aten_name(node.target) if node.op == "call_function" else None
        if name and (name in text or name.replace("aten.", "aten::") in text):
            op = name
            break
    if op is None:
        op = _op_from_diagnostics(text)
    where = source_lines.get(op) if op else None
    at = f" (called at {where})" if where else ""
    what = f" op '{op}'{at} of" if op else ""
    return FrontendError(
        f"torch-mlir's FX importer cannot import{what} {model_name}: {_summarize(exc)}. "
        "Unsupported dtypes (complex, float8, quantized) and ops returning non-tensor values "
        "are the usual causes; rewrite that part of the model with supported tensor ops."
    )


def _count_main_results(module: Any, ir: Any) -> int | None:
    """Number of results of ``func.func @main`` in a torch-mlir module (None if not found)."""
    for op in module.body.operations:
        if op.operation.name != "func.func":
            continue
        sym = op.attributes["sym_name"]
        if ir.StringAttr(sym).value != "main":
            continue
        ftype = ir.FunctionType(ir.TypeAttr(op.attributes["function_type"]).value)
        return len(ftype.results)
    return None


# --------------------------------------------------------------------------------------
# Weights files
# --------------------------------------------------------------------------------------


def _storage_key(t: torch.Tensor) -> tuple[Any, ...]:
    """Identity of a tensor's exact memory view (same key <=> same data, shape and dtype)."""
    return (
        t.untyped_storage().data_ptr(),
        t.storage_offset(),
        tuple(t.shape),
        tuple(t.stride()),
        t.dtype,
        t.device.type,
    )


def save_weights(path: str | os.PathLike[str], prog: ImportedProgram) -> None:
    """Write ``prog.weights`` to a safetensors file, storing shared tensors once.

    Arguments whose tensors are the same memory view (tied weights, e.g. GPT-2's ``wte``
    and ``lm_head``) are stored once, under the first argument name in ``prog.arg_names``
    order; the others are recorded in the metadata entry ``rdu_aliases`` (JSON
    ``{alias arg name: stored arg name}``). ``rdu_arg_kinds`` records each weight's kind.
    Tensors that overlap in memory without being identical views are stored as copies.

    Raises:
        FrontendError: the file cannot be written.
    """
    from safetensors.torch import save_file

    kinds = dict(zip(prog.arg_names, prog.arg_kinds, strict=True))
    order = [n for n in prog.arg_names if n in prog.weights]
    order += [n for n in prog.weights if n not in kinds]  # defensive: weights not in args
    stored: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    by_key: dict[tuple[Any, ...], str] = {}
    storages: set[int] = set()
    for name in order:
        t = prog.weights[name].detach().cpu()
        key = _storage_key(t)
        if key in by_key:
            aliases[name] = by_key[key]
            continue
        by_key[key] = name
        ptr = t.untyped_storage().data_ptr()
        if ptr in storages or not t.is_contiguous() or t.numel() * t.element_size() != t.untyped_storage().nbytes():
            t = t.clone(memory_format=torch.contiguous_format)  # partial views: own copy
        storages.add(ptr)
        stored[name] = t
    metadata = {
        FORMAT_METADATA_KEY: WEIGHTS_FORMAT,
        ALIAS_METADATA_KEY: json.dumps(aliases, sort_keys=True),
        KINDS_METADATA_KEY: json.dumps({n: kinds.get(n, "parameter") for n in order}),
    }
    try:
        save_file(stored, os.fspath(path), metadata=metadata)
    except OSError as e:
        raise FrontendError(f"Cannot write weights file '{path}': {e.strerror or e}.") from None


def _to_numpy(t: torch.Tensor) -> np.ndarray:
    """CPU tensor -> numpy array; bfloat16 becomes ``ml_dtypes.bfloat16``."""
    if t.dtype == torch.bfloat16:
        import ml_dtypes

        return t.contiguous().view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return t.numpy()


def load_weights(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read a weights file written by :func:`save_weights`: arg name -> numpy array.

    Aliases are resolved: every tied argument name maps to the (same) array of the stored
    tensor. Arrays keep the stored dtype and shape (bfloat16 as ``ml_dtypes.bfloat16``).

    Raises:
        FrontendError: the file is missing or is not a readable safetensors file, or an
            alias points at a tensor that is not in the file.
    """
    from safetensors import SafetensorError, safe_open

    p = Path(path)
    if not p.is_file():
        raise FrontendError(f"Weights file '{p}' does not exist.")
    out: dict[str, np.ndarray] = {}
    try:
        with safe_open(os.fspath(p), framework="pt") as f:
            metadata = f.metadata() or {}
            for name in f.keys():  # noqa: SIM118 - safe_open has no __iter__
                out[name] = _to_numpy(f.get_tensor(name))
    except (SafetensorError, OSError) as e:
        raise FrontendError(f"Weights file '{p}' is not a readable safetensors file: {e}.") from None
    try:
        aliases = json.loads(metadata.get(ALIAS_METADATA_KEY, "{}"))
    except json.JSONDecodeError:
        raise FrontendError(f"Weights file '{p}' has a malformed alias map.") from None
    for alias, target in aliases.items():
        if target not in out:
            raise FrontendError(
                f"Weights file '{p}' maps '{alias}' to '{target}', which is not in the file."
            )
        out[alias] = out[target]
    return out
