"""PyTorch -> linalg-on-tensors MLIR text, through torch.export and torch-mlir.

Only this module and :mod:`.lower` (and the ONNX importer) import ``torch_mlir``,
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
   run on the printed module in a child process (:mod:`.lower`), so that a native
   crash of torch-mlir becomes a FrontendError naming the op; data-dependent shapes and
   dropped operands are refused (:mod:`.checks`).
5. The module is printed in generic op form (parseable by xDSL).
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch.utils import _pytree as pytree

from rdu_compiler.frontend import mlir_bindings
from rdu_compiler.frontend.errors import FrontendError
from rdu_compiler.frontend.locations import summarize
from rdu_compiler.frontend.lower_server import prestart as prestart_lowering
from rdu_compiler.frontend.program import ImportedProgram
from rdu_compiler.frontend.torch.checks import (
    refuse_data_dependent_shapes,
    refuse_dropped_operands,
    refuse_embedding_bag_internals,
)
from rdu_compiler.frontend.torch.decompositions import decomposition_table
from rdu_compiler.frontend.torch.diagnostics import (
    collect_source_lines,
    effect_error,
    export_error,
    import_failure,
    quiet_torch_warnings,
)
from rdu_compiler.frontend.torch.fold import fold_input_independent
from rdu_compiler.frontend.torch.lower import lower_to_linalg
from rdu_compiler.frontend.torch.meta_device import retarget_meta_devices

_KIND_NAMES = {
    "PARAMETER": "parameter",
    "BUFFER": "buffer",
    "CONSTANT_TENSOR": "constant",
    "USER_INPUT": "input",
}


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


def _unaliased(example_inputs: tuple[Any, ...]) -> tuple[Any, ...]:
    """`example_inputs` with every tensor that shares storage with an earlier one (the
    same tensor passed twice, or a view of another input) replaced by a copy.

    torch.export traces aliased inputs as one value: `forward(a, b)` exported on `(x, x)`
    reads `a` for both, and the compiled program then ignores `b` (it returned `3a` for
    `2a + b`). Example inputs give shapes and dtypes only, so the program must treat each
    input as its own tensor.
    """
    seen: set[Any] = set()

    def fresh(t: Any) -> Any:
        if not isinstance(t, torch.Tensor):
            return t
        key: Any = id(t) if t.device.type == "meta" else (t.device, t.untyped_storage().data_ptr())
        if key in seen:
            return t.clone()
        seen.add(key)
        return t

    out = pytree.tree_map(fresh, example_inputs)
    assert isinstance(out, tuple)
    return out


def _export_then_decompose(
    module: torch.nn.Module, example_inputs: tuple[Any, ...], model_name: str
) -> tuple[Any, dict[str, str]]:
    """torch.export's public flow: ``export`` (pre-dispatch training IR), the checks on that
    graph, then ``run_decompositions`` (a second trace). Returns the decomposed program and
    the op -> model line map of the graph before decomposition.

    Raises:
        FrontendError: export or decomposition failed, or a check refused the graph.
    """
    try:
        with quiet_torch_warnings():
            ep = torch.export.export(module, example_inputs)
    except FrontendError:
        raise
    except Exception as e:  # noqa: BLE001 - torch.export raises many exception types
        raise export_error(e, module) from None

    refuse_data_dependent_shapes(ep.graph, model_name)
    refuse_embedding_bag_internals(ep.graph, model_name)
    source_lines_pre = collect_source_lines([ep.graph])
    try:
        with quiet_torch_warnings():
            ep = ep.run_decompositions(decomposition_table())
    except Exception as e:  # noqa: BLE001
        raise FrontendError(
            f"Decomposing the exported graph of {model_name} failed: {summarize(e)}. This "
            "usually means an op without a decomposition; rewrite it with basic tensor ops."
        ) from None
    return ep, source_lines_pre


def _export_decomposed_once(module: torch.nn.Module, example_inputs: tuple[Any, ...], model_name: str) -> Any:
    """The program of :func:`_export_then_decompose` from one trace, or None to use that.

    ``export`` then ``run_decompositions`` traces the model twice (pre-dispatch, then
    through AOTAutograd with the table); torch.export's ATen-level export
    (``torch.export._trace._export(pre_dispatch=False)``) is the second trace alone, here
    with the same table split the same way (CompositeImplicitAutograd overrides around the
    trace, the rest given to AOTAutograd), as ``run_decompositions`` does. The linalg text of
    GPT-2 and HF Llama-3.1-8B is byte-identical either way; HF Llama-3.1-8B (32 layers,
    meta) imports in about half the time.

    Declines (returns None) whenever the two-step flow knows more: any exception (its
    message comes from the two-step flow), an ``embedding_bag`` (its check needs the graph
    before decomposition), a data-dependent shape or an effect token (their messages name
    the op before decomposition). Uses torch's private export API, pinned by
    requirements.lock; a change there only makes this decline. Not thread-safe: the
    table reaches AOTAutograd through a module global of ``torch.export._trace`` patched
    for the trace (the compiler compiles in processes, never threads).
    """
    try:
        from torch.export import _trace
        from torch.export.exported_program import (
            _override_composite_implicit_decomp,
            _split_decomp_table_to_cia_and_python_decomp,
        )
    except ImportError:  # pragma: no cover - another torch
        return None
    table = dict(decomposition_table())
    seen: list[str] = []
    for op in [op for op in table if "embedding_bag" in str(op)]:
        table[op] = _flagging(table[op], seen)
    cia, python_table = _split_decomp_table_to_cia_and_python_decomp(table)
    original = _trace._export_to_aten_ir
    _trace._export_to_aten_ir = functools.partial(original, decomp_table=python_table)
    transforms: list[str] = []
    nesting = _flag_autodiff_transforms(transforms)
    try:
        with quiet_torch_warnings(), _override_composite_implicit_decomp(cia):
            ep = _trace._export(module, example_inputs, strict=False, pre_dispatch=False)
        if seen or any(spec.kind.name == "TOKEN" for spec in ep.graph_signature.input_specs):
            return None
        refuse_data_dependent_shapes(ep.graph, model_name)
    except Exception:  # noqa: BLE001 - the two-step flow gives the diagnosis
        return None if not transforms else _autodiff_refusal(model_name)
    finally:
        _trace._export_to_aten_ir = original
        nesting()
    if transforms:
        _autodiff_refusal(model_name)
    return ep


def _flag_autodiff_transforms(flags: list[str]) -> Any:
    """Flag (append to `flags`) every torch.func grad / jvp level entered during a trace;
    returns the function that undoes the patch. The single trace lost the gradients of the
    ops this project decomposes (GELU, LayerNorm, softmax became zeros) when forward() called
    `torch.func.grad_and_value`, and the public export refuses such a forward."""
    try:
        from torch._functorch import eager_transforms
    except ImportError:  # pragma: no cover - another torch
        return lambda: None
    names = [n for n in ("grad_increment_nesting", "jvp_increment_nesting") if hasattr(eager_transforms, n)]
    saved = {n: getattr(eager_transforms, n) for n in names}
    for n in names:
        setattr(eager_transforms, n, _flagging(saved[n], flags))

    def undo() -> None:
        for n, fn in saved.items():
            setattr(eager_transforms, n, fn)

    return undo


def _autodiff_refusal(model_name: str) -> Any:
    raise FrontendError(
        f"{model_name}.forward() calls a torch.func autodiff transform (grad, grad_and_value, vjp, "
        "jacrev, jvp); torch.export cannot trace one into a graph whose gradients are right. "
        "Trace the function first with torch.fx.experimental.proxy_tensor.make_fx (it writes "
        "the backward as plain ATen ops) and compile the GraphModule it returns; "
        "rdu_compiler.train.CompiledTrainStep does this for training steps."
    )


def _flagging(fn: Any, seen: list[str]) -> Any:
    def decomposition(*args: Any, **kwargs: Any) -> Any:
        seen.append("x")
        return fn(*args, **kwargs)

    return decomposition


def import_torch(
    module: torch.nn.Module,
    example_inputs: tuple[Any, ...],
    *,
    fold_constants: bool = True,
    fold_max_bytes: int = 16 << 20,
    one_trace: bool = True,
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
        one_trace: trace the model once with the decompositions applied
            (:func:`_export_decomposed_once`, the same graph in about half the time) instead
            of torch.export's public two-step flow (``export`` then ``run_decompositions``,
            two traces), which is still used when the single trace declines.

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
    example_inputs = _unaliased(example_inputs)
    flat_inputs = pytree.tree_leaves(example_inputs)
    model_name = type(module).__name__

    prestart_lowering()  # the lowering child starts while torch.export runs

    # 1-2. torch.export and the decompositions torch-mlir expects.
    ep = _export_decomposed_once(module, example_inputs, model_name) if one_trace else None
    source_lines_pre: dict[str, str] = {}
    if ep is None:  # asked for, or the single trace declined: the public two-step flow
        ep, source_lines_pre = _export_then_decompose(module, example_inputs, model_name)
    source_lines = collect_source_lines([ep.graph])
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
            raise effect_error(ep.graph, source_lines_pre, model_name)
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
            fold_input_independent(ep.graph, kind_of, weights, foldable, fold_max_bytes)
        except Exception as e:  # noqa: BLE001 - folding is an optimization; report clearly
            raise FrontendError(
                f"Folding the input-independent part of {model_name} failed: {summarize(e)}. "
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
    ir = mlir_bindings.ir()
    from torch_mlir.dialects import torch as torch_d
    from torch_mlir.extras.fx_importer import FxImporter

    ctx = ir.Context()
    torch_d.register_dialect(ctx)
    importer = FxImporter(context=ctx)
    try:
        importer.import_stateless_graph(ep.graph, func_name="main")
    except Exception as e:  # noqa: BLE001 - the importer raises plain Python errors
        raise import_failure(e, ep.graph, source_lines, model_name) from None
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
