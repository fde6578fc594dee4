"""What a frontend produces: linalg-on-tensors MLIR text with the weights kept apart.

Plain data, no torch or torch-mlir import: the passes, the runtime and the CLI read an
imported program without loading either frontend.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = ["ImportedProgram", "OnnxImportedProgram"]


@dataclass
class ImportedProgram:
    """A model lowered to linalg-on-tensors, with its weights kept apart (PyTorch: what
    :func:`~rdu_compiler.frontend.torch.export.import_torch` returns; ONNX adds the fields of
    :class:`OnnxImportedProgram`).

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




@dataclass
class OnnxImportedProgram(ImportedProgram):
    """An ONNX model lowered to linalg-on-tensors, weights kept apart.

    The fields of :class:`ImportedProgram`, plus:

    Attributes:
        input_dtypes: numpy dtype of each graph input, by name (ONNX's, e.g. ``uint8``; the
            program itself uses signless integers).
        output_names: the graph's output names, in order.
        output_dtypes: numpy dtype of each graph output (ONNX's declared type).
        input_shapes: the static shape of each graph input, by name.
        model: the ONNX model with static input shapes (initializers intact), for a
            reference evaluation (``onnx.reference.ReferenceEvaluator``).
        op_nodes: per op of ``@main`` in ``mlir_text`` (the "op #i" of compiler messages),
            the ONNX node it comes from, as ``"ONNX node 'name' (OpType)"`` ('' if unknown).
    """

    input_dtypes: dict[str, np.dtype[Any]] = field(default_factory=dict)
    output_names: list[str] = field(default_factory=list)
    output_dtypes: list[np.dtype[Any]] = field(default_factory=list)
    input_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    model: Any = field(default=None, repr=False)
    op_nodes: list[str] = field(default_factory=list)
