"""ONNX -> linalg-on-tensors MLIR text, through torch-mlir's ONNX importer.

The flow of :func:`import_onnx`:

1. Load the model (a path or a ``ModelProto``); fix the shape of every graph input from its
   declared type or from ``input_shapes`` (a dynamic dim without a given shape is an error
   that names the input and says how to pass one).
2. Lift initializers (and large ``Constant`` nodes) to graph inputs: they become arguments
   of ``@main`` ("parameter" kind) and their values travel as weights, never in the IR
   text. An initializer that an op needs at compile time (a Reshape's shape, a Slice's
   starts, Resize scales: see :data:`.load._IMMEDIATE_INPUTS`) stays a constant, as do scalars
   (one element) and integer tensors of at most :data:`.load._MAX_INLINE_INT_ELEMENTS` elements.
   These and the other rewrites before torch-mlir are the named steps of
   :data:`.prepare.STEPS`.
3. ONNX shape inference, then ``torch_mlir.extras.onnx_importer`` to the torch dialect
   (``torch.operator "onnx.*"`` ops), and the pipeline
   ``convert-torch-onnx-to-torch, torch-lower-to-backend-contract, cse, canonicalize,
   torch-backend-to-linalg-on-tensors-backend-pipeline``.
4. The module is printed in generic op form and returned as an
   :class:`~rdu_compiler.frontend.program.OnnxImportedProgram` (the same interface as
   :func:`rdu_compiler.frontend.torch.export.import_torch`'s result).

Errors are :class:`FrontendError` with one paragraph: the file, the ONNX node (op type and
name) torch-mlir could not take, and what to do.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from rdu_compiler.frontend.errors import FrontendError
from rdu_compiler.frontend.onnx.errors import OnnxImportError
from rdu_compiler.frontend.onnx.expand import has_function, inline_functions
from rdu_compiler.frontend.onnx.graph import np_dtype
from rdu_compiler.frontend.onnx.load import bind_inputs, load_onnx_model, static_inputs
from rdu_compiler.frontend.onnx.lower import lower_isolated
from rdu_compiler.frontend.onnx.prepare import prepare
from rdu_compiler.frontend.program import OnnxImportedProgram

__all__ = ["import_onnx"]


def import_onnx(
    model: Any,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    constant_inputs: Mapping[str, Any] | None = None,
    *,
    skip_steps: Sequence[str] = (),
) -> OnnxImportedProgram:
    """Lower an ONNX model to linalg-on-tensors MLIR text, weights as function arguments.

    Args:
        model: an ``onnx.ModelProto`` or the path of an ``.onnx`` file.
        input_shapes: static shapes of graph inputs, by name; needed for every input with a
            dynamic (symbolic or unknown) dimension, allowed for any input.
        constant_inputs: graph inputs bound to fixed values (name -> array): they become
            initializers, so that ops needing compile-time values (a Reshape's shape, a
            Slice's starts) can take them from an input.
        skip_steps: names of :data:`.prepare.STEPS` not to run (for debugging a rewrite).

    Returns:
        The :class:`OnnxImportedProgram`: the arguments of ``@main`` are the graph inputs (in
        declaration order, ``"input"`` kind) then the lifted initializers (``"parameter"``).

    Constant subgraphs (computed from initializers, constants and static shapes only) are
    evaluated at import time with ONNX's reference evaluator. An op torch-mlir has no
    conversion for but ONNX defines as a function (Attention, RMSNormalization, ...) is
    replaced by its function body and the import retried.

    Raises:
        FrontendError: the file is missing or unreadable; an input is not a tensor or has a
            dynamic shape and no entry in ``input_shapes``; ``skip_steps`` names no step.
        OnnxImportError: torch-mlir's importer or its lowering to linalg refused a node (the
            message names the ONNX op and node).
    """
    import onnx

    if isinstance(model, str | os.PathLike):
        where = f"ONNX model '{model}'"
        proto = load_onnx_model(model)
    elif isinstance(model, onnx.ModelProto):
        where = f"ONNX model '{model.graph.name or 'graph'}'"
        proto = onnx.ModelProto()
        proto.CopyFrom(model)
    else:
        raise FrontendError(
            f"import_onnx expects an onnx.ModelProto or the path of an .onnx file, got "
            f"{type(model).__name__}."
        )
    for vi in proto.graph.output:
        if vi.type.WhichOneof("value") != "tensor_type":
            raise OnnxImportError(
                f"{where}: output '{vi.name}' is a {vi.type.WhichOneof('value') or 'untyped value'}, "
                "not a tensor; only tensor outputs are supported. Return tensors from the model.",
            )
    if proto.functions:  # model-local functions: inlined before import
        proto = inline_functions(proto, None, where)
    if constant_inputs:
        bind_inputs(proto, constant_inputs, where)

    shapes = static_inputs(proto, input_shapes, where)
    input_names = list(shapes)
    input_dtypes = {
        vi.name: np_dtype(vi.type.tensor_type.elem_type) for vi in proto.graph.input if vi.name in shapes
    }
    output_names = [vi.name for vi in proto.graph.output]
    output_dtypes = [np_dtype(vi.type.tensor_type.elem_type) for vi in proto.graph.output]
    reference = onnx.ModelProto()
    reference.CopyFrom(proto)

    expand: set[str] = set()
    while True:
        state = prepare(proto, expand, where, skip=skip_steps)
        weights_np, node_kinds = state.weights, state.node_kinds
        try:
            mlir_text, func_names, op_nodes = lower_isolated(state.model, where, node_kinds, state.importer_expand)
            break
        except OnnxImportError as e:
            op = e.op_type
            if not op or op in expand or len(expand) >= 16 or not has_function(op, proto):
                raise
            expand.add(op)  # retry with that op replaced by its ONNX function body
    if len(func_names) != 1:
        raise OnnxImportError(f"{where}: lowering left {len(func_names)} functions ({', '.join(func_names)}); expected one.")
    if "dense_resource<" in mlir_text:
        raise OnnxImportError(
            f"{where}: a constant tensor stayed in the IR as a resource blob after lowering; "
            "the compiler keeps weights out of the IR. Make it an initializer.",
        )

    import torch

    weights: dict[str, Any] = {}
    for name, arr in weights_np.items():
        arr = np.require(arr, requirements="C").copy()
        try:
            if arr.dtype.name == "bfloat16":  # ml_dtypes: same bits as torch.bfloat16
                weights[name] = torch.from_numpy(arr.view(np.int16)).view(torch.bfloat16)
            else:
                weights[name] = torch.from_numpy(arr)
        except TypeError:
            weights[name] = arr
    arg_names = input_names + list(weights_np)
    arg_kinds = ["input"] * len(input_names) + ["parameter"] * len(weights_np)
    return OnnxImportedProgram(
        mlir_text=mlir_text,
        arg_names=arg_names,
        arg_kinds=arg_kinds,
        weights=weights,
        input_names=input_names,
        num_outputs=len(output_names),
        out_spec=_out_spec(len(output_names)),
        source_lines={f"onnx.{k}": f"node '{n}'" for n, k in node_kinds.items()},
        input_dtypes=input_dtypes,
        output_names=output_names,
        output_dtypes=output_dtypes,
        input_shapes=shapes,
        model=reference,
        op_nodes=[f"ONNX node '{n}' ({node_kinds[n]})" if n else "" for n in op_nodes],
    )


def _out_spec(n: int) -> Any:
    """A single output comes back as a tensor, several as a tuple."""
    from torch.utils import _pytree as pytree

    if n == 1:
        return pytree.tree_flatten(0)[1]
    return pytree.tree_flatten(tuple(range(n)))[1]
