"""PyTorch -> linalg-on-tensors MLIR text, through torch.export and torch-mlir.

Only this module and :mod:`.torch_lower` (and the ONNX importer) import ``torch_mlir``,
lazily, so the rest of the compiler works on plain MLIR text, numpy arrays and
safetensors files.

The flow of :func:`import_torch`:

1. ``torch.export.export(module, example_inputs)`` -> ``ExportedProgram``; parameters,
   buffers (persistent or not) and lifted constants become graph placeholders.
2. ``run_decompositions`` with torch-mlir's decomposition table.
3. ``FxImporter.import_stateless_graph``: every placeholder becomes an argument of
   ``func.func @main``, so no weight is embedded in the IR text (no ``dense_resource``
   blobs), and non-persistent buffers (RoPE ``inv_freq``) need no state mapping.
4. torch-mlir's pipelines: torch dialect -> torch backend contract -> linalg-on-tensors,
   run on the printed module in a child process (:mod:`.torch_lower`), so that a native
   crash of torch-mlir becomes a FrontendError naming the op; data-dependent shapes and
   dropped operands are refused (:mod:`.torch_checks`).
5. The module is printed in generic op form (parseable by xDSL).
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import logging
import os
import re
import sys
import traceback
import uuid
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils import _pytree as pytree

from rdu_compiler.frontend.errors import FrontendError
from rdu_compiler.frontend.locations import fmt_where as _fmt_where
from rdu_compiler.frontend.locations import frame_where as _frame_where
from rdu_compiler.frontend.locations import summarize as _summarize
from rdu_compiler.frontend.lower_server import prestart as prestart_lowering
from rdu_compiler.frontend.meta_device import retarget_meta_devices
from rdu_compiler.frontend.torch_checks import (
    refuse_data_dependent_shapes,
    refuse_dropped_operands,
    refuse_embedding_bag_internals,
)
from rdu_compiler.frontend.torch_decompositions import (
    embedding_bag_decompositions,
    positive_dim_decompositions,
)
from rdu_compiler.frontend.torch_lower import lower_to_linalg
from rdu_compiler.frontend.torch_lower import op_from_diagnostics as _op_from_diagnostics
from rdu_compiler.frontend.torch_numerics import numerics_decompositions

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
        graph_module: the FX graph that was lowered (after decompositions and constant
            folding), callable as ``graph_module(*args)`` with one tensor per ``arg_names``
            entry and returning the flat tuple of ``num_outputs`` tensors: a PyTorch
            reference for exactly the program in ``mlir_text``.
        op_nodes: per top-level op of ``@main`` in ``mlir_text``, the model line it comes
            from ('model.py:12 `code`', '' if unknown); compiler errors naming kernel
            'k7_...' add ``op_nodes[7]``.
    """

    mlir_text: str
    arg_names: list[str]
    arg_kinds: list[str]
    weights: dict[str, torch.Tensor]
    input_names: list[str]
    num_outputs: int
    out_spec: Any
    source_lines: dict[str, str] = field(default_factory=dict)
    graph_module: torch.fx.GraphModule | None = field(default=None, repr=False)
    op_nodes: list[str] = field(default_factory=list, repr=False)


# --------------------------------------------------------------------------------------
# Loading model.py
# --------------------------------------------------------------------------------------


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
            at = f" at {_fmt_where(where)}" if where else ""
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
                at = f" at {_fmt_where(where)}" if where else ""
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


def _softmax_single_pass_max(x: torch.Tensor, dim: int, half_to_float: bool) -> torch.Tensor:
    """``aten._softmax``: exp(x - amax(x)) / sum(exp(x - amax(x))) along ``dim``.

    torch-mlir's own decomposition goes through ``aten.max.dim``, which yields a two-result
    linalg.generic with a dead i64 argmax; ``amax`` keeps the max a single-result reduction.
    """
    if half_to_float:
        x = torch.ops.aten._to_copy.default(x, dtype=torch.float32)
    m = torch.ops.aten.amax.default(x, [dim], True)
    e = torch.ops.aten.exp.default(torch.ops.aten.sub.Tensor(x, m))
    return torch.ops.aten.div.Tensor(e, torch.ops.aten.sum.dim_IntList(e, [dim], True))


def _log_softmax_single_pass_max(x: torch.Tensor, dim: int, half_to_float: bool) -> torch.Tensor:
    """``aten._log_softmax``: (x - amax) - log(sum(exp(x - amax))) along ``dim``."""
    if half_to_float:
        x = torch.ops.aten._to_copy.default(x, dtype=torch.float32)
    m = torch.ops.aten.amax.default(x, [dim], True)
    shifted = torch.ops.aten.sub.Tensor(x, m)
    lse = torch.ops.aten.log.default(
        torch.ops.aten.sum.dim_IntList(torch.ops.aten.exp.default(shifted), [dim], True)
    )
    return torch.ops.aten.sub.Tensor(shifted, lse)


def _decomposition_table() -> dict[Any, Any]:
    """torch-mlir's FX decomposition table plus this project's float32-preserving ones."""
    from torch_mlir.extras.fx_decomp_util import get_decomposition_table

    table = dict(get_decomposition_table())
    table[torch.ops.aten.var_mean.correction] = _var_mean_same_dtype
    table[torch.ops.aten.var.correction] = _var_same_dtype
    table[torch.ops.aten._softmax.default] = _softmax_single_pass_max
    table[torch.ops.aten._log_softmax.default] = _log_softmax_single_pass_max
    table.update(numerics_decompositions())  # eager's numbers where torch-mlir's lowering differs
    table.update(embedding_bag_decompositions())
    table.update(positive_dim_decompositions())
    return table


# --------------------------------------------------------------------------------------
# Constant folding of input-independent subgraphs
# --------------------------------------------------------------------------------------

#: Ops that are cheap to recompute on the fabric (generators and pure data movement): a
#: constant chain made only of these is left as computation instead of becoming a weight.
_CHEAP_OPS = frozenset(
    {
        "aten.arange",
        "aten.full",
        "aten.full_like",
        "aten.zeros",
        "aten.zeros_like",
        "aten.ones",
        "aten.ones_like",
        "aten.empty",
        "aten.empty_like",
        "aten.empty_strided",
        "aten.scalar_tensor",
        "aten.view",
        "aten.reshape",
        "aten._unsafe_view",
        "aten.unsqueeze",
        "aten.squeeze",
        "aten.expand",
        "aten.permute",
        "aten.t",
        "aten.transpose",
        "aten.slice",
        "aten.select",
        "aten.alias",
        "aten.clone",
        "aten._to_copy",
        "aten.lift_fresh_copy",
        "aten.detach",
    }
)


#: Pure data-movement ops: a folding boundary is moved above them (see _fold_constants).
_VIEW_OPS = frozenset(
    {
        "aten.view",
        "aten.reshape",
        "aten._unsafe_view",
        "aten.unsqueeze",
        "aten.squeeze",
        "aten.expand",
        "aten.permute",
        "aten.t",
        "aten.transpose",
        "aten.alias",
        "aten.clone",
    }
)


def _is_assert(node: torch.fx.Node) -> bool:
    """True for runtime-check nodes (``aten._assert_*``) that produce no value."""
    name = _aten_name(node.target) or ""
    return name.startswith("aten._assert") or name.startswith("aten.sym_constrain")


def _is_nondeterministic(node: torch.fx.Node) -> bool:
    """True for random ops (their value must not be frozen at import time)."""
    tags = getattr(node.target, "tags", ())
    return torch.Tag.nondeterministic_seeded in tags or torch.Tag.nondeterministic_bitwise in tags


def _fold_constants(
    graph: torch.fx.Graph,
    kind_of: dict[str, str],
    weights: dict[str, torch.Tensor],
    foldable: set[str],
    max_bytes: int,
) -> None:
    """Replace input-independent subgraphs of ``graph`` by new constant placeholders.

    A node is constant when all its inputs are constant; the roots are the placeholders in
    ``foldable`` (lifted constants, non-persistent buffers) and ops without inputs. Each
    constant node used by a non-constant node (a "boundary") is evaluated eagerly and
    becomes a new placeholder ``c_folded_<i>`` (kind "constant", tensor in ``weights``),
    inserted before the first user input. Boundaries whose subgraph contains only
    :data:`_CHEAP_OPS`, that are larger than ``max_bytes``, or that are not tensors stay as
    computation. Dead nodes and placeholders in ``foldable`` left without users are removed.
    ``kind_of`` and ``weights`` are updated in place.
    """
    placeholders = [n for n in graph.nodes if n.op == "placeholder"]
    const: set[torch.fx.Node] = {n for n in placeholders if n.name in foldable}
    order: list[torch.fx.Node] = []
    for node in graph.nodes:
        if node.op != "call_function" or _is_nondeterministic(node):
            continue
        if all(a in const for a in node.all_input_nodes):
            const.add(node)
            order.append(node)
    if not order:
        return

    # Push boundaries above pure view ops, so that e.g. one RoPE cos table is folded once and
    # each layer's unsqueeze of it stays a (free) view instead of a separate constant.
    changed = True
    while changed:
        changed = False
        for node in order:
            if node not in const or (_aten_name(node.target) or "") not in _VIEW_OPS:
                continue
            inputs = node.all_input_nodes
            if (
                len(inputs) == 1
                and inputs[0].op == "call_function"
                and node.users
                and all(u not in const for u in node.users)
            ):
                const.discard(node)
                changed = True
    order = [n for n in order if n in const]

    def cheap_only(node: torch.fx.Node, seen: set[torch.fx.Node]) -> bool:
        if node in seen or node.op == "placeholder":
            return True
        seen.add(node)
        if (_aten_name(node.target) or "") not in _CHEAP_OPS:
            return False
        return all(cheap_only(a, seen) for a in node.all_input_nodes)

    boundary: list[torch.fx.Node] = []
    for node in order:
        if _is_assert(node) or not any(u not in const for u in node.users):
            continue
        val = node.meta.get("val")
        if not isinstance(val, torch.Tensor):
            continue
        if val.numel() * val.element_size() > max_bytes or cheap_only(node, set()):
            continue
        boundary.append(node)
    if not boundary:
        return

    # Evaluate the constant nodes eagerly (only those the boundaries need).
    needed: set[torch.fx.Node] = set()
    stack = list(boundary)
    while stack:
        n = stack.pop()
        if n in needed:
            continue
        needed.add(n)
        stack.extend(a for a in n.all_input_nodes if a.op != "placeholder")
    env: dict[torch.fx.Node, Any] = {n: weights[n.name] for n in placeholders if n in const}
    with torch.no_grad():
        for node in order:
            if node not in needed:
                continue
            args = torch.fx.node.map_arg(node.args, lambda a: env[a])
            kwargs = torch.fx.node.map_arg(node.kwargs, lambda a: env[a])
            env[node] = node.target(*args, **kwargs)

    first_input = next((n for n in placeholders if kind_of[n.name] == "input"), None)
    made: list[tuple[torch.Tensor, torch.fx.Node]] = []
    for node in boundary:
        value = env[node]
        same = next(
            (
                ph
                for v, ph in made
                if v.dtype == value.dtype and v.shape == value.shape and torch.equal(v, value)
            ),
            None,
        )
        if same is not None:
            for u in [u for u in node.users if u not in const]:
                u.replace_input_with(node, same)
            continue
        if first_input is not None:
            ctx = graph.inserting_before(first_input)
        else:
            ctx = (
                graph.inserting_after(placeholders[-1])
                if placeholders
                else graph.inserting_before()
            )
        with ctx:
            ph = graph.placeholder(f"c_folded_{len(made)}")
        ph.meta.update(
            {k: v for k, v in node.meta.items() if k in ("val", "tensor_meta", "stack_trace")}
        )
        non_const_users = [u for u in node.users if u not in const]
        for u in non_const_users:
            u.replace_input_with(node, ph)
        kind_of[ph.name] = "constant"
        weights[ph.name] = value.detach().contiguous()
        made.append((value, ph))

    # Remove now-dead constant nodes (asserts on constants included), newest first.
    for node in reversed(order):
        if not node.users:
            graph.erase_node(node)
    for node in placeholders:
        if node.name in foldable and not node.users:
            graph.erase_node(node)
            kind_of.pop(node.name, None)
            weights.pop(node.name, None)
    graph.lint()


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
    at = f" at {_fmt_where(where)}" if where else ""
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


@contextlib.contextmanager
def _quiet_torch_warnings() -> Iterator[None]:
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
                f"example input #{i} is of type {type(leaf).__name__} ({leaf!r:.60}); only tensor "
                "inputs are supported. Make non-tensor arguments constants of the model "
                "(attributes set in __init__ or default arguments of forward)."
            )
    return leaves


def import_torch(
    module: torch.nn.Module,
    example_inputs: tuple[Any, ...],
    *,
    fold_constants: bool = True,
    fold_max_bytes: int = 16 << 20,
) -> ImportedProgram:
    """Export ``module`` on ``example_inputs`` and lower it to linalg-on-tensors MLIR text.

    Args:
        module: the model, normally in eval mode (it is exported in its current mode).
        example_inputs: a tuple (possibly nested lists/tuples/dicts) of tensors, one entry
            per positional argument of ``module.forward``; their shapes and dtypes become the
            static shapes of the compiled program.
        fold_constants: evaluate, at import time, the parts of the graph that depend on no
            user input and no parameter/persistent buffer (HF causal masks built with
            cumsum/index/compare ops, RoPE cos/sin tables from ``inv_freq``), and pass each
            result as a ``"constant"`` argument named ``c_folded_<i>``. Chains made only of
            generators and views (``arange`` -> ``unsqueeze``) are kept as computation.
        fold_max_bytes: a folded result larger than this (bytes) is left as computation.

    Returns:
        The :class:`ImportedProgram` (MLIR text, argument names/kinds, weights, output spec).

    Raises:
        FrontendError: a non-tensor example input; torch.export fails (e.g. data-dependent
            control flow), summarized with the model's source line and a fix; the model
            mutates buffers or returns non-tensor values; torch-mlir cannot import or lower
            an op (the message names the aten op and the model line that calls it).
    """
    if not isinstance(module, torch.nn.Module):
        raise FrontendError(f"import_torch expects a torch.nn.Module, got {type(module).__name__}.")
    flat_inputs = _flat_tensor_inputs(example_inputs)
    model_name = type(module).__name__

    prestart_lowering()  # the lowering child starts while torch.export runs

    # 1. torch.export.
    try:
        with _quiet_torch_warnings():
            ep = torch.export.export(module, example_inputs)
    except FrontendError:
        raise
    except Exception as e:  # noqa: BLE001 - torch.export raises many exception types
        raise _export_error(e, module) from None

    refuse_data_dependent_shapes(ep.graph, model_name)
    refuse_embedding_bag_internals(ep.graph, model_name)

    # 2. Decompositions torch-mlir expects.
    source_lines_pre = _collect_source_lines([ep.graph])
    try:
        with _quiet_torch_warnings():
            ep = ep.run_decompositions(_decomposition_table())
    except Exception as e:  # noqa: BLE001
        raise FrontendError(
            f"Decomposing the exported graph of {model_name} failed: {_summarize(e)}. This "
            "usually means an op without a decomposition; rewrite it with basic tensor ops."
        ) from None
    source_lines = _collect_source_lines([ep.graph])
    for k, v in source_lines_pre.items():
        source_lines.setdefault(k, v)
    retarget_meta_devices(ep.graph)  # shape-only models: factory ops on meta -> cpu

    # 3. Signature: argument kinds and weights, by placeholder name.
    sig = ep.graph_signature
    kind_of: dict[str, str] = {}
    weights: dict[str, torch.Tensor] = {}
    foldable: set[str] = set()  # lifted constants and non-persistent buffers
    converted: dict[int, torch.Tensor] = {}  # id(original) -> detached contiguous tensor
    for spec in sig.input_specs:
        kind = _KIND_NAMES.get(spec.kind.name)
        name = getattr(spec.arg, "name", None)
        if spec.kind.name == "TOKEN":
            raise _effect_error(ep.graph, source_lines_pre, model_name)
        if kind is None or name is None:
            raise FrontendError(
                f"{model_name} has an exported input of kind {spec.kind.name} "
                f"('{spec.target}'); only parameters, buffers, constant tensors and tensor "
                "inputs are supported. Remove custom objects / side-effecting ops from forward()."
            )
        kind_of[name] = kind
        if kind == "input":
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
            # meta tensors (shape-only compiles of big models) have no data to move
            converted[key] = t.detach() if t.is_meta else t.detach().contiguous().cpu()
        weights[name] = converted[key]
        if kind == "constant" or (kind == "buffer" and spec.persistent is False):
            foldable.add(name)
    placeholders = [n.name for n in ep.graph.nodes if n.op == "placeholder"]
    if placeholders != [s.arg.name for s in sig.input_specs]:  # pragma: no cover
        raise FrontendError("Internal error: graph placeholders do not match input specs.")
    n_user = sum(1 for k in kind_of.values() if k == "input")
    if n_user != len(flat_inputs):
        raise FrontendError(
            f"{model_name} was exported with {n_user} tensor inputs but example_inputs has "
            f"{len(flat_inputs)} tensors; inputs that forward() does not use, or that are "
            "specialized to constants, are not supported."
        )
    mutations = [o for o in sig.output_specs if o.kind.name != "USER_OUTPUT"]
    if mutations:
        what = ", ".join(f"{o.kind.name.lower()} of '{o.target}'" for o in mutations[:3])
        raise FrontendError(
            f"{model_name} mutates its state in forward() ({what}); the compiler handles "
            "inference graphs only. Call model.eval() (BatchNorm updates running stats in "
            "training mode) or remove the in-place updates of buffers/inputs."
        )
    if fold_constants:
        try:
            _fold_constants(ep.graph, kind_of, weights, foldable, fold_max_bytes)
        except Exception as e:  # noqa: BLE001 - folding is an optimization; report clearly
            raise FrontendError(
                f"Folding the input-independent part of {model_name} failed: {_summarize(e)}. "
                "Retry with import_torch(..., fold_constants=False)."
            ) from None
    arg_names = [n.name for n in ep.graph.nodes if n.op == "placeholder"]
    arg_kinds = [kind_of[n] for n in arg_names]
    input_names = [n for n in arg_names if kind_of[n] == "input"]
    weights = {n: weights[n] for n in arg_names if kind_of[n] != "input"}
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
    from torch_mlir.dialects import torch as torch_d
    from torch_mlir.extras.fx_importer import FxImporter

    ctx = ir.Context()
    torch_d.register_dialect(ctx)
    importer = FxImporter(context=ctx)
    try:
        importer.import_stateless_graph(ep.graph, func_name="main")
    except Exception as e:  # noqa: BLE001 - the importer raises plain Python errors
        raise _import_failure(e, ep.graph, source_lines, model_name) from None
    mlir_text, func_results, op_lines, unused = lower_to_linalg(importer.module, source_lines, model_name)
    if unused:
        user = iter(flat_inputs)
        values = [weights[n] if kind_of[n] != "input" else next(user) for n in arg_names]
        gm = torch.fx.GraphModule(ep.graph_module, ep.graph)
        refuse_dropped_operands(ep.graph, unused, model_name, gm, values)
    return ImportedProgram(
        mlir_text=mlir_text,
        arg_names=arg_names,
        arg_kinds=arg_kinds,
        weights=weights,
        input_names=input_names,
        num_outputs=func_results if func_results is not None else len(flat_out),
        out_spec=out_spec,
        source_lines=source_lines,
        graph_module=torch.fx.GraphModule(ep.graph_module, ep.graph),
        op_nodes=op_lines,
    )


def _effect_error(
    graph: torch.fx.Graph, source_lines: dict[str, str], model_name: str
) -> FrontendError:
    """FrontendError for a graph that threads effect tokens (side-effecting ops)."""
    op = None
    for node in graph.nodes:
        if node.op == "call_function" and "with_effects" in str(node.target):
            inner = node.args[1] if len(node.args) > 1 else None
            op = _aten_name(inner) or str(inner)
            break
    where = source_lines.get(op) if op else None
    at = f" (called at {_fmt_where(where)})" if where else ""
    what = f"op '{op}'{at}" if op else "an op"
    return FrontendError(
        f"{model_name} uses {what} with side effects (torch.export threads it with an effect "
        "token; e.g. torch.linalg.inv / cholesky run error checks, print/logging ops), which "
        "a dataflow graph cannot express. Use the *_ex variants (torch.linalg.inv_ex, "
        "cholesky_ex) or remove the side effect from forward()."
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
    at = f" (called at {_fmt_where(where)})" if where else ""
    what = f" op '{op}'{at} of" if op else ""
    return FrontendError(
        f"torch-mlir's FX importer cannot import{what} {model_name}: {_summarize(exc)}. "
        "Unsupported dtypes (complex, float8, quantized) and ops returning non-tensor values "
        "are the usual causes; rewrite that part of the model with supported tensor ops."
    )


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

    from rdu_compiler.frontend.weights_header import canonicalize_header

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
        if (
            ptr in storages
            or not t.is_contiguous()
            or t.numel() * t.element_size() != t.untyped_storage().nbytes()
        ):
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
        canonicalize_header(path)  # safetensors writes metadata in random order
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
        raise FrontendError(
            f"Weights file '{p}' is not a readable safetensors file: {e}."
        ) from None
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
