"""ONNX -> linalg-on-tensors MLIR text, through torch-mlir's ONNX importer.

The flow of :func:`import_onnx`:

1. Load the model (a path or a ``ModelProto``); fix the shape of every graph input from its
   declared type or from ``input_shapes`` (a dynamic dim without a given shape is an error
   that names the input and says how to pass one).
2. Lift initializers (and large ``Constant`` nodes) to graph inputs: they become arguments
   of ``@main`` ("parameter" kind) and their values travel as weights, never in the IR
   text. An initializer that an op needs at compile time (a Reshape's shape, a Slice's
   starts, Resize scales: see :data:`_IMMEDIATE_INPUTS`) stays a constant, as do scalars
   (one element) and integer tensors of at most :data:`_MAX_INLINE_INT_ELEMENTS` elements.
3. ONNX shape inference, then ``torch_mlir.extras.onnx_importer`` to the torch dialect
   (``torch.operator "onnx.*"`` ops), and the pipeline
   ``convert-torch-onnx-to-torch, torch-lower-to-backend-contract, cse, canonicalize,
   torch-backend-to-linalg-on-tensors-backend-pipeline``.
4. The module is printed in generic op form and returned as an :class:`OnnxImportedProgram`
   (the same interface as :func:`rdu_compiler.frontend.torch_import.import_torch`'s result).

Errors are :class:`FrontendError` with one paragraph: the file, the ONNX node (op type and
name) torch-mlir could not take, and what to do.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rdu_compiler.frontend import onnx_nan
from rdu_compiler.frontend.errors import FrontendError

if TYPE_CHECKING:  # defined on first use, see _program_class
    OnnxImportedProgram = Any
__all__ = [
    "compile_time_inputs",
    "OnnxImportedProgram",
    "OnnxImportError",
    "import_onnx",
    "load_onnx_model",
    "nearest_alternative",
    "parse_input_shape",
    "run_onnx",
]

#: The torch-mlir pass pipeline from the torch dialect (with onnx ops) to linalg-on-tensors.
ONNX_TO_LINALG = (
    "builtin.module(func.func(convert-torch-onnx-to-torch), torch-lower-to-backend-contract, "
    "func.func(cse,canonicalize), torch-backend-to-linalg-on-tensors-backend-pipeline)"
)

#: (op type, input index) pairs whose value torch-mlir's ONNX conversion needs at compile
#: time (shapes, axes, pads, scales, counts): an initializer feeding one stays a constant.
_IMMEDIATE_INPUTS: dict[str, set[int]] = {
    "Reshape": {1},
    "Expand": {1},
    "Tile": {1},
    "ConstantOfShape": {0},
    "Slice": {1, 2, 3, 4},
    "Pad": {1, 2, 3},
    "Resize": {1, 2, 3},
    "Upsample": {1},
    "Squeeze": {1},
    "Unsqueeze": {1},
    "Split": {1},
    "TopK": {1},
    "Range": {0, 1, 2},
    "OneHot": {1},
    "CumSum": {1},
    "CumProd": {1},
    "If": {0},
    "Loop": {0, 1},
    "Trilu": {1},
    "ReduceSum": {1},
    "ReduceMean": {1},
    "ReduceMax": {1},
    "ReduceMin": {1},
    "ReduceProd": {1},
    "ReduceL1": {1},
    "ReduceL2": {1},
    "ReduceLogSum": {1},
    "ReduceLogSumExp": {1},
    "ReduceSumSquare": {1},
    "Clip": {1, 2},
    "NonMaxSuppression": {2, 3, 4},
    "Compress": {1},
    "CenterCropPad": {1},
    "DFT": {1, 2},
    "STFT": {1, 2, 3},
    "Dropout": {1, 2},
}

#: Integer initializers up to this many elements stay constants (indices, shapes, axes).
_MAX_INLINE_INT_ELEMENTS = 64
#: A ``Constant`` node whose tensor has more elements than this is lifted like a weight.
_MAX_INLINE_CONSTANT_ELEMENTS = 64

#: ONNX ops with no lowering here, and what to use instead (for error messages).
_ALTERNATIVES: dict[str, str] = {
    "LSTM": "export the recurrence unrolled over time (MatMul, Add, Sigmoid, Tanh per step)",
    "GRU": "export the recurrence unrolled over time (MatMul, Add, Sigmoid, Tanh per step)",
    "RNN": "export the recurrence unrolled over time (MatMul, Add, Tanh per step)",
    "Loop": "a constant trip count (up to 64 iterations are unrolled at import)",
    "Scan": "static shapes (scans of up to 64 steps are unrolled at import)",
    "If": "export with the branch resolved (a static condition) or use Where on both results",
    "NonZero": "a mask with Where (static shapes) instead of the data-dependent index list",
    "Unique": "a static-size alternative (TopK, or a mask with Where)",
    "NonMaxSuppression": "post-process boxes outside the model",
    "StringNormalizer": "tokenize outside the model",
    "TfIdfVectorizer": "vectorize outside the model",
    "DFT": "MatMul with a DFT matrix",
    "STFT": "MatMul with a windowed DFT matrix",
    "Einsum": "MatMul/Transpose/ReduceSum for the same contraction",
    "GridSample": "Gather with computed indices",
    "RoiAlign": "crop outside the model",
    "Multinomial": "sample outside the model",
    "RandomNormal": "pass random values as an input",
    "RandomNormalLike": "pass random values as an input",
    "RandomUniform": "pass random values as an input",
    "RandomUniformLike": "pass random values as an input",
    "Bernoulli": "pass random values as an input and compare with Less",
    "ArgMax": "ReduceMax (when the index is not needed)",
    "ArgMin": "ReduceMin (when the index is not needed)",
    "TopK": "ReduceMax for k = 1",
    "Hardmax": "ReduceMax and Equal",
    "Erf": "Tanh-based GELU approximation",
    "Mod": "Sub(x, Mul(Floor(Div(x, y)), y))",
    "BitShift": "Mul/Div by powers of two",
    "Det": "compute it outside the model",
    "ScatterND": "ScatterElements or Where with a mask",
    "ScatterElements": "Where with a mask",
    "GatherND": "Gather along one axis",
    "Col2Im": "ConvTranspose",
    "DeformConv": "Conv",
    "MaxUnpool": "Resize/ConvTranspose",
    "LpPool": "AveragePool of Pow(x, p) then Pow(., 1/p)",
    "ReverseSequence": "Slice with negative steps",
    "ImageDecoder": "decode images outside the model",
    "Optional": "plain tensors (no optional values)",
    "OptionalHasElement": "plain tensors (no optional values)",
    "OptionalGetElement": "plain tensors (no optional values)",
    "SequenceConstruct": "Concat of tensors",
    "SequenceAt": "Slice/Gather on a tensor",
    "SplitToSequence": "Split",
    "ConcatFromSequence": "Concat",
}


class OnnxImportError(FrontendError):
    """torch-mlir's ONNX importer or its lowering to linalg refused the model.

    Attributes:
        op_type: the ONNX op type that failed (``"Einsum"``), or None when unknown.
        node: the node's name (as in the model, or ``<OpType>_<index>`` when unnamed).
    """

    def __init__(self, message: str, op_type: str | None = None, node: str | None = None):
        super().__init__(message)
        self.op_type = op_type
        self.node = node


_PROGRAM_CLASS: Any = None


def _program_class() -> Any:
    """:class:`OnnxImportedProgram`, defined on first use (it subclasses torch_import's
    ImportedProgram, which imports torch: the lowering process never needs it)."""
    global _PROGRAM_CLASS
    if _PROGRAM_CLASS is not None:
        return _PROGRAM_CLASS
    from rdu_compiler.frontend.torch_import import ImportedProgram

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

    OnnxImportedProgram.__module__ = __name__
    OnnxImportedProgram.__qualname__ = "OnnxImportedProgram"
    _PROGRAM_CLASS = OnnxImportedProgram
    return OnnxImportedProgram


def __getattr__(name: str) -> Any:
    if name == "OnnxImportedProgram":
        return _program_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------


def nearest_alternative(op_type: str | None) -> str | None:
    """What to use instead of an ONNX op this compiler does not lower (None if no hint)."""
    return _ALTERNATIVES.get(op_type or "")


def parse_input_shape(spec: str) -> tuple[str, tuple[int, ...]]:
    """``"name=1x3x224x224"`` -> ``("name", (1, 3, 224, 224))`` (``name=`` for a scalar).

    Raises:
        FrontendError: the text is not ``NAME=D0xD1x...`` with positive integer dims.
    """
    name, sep, dims = spec.rpartition("=")
    if not sep or not name:
        raise FrontendError(
            f"--input-shape '{spec}' is not NAME=SHAPE; write e.g. --input-shape input=1x3x224x224."
        )
    if dims.strip() == "":
        return name, ()
    try:
        shape = tuple(int(d) for d in dims.lower().split("x"))
    except ValueError:
        shape = ()
    if not shape or any(d <= 0 for d in shape):
        raise FrontendError(
            f"--input-shape '{spec}': the shape '{dims}' must be positive integers joined by 'x', "
            "e.g. 1x3x224x224."
        )
    return name, shape


def load_onnx_model(path: str | os.PathLike[str]) -> Any:
    """Read an ``.onnx`` file (external data from its folder).

    Raises:
        FrontendError: the file does not exist, cannot be read, or is not an ONNX model.
    """
    import onnx

    p = Path(path)
    if not p.exists():
        raise FrontendError(
            f"ONNX model file '{p}' does not exist. Pass the path of an .onnx file (export one "
            "with torch.onnx.export(model, example_inputs, 'model.onnx'))."
        )
    if not p.is_file():
        raise FrontendError(f"ONNX model path '{p}' is not a file. Pass the path of an .onnx file.")
    if not os.access(p, os.R_OK):
        raise FrontendError(f"ONNX model file '{p}' is not readable (permission denied). Fix its permissions.")
    try:
        model = onnx.load(os.fspath(p), load_external_data=False)
    except Exception as e:  # noqa: BLE001 - protobuf raises DecodeError and others
        raise FrontendError(
            f"ONNX model file '{p}' could not be read as an ONNX model ({type(e).__name__}: "
            f"{_first_line(e)}). Check that it is a complete .onnx file (re-export it)."
        ) from None
    if not model.graph.node and not model.graph.output:
        raise FrontendError(f"ONNX model file '{p}' holds no graph. Check that it is an .onnx model file.")
    try:
        onnx.load_external_data_for_model(model, os.fspath(p.resolve().parent))
    except Exception as e:  # noqa: BLE001
        raise FrontendError(
            f"ONNX model file '{p}' refers to external weight data that cannot be read "
            f"({_first_line(e)}). Keep the data files next to the model."
        ) from None
    return model


def _first_line(exc: BaseException, limit: int = 300) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _np_dtype(elem_type: int) -> np.dtype[Any]:
    import onnx

    try:
        return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type))
    except Exception:  # noqa: BLE001
        return np.dtype(object)


def _dtype_name(elem_type: int) -> str:
    import onnx

    try:
        return onnx.TensorProto.DataType.Name(elem_type).lower()
    except ValueError:
        return str(elem_type)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Keep MLIR/onnx chatter off the terminal (errors are reported as FrontendError)."""
    with contextlib.redirect_stderr(io.StringIO()):
        yield


# --------------------------------------------------------------------------------------
# Preparing the model: static input shapes, lifted initializers
# --------------------------------------------------------------------------------------


def _static_inputs(
    model: Any, input_shapes: Mapping[str, Sequence[int]] | None, where: str
) -> dict[str, tuple[int, ...]]:
    """Set every graph input's shape from its declaration or ``input_shapes``; return them."""
    graph = model.graph
    inits = {i.name for i in graph.initializer}
    inputs = [vi for vi in graph.input if vi.name not in inits]
    given = dict(input_shapes or {})
    names = [vi.name for vi in inputs]
    unknown = [n for n in given if n not in names]
    if unknown:
        raise FrontendError(
            f"{where}: --input-shape names {', '.join(repr(n) for n in unknown)}, which "
            f"{'is' if len(unknown) == 1 else 'are'} not an input of the model; its inputs are "
            f"{', '.join(repr(n) for n in names) or '(none)'}."
        )
    shapes: dict[str, tuple[int, ...]] = {}
    for vi in inputs:
        tt = vi.type
        kind = tt.WhichOneof("value")
        if kind != "tensor_type":
            raise FrontendError(
                f"{where}: input '{vi.name}' is a {kind or 'untyped value'}, not a tensor; only "
                "tensor inputs are supported. Re-export the model with tensor inputs."
            )
        tensor_type = tt.tensor_type
        if vi.name in given:
            shape = tuple(int(d) for d in given[vi.name])
            if tensor_type.HasField("shape") and len(tensor_type.shape.dim) != len(shape):
                declared = _shape_text(tensor_type)
                raise FrontendError(
                    f"{where}: input '{vi.name}' has rank {len(tensor_type.shape.dim)} ({declared}) "
                    f"but --input-shape gives {'x'.join(map(str, shape)) or 'a scalar'}; pass "
                    f"{len(tensor_type.shape.dim)} dims."
                )
            tensor_type.shape.Clear()
            for d in shape:
                tensor_type.shape.dim.add().dim_value = d
            shapes[vi.name] = shape
            continue
        if not tensor_type.HasField("shape"):
            raise FrontendError(
                f"{where}: input '{vi.name}' has no declared shape. Pass one with "
                f"--input-shape {vi.name}=1x3x224x224 (rdu-compile) or "
                f"input_shapes={{'{vi.name}': (1, 3, 224, 224)}} (compile_onnx)."
            )
        dims = []
        for i, d in enumerate(tensor_type.shape.dim):
            if d.HasField("dim_value") and d.dim_value > 0:
                dims.append(int(d.dim_value))
                continue
            symbol = f" ('{d.dim_param}')" if d.HasField("dim_param") else ""
            example = "x".join(str(x) if x else "N" for x in [
                int(e.dim_value) if e.HasField("dim_value") else 0 for e in tensor_type.shape.dim
            ])
            raise FrontendError(
                f"{where}: input '{vi.name}' has a dynamic dimension {i}{symbol} (shape "
                f"{_shape_text(tensor_type)}); the compiler needs static shapes. Pass the shape with "
                f"--input-shape {vi.name}={example.replace('N', '1')} (rdu-compile) or "
                f"input_shapes={{'{vi.name}': ({', '.join(example.replace('N', '1').split('x'))},)}} "
                "(compile_onnx)."
            )
        shapes[vi.name] = tuple(dims)
    return shapes


def _shape_text(tensor_type: Any) -> str:
    parts = []
    for d in tensor_type.shape.dim:
        if d.HasField("dim_value"):
            parts.append(str(d.dim_value))
        elif d.HasField("dim_param"):
            parts.append(d.dim_param)
        else:
            parts.append("?")
    return "[" + ", ".join(parts) + "]"


def _immediate_names(graph: Any) -> set[str]:
    """Value names consumed at a position whose value must be known at compile time."""
    names: set[str] = set()
    for node in graph.node:
        for i in _IMMEDIATE_INPUTS.get(node.op_type, ()):
            if i < len(node.input) and node.input[i]:
                names.add(node.input[i])
    return names


def compile_time_inputs(model: Any) -> list[str]:
    """Graph inputs whose values an op needs at compile time: those that feed, directly or
    through other ops (not through Shape/Size, which read only a shape), an operand such as
    a Reshape's shape or a Slice's starts. Bind them with ``constant_inputs``."""
    graph = model.graph
    producer = {o: n for n in graph.node for o in n.output if o}
    inputs = {vi.name for vi in graph.input} - {i.name for i in graph.initializer}
    found: list[str] = []
    seen: set[str] = set()
    stack = sorted(_immediate_names(graph))
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        if name in inputs:
            found.append(name)
            continue
        node = producer.get(name)
        if node is None or node.op_type in ("Shape", "Size"):
            continue
        stack.extend(i for i in node.input if i)
    order = [vi.name for vi in graph.input]
    return sorted(found, key=order.index)


def _keep_inline(tensor: Any, immediate: set[str]) -> bool:
    """Whether an initializer stays a constant in the IR instead of becoming a weight."""
    import onnx

    if tensor.name in immediate:
        return True
    numel = int(np.prod(tensor.dims)) if len(tensor.dims) else 1
    is_int = tensor.data_type in (
        onnx.TensorProto.INT64, onnx.TensorProto.INT32, onnx.TensorProto.INT16,
        onnx.TensorProto.INT8, onnx.TensorProto.UINT8, onnx.TensorProto.UINT16,
        onnx.TensorProto.UINT32, onnx.TensorProto.UINT64, onnx.TensorProto.BOOL,
    )
    return numel <= 1 or (is_int and numel <= _MAX_INLINE_INT_ELEMENTS)


def _lift_initializers(model: Any) -> dict[str, np.ndarray]:
    """Turn weight initializers (and large Constant nodes) into graph inputs; return their
    values by name, in the order the new inputs were appended."""
    import onnx
    from onnx import numpy_helper

    graph = model.graph
    immediate = _immediate_names(graph)
    declared = {vi.name for vi in graph.input}
    weights: dict[str, np.ndarray] = {}
    kept = []
    for init in graph.initializer:
        if _keep_inline(init, immediate):
            kept.append(init)
            continue
        weights[init.name] = numpy_helper.to_array(init)
        if init.name not in declared:
            graph.input.append(onnx.helper.make_tensor_value_info(init.name, init.data_type, list(init.dims)))
        else:  # an old-style model declares initialized inputs: make the declaration static
            vi = next(v for v in graph.input if v.name == init.name)
            vi.type.tensor_type.shape.Clear()
            for d in init.dims:
                vi.type.tensor_type.shape.dim.add().dim_value = d
    del graph.initializer[:]
    graph.initializer.extend(kept)
    # Initialized inputs that stayed constants are no longer inputs.
    kept_names = {i.name for i in kept}
    inputs = [vi for vi in graph.input if vi.name not in kept_names]
    del graph.input[:]
    graph.input.extend(inputs)
    # Large Constant nodes: lifted too (their tensor is a weight like an initializer).
    nodes = []
    for node in graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx") and len(node.attribute) == 1:
            attr = node.attribute[0]
            if attr.name == "value" and attr.type == onnx.AttributeProto.TENSOR:
                t = attr.t
                numel = int(np.prod(t.dims)) if len(t.dims) else 1
                if numel > _MAX_INLINE_CONSTANT_ELEMENTS and node.output[0] not in immediate:
                    weights[node.output[0]] = numpy_helper.to_array(t)
                    graph.input.append(
                        onnx.helper.make_tensor_value_info(node.output[0], t.data_type, list(t.dims))
                    )
                    continue
        nodes.append(node)
    if len(nodes) != len(graph.node):
        del graph.node[:]
        graph.node.extend(nodes)
    return weights


def _name_nodes(graph: Any) -> dict[str, str]:
    """Give every unnamed node a unique name ``<OpType>_<index>``; return name -> op type."""
    seen: set[str] = set()
    kinds: dict[str, str] = {}
    for i, node in enumerate(graph.node):
        name = node.name
        if not name or name in seen:
            name = f"{node.op_type}_{i}"
            node.name = name
        seen.add(name)
        kinds[name] = node.op_type
    return kinds


# --------------------------------------------------------------------------------------
# Errors from torch-mlir
# --------------------------------------------------------------------------------------

_ONNX_OP_RE = re.compile(r"onnx\.(\w+)")
_LOC_NAME_RE = re.compile(r'loc\("([^"]+)"\)')
_TORCH_OP_RE = re.compile(r"'torch\.(aten\.[\w.]+|prim\.[\w.]+)'")


def _lowering_error(
    where: str, stage: str, errors: list[tuple[str, str]], exc: BaseException, node_kinds: dict[str, str]
) -> OnnxImportError:
    """One paragraph for a torch-mlir pipeline failure: the ONNX node and what to do."""
    op_type = node = None
    detail = ""
    for loc, msg in errors:
        m = _LOC_NAME_RE.search(loc)
        if m and m.group(1) in node_kinds:
            node = m.group(1)
            op_type = node_kinds[node]
            detail = msg
            break
    if op_type is None:
        for loc, msg in errors:
            m = _ONNX_OP_RE.search(msg) or _ONNX_OP_RE.search(loc)
            if m:
                op_type = m.group(1)
                detail = msg
                break
    if not detail:
        detail = errors[0][1] if errors else _first_line(exc)
    detail = _short(detail)
    aten = _TORCH_OP_RE.search(detail)
    if "failed to legalize operation 'torch.operator'" in detail:
        detail = "torch-mlir has no conversion for this ONNX op (or for these attributes/types)"
    elif aten:
        detail = f"its torch op '{aten.group(1)}' does not lower to linalg ({detail})"
    return _op_error(where, stage, op_type, node, detail)


def _op_error(where: str, stage: str, op_type: str | None, node: str | None, detail: str) -> OnnxImportError:
    alt = nearest_alternative(op_type)
    at = f" (node '{node}')" if node and node != f"{op_type}" else ""
    what = f"ONNX op '{op_type}'{at}" if op_type else "the model"
    hint = f" Nearest supported alternative: {alt}." if alt else ""
    return OnnxImportError(
        f"{where}: torch-mlir cannot lower {what} to linalg-on-tensors ({stage}: {detail}).{hint} "
        "Re-export the model without that op (or with other attributes/dtypes), or compute that "
        "part outside the model.",
        op_type,
        node,
    )


def _short(msg: str, limit: int = 240) -> str:
    msg = msg.strip().splitlines()[0] if msg.strip() else ""
    cut = re.search(r":\s+%[\w#:]+\s*=|:\s+\"", msg)
    if cut:
        msg = msg[: cut.start()]
    return msg if len(msg) <= limit else msg[: limit - 3] + "..."


# --------------------------------------------------------------------------------------
# import_onnx
# --------------------------------------------------------------------------------------


def import_onnx(
    model: Any,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    constant_inputs: Mapping[str, Any] | None = None,
) -> OnnxImportedProgram:
    """Lower an ONNX model to linalg-on-tensors MLIR text, weights as function arguments.

    Args:
        model: an ``onnx.ModelProto`` or the path of an ``.onnx`` file.
        input_shapes: static shapes of graph inputs, by name; needed for every input with a
            dynamic (symbolic or unknown) dimension, allowed for any input.
        constant_inputs: graph inputs bound to fixed values (name -> array): they become
            initializers, so that ops needing compile-time values (a Reshape's shape, a
            Slice's starts) can take them from an input.

    Returns:
        The :class:`OnnxImportedProgram`: the arguments of ``@main`` are the graph inputs (in
        declaration order, ``"input"`` kind) then the lifted initializers (``"parameter"``).

    Constant subgraphs (computed from initializers, constants and static shapes only) are
    evaluated at import time with ONNX's reference evaluator. An op torch-mlir has no
    conversion for but ONNX defines as a function (Attention, RMSNormalization, ...) is
    replaced by its function body and the import retried.

    Raises:
        FrontendError: the file is missing or unreadable; an input is not a tensor or has a
            dynamic shape and no entry in ``input_shapes``.
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
        proto = _inline(proto, None, where)
    if constant_inputs:
        _bind_inputs(proto, constant_inputs, where)

    shapes = _static_inputs(proto, input_shapes, where)
    input_names = list(shapes)
    input_dtypes = {
        vi.name: _np_dtype(vi.type.tensor_type.elem_type) for vi in proto.graph.input if vi.name in shapes
    }
    output_names = [vi.name for vi in proto.graph.output]
    output_dtypes = [_np_dtype(vi.type.tensor_type.elem_type) for vi in proto.graph.output]
    reference = onnx.ModelProto()
    reference.CopyFrom(proto)

    expand: set[str] = set()
    while True:
        prepared, weights_np, node_kinds, importer_expand = _prepare(proto, expand, where)
        try:
            mlir_text, func_names, op_nodes = _lower_isolated(prepared, where, node_kinds, importer_expand)
            break
        except OnnxImportError as e:
            op = e.op_type
            if not op or op in expand or len(expand) >= 16 or not _has_function(op, proto):
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
    return _program_class()(
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


def _inline(proto: Any, ops: set[str] | None, where: str) -> Any:
    """Inline model-local functions (``ops`` None) or the ONNX schema functions ``ops``."""
    from onnx import inliner

    try:
        if ops is None:
            return inliner.inline_local_functions(proto)
        _add_default_attributes(proto.graph, ops, proto)
        return inliner.inline_selected_functions(proto, [("", op) for op in sorted(ops)], inline_schema_functions=True)
    except Exception as e:  # noqa: BLE001
        raise OnnxImportError(f"{where}: inlining ONNX functions failed: {_first_line(e)}.") from None


def _expand_nodes(proto: Any, ops: set[str]) -> bool:
    """Replace every node of ``ops`` by its ONNX function body, node by node (context-
    dependent functions get the node's input types; missing optional inputs stay empty).
    Returns False, changing nothing, when a node cannot be expanded."""
    import onnx

    try:
        from onnx.backend.test.case.node import function_expand_helper
    except ImportError:  # pragma: no cover - onnx without its backend test helpers
        return False
    graph = proto.graph
    version = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 10**6)
    types: dict[str, Any] = {}
    for vi in [*graph.input, *graph.value_info, *graph.output]:
        types[vi.name] = vi.type
    for init in graph.initializer:
        types[init.name] = onnx.helper.make_tensor_type_proto(init.data_type, list(init.dims))
    new_nodes: list[Any] = []
    for i, node in enumerate(graph.node):
        if node.op_type not in ops or node.domain not in ("", "ai.onnx"):
            new_nodes.append(node)
            continue
        try:
            schema = onnx.defs.get_schema(node.op_type, version, domain="")
            cd = [v for v in schema.context_dependent_function_opset_versions if v <= version]
            plain = [v for v in schema.function_opset_versions if v <= version]
            node = onnx.NodeProto.FromString(node.SerializeToString())
            _add_default_attributes_to(node, schema)
            fproto = onnx.FunctionProto()
            if cd and (not plain or max(cd) >= max(plain)):
                in_types = [types.get(n, onnx.TypeProto()) if n else onnx.TypeProto() for n in node.input]
                fproto.ParseFromString(
                    schema.get_context_dependent_function_with_opset_version(
                        max(cd), node.SerializeToString(), [t.SerializeToString() for t in in_types]
                    )
                )
            elif plain:
                fproto.ParseFromString(schema.get_function_with_opset_version(max(plain)))
            else:
                return False
            new_nodes.extend(function_expand_helper(node, fproto, f"{node.name or node.op_type}_{i}__"))
        except Exception:  # noqa: BLE001
            return False
    del graph.node[:]
    graph.node.extend(new_nodes)
    return True


def _add_default_attributes_to(node: Any, schema: Any) -> None:
    import onnx

    present = {a.name for a in node.attribute}
    for name, attr in schema.attributes.items():
        if name not in present and attr.default_value.name:
            default = onnx.AttributeProto()
            default.CopyFrom(attr.default_value)
            default.name = name
            node.attribute.append(default)


def _add_default_attributes(graph: Any, ops: set[str], proto: Any) -> None:
    """Write the schema's default value of every attribute a node of ``ops`` leaves out (a
    function body refers to its attributes by name, defaults included)."""
    import onnx

    version = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 10**6)
    for node in graph.node:
        if node.op_type not in ops or node.domain not in ("", "ai.onnx"):
            continue
        try:
            schema = onnx.defs.get_schema(node.op_type, domain="", max_inclusive_version=version)
        except Exception:  # noqa: BLE001
            continue
        present = {a.name for a in node.attribute}
        for name, attr in schema.attributes.items():
            if name not in present and attr.default_value.name:
                default = onnx.AttributeProto()
                default.CopyFrom(attr.default_value)
                default.name = name
                node.attribute.append(default)


def _bind_inputs(proto: Any, values: Mapping[str, Any], where: str) -> None:
    """Turn the graph inputs named in ``values`` into initializers holding those values."""
    from onnx import numpy_helper

    graph = proto.graph
    names = {vi.name for vi in graph.input}
    unknown = [n for n in values if n not in names]
    if unknown:
        raise FrontendError(
            f"{where}: constant_inputs names {', '.join(map(repr, unknown))}, which is not an "
            f"input of the model; its inputs are {', '.join(repr(n) for n in names)}."
        )
    inits = {i.name for i in graph.initializer}
    for name, value in values.items():
        vi = next(v for v in graph.input if v.name == name)
        if vi.type.WhichOneof("value") != "tensor_type" or isinstance(value, list | tuple):
            raise FrontendError(
                f"{where}: input '{name}' is a {vi.type.WhichOneof('value') or 'value'}, not a tensor; "
                "only tensor inputs are supported (and can be bound to constants)."
            )
        arr = _as_numpy(value)
        want = _np_dtype(vi.type.tensor_type.elem_type)
        if want.kind != "O" and arr.dtype != want:
            arr = arr.astype(want)
        if name in inits:
            init = next(i for i in graph.initializer if i.name == name)
            init.CopyFrom(numpy_helper.from_array(arr, name))
        else:
            graph.initializer.append(numpy_helper.from_array(arr, name))
    keep = [vi for vi in graph.input if vi.name not in values]
    del graph.input[:]
    graph.input.extend(keep)


def _infer(proto: Any, where: str) -> Any:
    import onnx

    try:
        with _quiet():
            return onnx.shape_inference.infer_shapes(proto, data_prop=True)
    except Exception as e:  # noqa: BLE001 - onnx raises InferenceError and others
        raise OnnxImportError(
            f"{where}: ONNX shape inference failed ({_first_line(e)}). Check the model with "
            "onnx.checker.check_model and re-export it.",
        ) from None


def _prepare(proto: Any, expand: set[str], where: str) -> tuple[Any, dict[str, np.ndarray], dict[str, str], frozenset[str]]:
    """The model as torch-mlir gets it: ``expand`` ops inlined, constants folded, weights
    lifted to inputs, nodes named, shapes inferred. Returns (model, weights, node kinds, ops
    for torch-mlir's importer to expand)."""
    import onnx

    work = onnx.ModelProto()
    work.CopyFrom(proto)
    expand = set(expand) | _forced_expansions(work.graph)
    importer_expand: frozenset[str] = frozenset()
    if expand:
        work = _infer(work, where)
        try:
            work = _inline(work, expand, where)
        except OnnxImportError:
            # ONNX's inliner cannot take some nodes (optional inputs left out in the middle):
            # expand them one by one as ONNX's own backend tests do, else let torch-mlir's
            # importer expand those ops into private functions.
            if not _expand_nodes(work, expand):
                importer_expand = frozenset(expand)
    for _ in range(6):  # folding exposes static shapes, which expose more folding
        work = _infer(work, where)
        folded = _fold_constants(work)
        unrolled = _unroll_loops(work)
        if not (_inline_constant_ifs(work) or folded or unrolled):
            break
    if _explicit_quant(work):
        work = _infer(work, where)
    _check_known_wrong(work, where)
    if _decompose(work):
        work = _infer(work, where)
    if _widen_unsigned(work):
        work = _infer(work, where)
    if _lower_narrow_types(work):
        work = _infer(work, where)
    weights = _lift_initializers(work)
    node_kinds = _name_nodes(work.graph)
    _inline_small_constants(work)
    work = _infer(work, where)
    for vi in list(work.graph.output) + list(work.graph.input):
        et = vi.type.tensor_type.elem_type
        if et in _UNSUPPORTED_TYPES:
            raise OnnxImportError(
                f"{where}: '{vi.name}' has element type {_dtype_name(et)}, which the compiler does not "
                "support (float32/16/64, bfloat16, integers and bool are). Convert it with a Cast "
                "before export.",
            )
    _check_types(work, where)
    return work, weights, node_kinds, importer_expand


# --------------------------------------------------------------------------------------
# Ops torch-mlir lowers with other semantics than ONNX: expanded, decomposed or refused
# --------------------------------------------------------------------------------------


def _attr(node: Any, name: str, default: Any = None) -> Any:
    import onnx

    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _forced_expansions(graph: Any) -> set[str]:
    """Ops lowered through their ONNX function body because torch-mlir's direct lowering
    computes something else:

    - ``Gelu`` with ``approximate="tanh"``: torch-mlir uses 0.797724 for sqrt(2/pi)
      (0.7978846), a 2e-4 relative error in the constant;
    - ``NegativeLogLikelihoodLoss`` / ``SoftmaxCrossEntropyLoss`` with class weights and
      ``reduction="mean"``: torch-mlir truncates the sum of the weights to an integer.
    """
    ops: set[str] = set()
    for node in graph.node:
        if node.domain not in ("", "ai.onnx"):
            continue
        if node.op_type == "Gelu" and _attr(node, "approximate", b"none") in (b"tanh", "tanh"):
            ops.add("Gelu")
        if node.op_type in ("NegativeLogLikelihoodLoss", "SoftmaxCrossEntropyLoss"):
            weighted = len(node.input) > 2 and node.input[2] != ""
            if weighted and _attr(node, "reduction", b"mean") in (b"mean", "mean"):
                ops.add(node.op_type)
    return ops


def _check_known_wrong(proto: Any, where: str) -> None:
    """Refuse ONNX ops (with the attributes) that torch-mlir lowers to different numbers
    than ONNX specifies, found by the ONNX backend node tests: a refusal is better than a
    wrong result."""
    graph = proto.graph
    inits = {i.name: i for i in graph.initializer}
    shapes: dict[str, list[int]] = {}
    for vi in [*graph.input, *graph.value_info, *graph.output]:
        if vi.type.WhichOneof("value") == "tensor_type" and vi.type.tensor_type.HasField("shape"):
            shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else -1 for d in vi.type.tensor_type.shape.dim]
    for i in inits.values():
        shapes[i.name] = list(i.dims)

    def elem(name: str) -> int | None:
        if name in inits:
            return inits[name].data_type
        for vi in [*graph.input, *graph.value_info, *graph.output]:
            if vi.name == name:
                return vi.type.tensor_type.elem_type
        return None

    import onnx
    from onnx import numpy_helper

    for node in graph.node:
        if node.domain not in ("", "ai.onnx"):
            continue
        why = None
        op = node.op_type
        if op == "DequantizeLinear" and len(node.input) > 2 and node.input[2]:
            zp = node.input[2]
            if elem(zp) == onnx.TensorProto.UINT8 and int(np.prod(shapes.get(zp, [1]) or [1])) > 1:
                why = "a per-axis uint8 zero point is sign-extended (values >= 128 come out wrong)"
        elif op == "QLinearMatMul" and any(len(shapes.get(node.input[k], [])) > 2 for k in (0, 3)):
            why = "for inputs of rank > 2 the zero points of A and B are ignored"
        elif op == "GridSample" and _attr(node, "mode", b"linear") in (b"nearest", "nearest"):
            why = "mode='nearest' rounds grid coordinates differently"
        elif op == "LSTM" and len(node.input) > 7 and node.input[7]:
            why = "the peephole weights (input P) are ignored"
        elif op == "SpaceToDepth" and _attr(node, "mode", b"DCR") in (b"CRD", "CRD"):
            why = "mode='CRD' is lowered as 'DCR'"
        elif op == "Resize" and _attr(node, "coordinate_transformation_mode", b"half_pixel") in (b"align_corners", "align_corners"):
            scales = node.input[2] if len(node.input) > 2 else ""
            x_shape = shapes.get(node.input[0], [])
            if scales and scales in inits and x_shape and all(d > 0 for d in x_shape):
                factors = numpy_helper.to_array(inits[scales]).astype(np.float64)
                if factors.size == len(x_shape) and any(
                    abs(d * f - round(d * f)) > 1e-6 for d, f in zip(x_shape, factors, strict=True)
                ):
                    why = "align_corners with scales that give a fractional output size uses the scale, not the sizes"
        if why:
            raise OnnxImportError(
                f"{where}: ONNX op '{op}' (node '{node.name or op}'): torch-mlir's lowering computes "
                f"different numbers than ONNX specifies here ({why}); refused rather than compiled "
                "wrong. Re-export without that option or compute that part outside the model.",
                op,
                node.name or None,
            )


def _rewrite_node(node: Any, graph: Any, types: dict[str, int], shapes: dict[str, list[int]], version: int) -> list[Any] | None:
    """ONNX nodes replacing ``node`` (see :func:`_decompose`), or None to keep it."""
    import onnx
    from onnx import helper, numpy_helper

    if node.domain not in ("", "ai.onnx"):
        return None
    op = node.op_type
    if version >= 9 and (kept := onnx_nan.rewrite(node, graph, types, shapes, version)) is not None:
        return kept  # Clip/Sign/Max/Min/ArgMax/ArgMin/Hardmax keeping NaN as ONNX does (onnx_nan.py)
    base = f"{node.name or op}__rdu"

    def const(value: np.ndarray, suffix: str) -> str:
        t = numpy_helper.from_array(value, f"{base}_{suffix}")
        graph.initializer.append(t)
        return t.name

    def axes_node(kind: str, x: str, axes: list[int], out: str, **kw: Any) -> Any:
        # Unsqueeze/Squeeze take axes as an input from opset 13, reductions from opset 18.
        as_input = version >= (13 if kind in ("Unsqueeze", "Squeeze", "ReduceSum") else 18)
        if as_input:
            return helper.make_node(kind, [x, const(np.array(axes, np.int64), f"{kind}{len(graph.initializer)}")], [out], **kw)
        return helper.make_node(kind, [x], [out], axes=axes, **kw)

    if op in ("Softmax", "LogSoftmax") and types.get(node.input[0]) == onnx.TensorProto.FLOAT16 and node.input[0] in shapes:
        # ONNX defines (Log)Softmax on float16 op by op in float16 (its function body; the
        # reference rounds exp(x - max) to float16 before the sum and the division);
        # torch-mlir computes the whole softmax in float32 and rounds once, one ulp off.
        rank = len(shapes[node.input[0]])
        axis = int(_attr(node, "axis", -1 if version >= 13 else 1))
        axis = axis % max(rank, 1)
        if version < 13 and axis != rank - 1:
            return None  # opset < 13 coerces to 2-D over all axes from `axis`
        x, out = node.input[0], node.output[0]
        nodes = [
            axes_node("ReduceMax", x, [axis], f"{base}_max", keepdims=1),
            helper.make_node("Sub", [x, f"{base}_max"], [f"{base}_shift"]),
            helper.make_node("Exp", [f"{base}_shift"], [f"{base}_exp"]),
            axes_node("ReduceSum", f"{base}_exp", [axis], f"{base}_sum", keepdims=1),
        ]
        if op == "Softmax":
            return [*nodes, helper.make_node("Div", [f"{base}_exp", f"{base}_sum"], [out], name=node.name)]
        return [
            *nodes,
            helper.make_node("Div", [f"{base}_exp", f"{base}_sum"], [f"{base}_sm"]),
            helper.make_node("Log", [f"{base}_sm"], [out], name=node.name),
        ]
    if op == "Dropout":
        # Inference, or training with ratio 0: the identity, and an all-true mask (training
        # with a nonzero ratio needs random masks: left to torch-mlir, which refuses it).
        inits = {i.name: i for i in graph.initializer}

        def scalar(k: int, default: Any) -> Any:
            if k >= len(node.input) or not node.input[k]:
                return default
            if node.input[k] not in inits:
                return None
            return numpy_helper.to_array(inits[node.input[k]]).reshape(-1)[0].item()

        training, ratio = scalar(2, False), scalar(1, 0.5)
        if training is None or (training and ratio != 0):
            return None
        x = node.input[0]
        out = [helper.make_node("Identity", [x], [node.output[0]], name=node.name)]
        if len(node.output) > 1 and node.output[1]:
            if x not in shapes:
                return None
            out.append(helper.make_node("Identity", [const(np.ones(shapes[x], np.bool_), "mask")], [node.output[1]]))
        return out
    if op == "MatMul" and all(n in shapes for n in node.input):
        ra, rb = len(shapes[node.input[0]]), len(shapes[node.input[1]])
        a, b = node.input
        out = node.output[0]
        if ra == 1 and rb >= 3:
            return [
                axes_node("Unsqueeze", a, [0], f"{base}_a2"),
                helper.make_node("MatMul", [f"{base}_a2", b], [f"{base}_c2"], name=node.name),
                axes_node("Squeeze", f"{base}_c2", [-2], out),
            ]
        if rb == 1 and ra >= 3:
            return [
                axes_node("Unsqueeze", b, [1], f"{base}_b2"),
                helper.make_node("MatMul", [a, f"{base}_b2"], [f"{base}_c2"], name=node.name),
                axes_node("Squeeze", f"{base}_c2", [-1], out),
            ]
        return None
    if op == "CumProd" and node.input[0] in shapes and node.input[1] in {i.name for i in graph.initializer}:
        # cumprod along an axis of length n: the product over k of x[k] masked to 1 where
        # k is not (yet) included for output position i (an n x n mask).
        shape = shapes[node.input[0]]
        axis_init = next(i for i in graph.initializer if i.name == node.input[1])
        a = int(np.asarray(numpy_helper.to_array(axis_init)).reshape(-1)[0]) % max(len(shape), 1)
        n = shape[a]
        if n > 256:
            return None
        i, k = np.arange(n)[:, None], np.arange(n)[None, :]
        exclusive, reverse = int(_attr(node, "exclusive", 0)), int(_attr(node, "reverse", 0))
        mask = (k >= i) if reverse else (k <= i)
        if exclusive:
            mask &= k != i
        mask = mask.reshape([1] * a + [n, n] + [1] * (len(shape) - a - 1))
        dtype = onnx.helper.tensor_dtype_to_np_dtype(types[node.input[0]])
        x = node.input[0]
        return [
            axes_node("Unsqueeze", x, [a], f"{base}_xk"),
            helper.make_node("Where", [const(mask, "mask"), f"{base}_xk", const(np.ones((), dtype), "one")], [f"{base}_w"]),
            axes_node("ReduceProd", f"{base}_w", [a + 1], node.output[0], keepdims=0),
        ]
    return None


#: Scan / Loop bodies are unrolled up to this many iterations.
_MAX_UNROLL = 64


def _body_nodes(body: Any, prefix: str, bind: dict[str, str]) -> tuple[list[Any], dict[str, str]]:
    """Copies of a loop body's nodes for one iteration: body inputs bound to outer names
    (``bind``), names defined inside prefixed, outer-scope names kept. Returns the nodes and
    the map body name -> outer name (for the body's outputs)."""
    from onnx import numpy_helper

    inner = {o for n in body.node for o in n.output if o} | {i.name for i in body.initializer}
    names = dict(bind)
    for x in inner:
        names.setdefault(x, prefix + x)
    nodes = []
    for init in body.initializer:
        nodes.append(("init", numpy_helper.from_array(numpy_helper.to_array(init), names[init.name])))
    for n in body.node:
        m = type(n)()
        m.CopyFrom(n)
        m.name = prefix + (n.name or n.op_type)
        m.input[:] = [names.get(i, i) if i else "" for i in n.input]
        m.output[:] = [names[o] if o else "" for o in n.output]
        nodes.append(("node", m))
    return nodes, names


def _unroll_loops(proto: Any) -> bool:
    """Unroll ``Scan`` (opset >= 9; sequence length from static shapes) and ``Loop`` (a
    constant trip count, a condition that stays true) of at most :data:`_MAX_UNROLL`
    iterations into plain nodes: torch-mlir has no conversion for either. Bodies with
    nested subgraphs are left alone, and so are stacked outputs before opset 13 (they are
    built with Unsqueeze, whose opset-1 form torch-mlir does not convert)."""
    import onnx
    from onnx import helper, numpy_helper

    graph = proto.graph
    version = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 1)
    inits = {i.name: i for i in graph.initializer}
    shapes: dict[str, list[int]] = {}
    for v in [*graph.input, *graph.value_info, *graph.output]:
        tt = v.type.tensor_type if v.type.WhichOneof("value") == "tensor_type" else None
        if tt is not None and tt.HasField("shape") and all(d.HasField("dim_value") for d in tt.shape.dim):
            shapes[v.name] = [int(d.dim_value) for d in tt.shape.dim]
    for i in graph.initializer:
        shapes[i.name] = list(i.dims)
    new_nodes: list[Any] = []
    changed = False

    def const(value: Any, name: str) -> str:
        graph.initializer.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def axes_input(node_inputs: list[str], axes: list[int], name: str) -> dict[str, Any]:
        if version >= 13:
            node_inputs.append(const(np.array(axes, np.int64), name))
            return {}
        return {"axes": axes}

    for k, node in enumerate(graph.node):
        body = _attr(node, "body")
        if node.op_type not in ("Scan", "Loop") or node.domain not in ("", "ai.onnx") or body is None or (node.op_type == "Scan" and version < 9):
            new_nodes.append(node)
            continue
        if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for n in body.node for a in n.attribute):
            new_nodes.append(node)
            continue
        prefix0 = f"{node.name or node.op_type}_{k}__"
        out: list[Any] = []
        if node.op_type == "Scan":
            m = int(_attr(node, "num_scan_inputs"))
            n_state = len(node.input) - m
            xs = list(node.input[n_state:])
            in_axes = list(_attr(node, "scan_input_axes", [0] * m))
            in_dirs = list(_attr(node, "scan_input_directions", [0] * m))
            n_out = len(body.output) - n_state
            out_axes = list(_attr(node, "scan_output_axes", [0] * n_out))
            out_dirs = list(_attr(node, "scan_output_directions", [0] * n_out))
            if not xs or any(x not in shapes for x in xs):
                new_nodes.append(node)
                continue
            lengths = {shapes[x][a % len(shapes[x])] for x, a in zip(xs, in_axes, strict=True)}
            if len(lengths) != 1 or next(iter(lengths)) > _MAX_UNROLL or (n_out and version < 13):
                new_nodes.append(node)
                continue
            steps = next(iter(lengths))
            state = list(node.input[:n_state])
            per_step: list[list[str]] = [[] for _ in range(n_out)]
            for t in range(steps):
                prefix = f"{prefix0}{t}__"
                bind = dict(zip([b.name for b in body.input[:n_state]], state, strict=True))
                for j, (x, a, d) in enumerate(zip(xs, in_axes, in_dirs, strict=True)):
                    idx = const(np.array(steps - 1 - t if d else t, np.int64), f"{prefix}idx{j}")
                    elem = f"{prefix}elem{j}"
                    out.append(("node", helper.make_node("Gather", [x, idx], [elem], axis=a % len(shapes[x]))))
                    bind[body.input[n_state + j].name] = elem
                nodes, names = _body_nodes(body, prefix, bind)
                out += nodes
                state = [names.get(o.name, o.name) for o in body.output[:n_state]]
                for c, o in enumerate(body.output[n_state:]):
                    per_step[c].append(names.get(o.name, o.name))
            finals = list(node.output[:n_state])
            for name, value in zip(finals, state, strict=True):
                if name:
                    out.append(("node", helper.make_node("Identity", [value], [name])))
            for c, name in enumerate(node.output[n_state:]):
                if not name:
                    continue
                elems = per_step[c][::-1] if out_dirs[c] else per_step[c]
                axis = out_axes[c]
                stacked = []
                for t, e in enumerate(elems):
                    ins = [e]
                    kw = axes_input(ins, [axis], f"{prefix0}uaxes{c}_{t}")
                    stacked.append(f"{prefix0}u{c}_{t}")
                    out.append(("node", helper.make_node("Unsqueeze", ins, [stacked[-1]], **kw)))
                out.append(("node", helper.make_node("Concat", stacked, [name], axis=axis)))
        else:  # Loop
            trip = node.input[0] if node.input else ""
            cond = node.input[1] if len(node.input) > 1 else ""
            if not trip or trip not in inits:
                new_nodes.append(node)
                continue
            steps = int(np.asarray(numpy_helper.to_array(inits[trip])).reshape(-1)[0])
            cond_ok = not cond or (cond in inits and bool(np.asarray(numpy_helper.to_array(inits[cond])).reshape(-1)[0]))
            body_cond_in, body_cond_out = body.input[1].name, body.output[0].name
            passthrough = body_cond_out == body_cond_in or any(
                n.op_type == "Identity" and list(n.input) == [body_cond_in] and list(n.output) == [body_cond_out] for n in body.node
            )
            stacks = len(body.output) - 1 - (len(node.input) - 2)
            if steps < 1 or steps > _MAX_UNROLL or not cond_ok or not passthrough or (stacks and version < 13):
                new_nodes.append(node)
                continue
            n_state = len(node.input) - 2
            n_scan = len(body.output) - 1 - n_state
            state = list(node.input[2:])
            per_step = [[] for _ in range(n_scan)]
            for t in range(steps):
                prefix = f"{prefix0}{t}__"
                bind = {body.input[0].name: const(np.array(t, np.int64), f"{prefix}iter"),
                        body.input[1].name: const(np.array(True), f"{prefix}cond")}
                bind.update(zip([b.name for b in body.input[2:]], state, strict=True))
                nodes, names = _body_nodes(body, prefix, bind)
                out += nodes
                state = [names.get(o.name, o.name) for o in body.output[1 : 1 + n_state]]
                for c, o in enumerate(body.output[1 + n_state :]):
                    per_step[c].append(names.get(o.name, o.name))
            for name, value in zip(node.output[:n_state], state, strict=True):
                if name:
                    out.append(("node", helper.make_node("Identity", [value], [name])))
            for c, name in enumerate(node.output[n_state:]):
                if not name:
                    continue
                stacked = []
                for t, e in enumerate(per_step[c]):
                    ins = [e]
                    kw = axes_input(ins, [0], f"{prefix0}uaxes{c}_{t}")
                    stacked.append(f"{prefix0}u{c}_{t}")
                    out.append(("node", helper.make_node("Unsqueeze", ins, [stacked[-1]], **kw)))
                out.append(("node", helper.make_node("Concat", stacked, [name], axis=0)))
        for kind, item in out:
            if kind == "init":
                graph.initializer.append(item)
            else:
                new_nodes.append(item)
        changed = True
    if changed:
        del graph.node[:]
        graph.node.extend(new_nodes)
    return changed


def _inline_constant_ifs(proto: Any) -> bool:
    """Replace each ``If`` whose condition is a constant by the nodes of the branch taken
    (internal names prefixed; the branch's outputs become the If's outputs)."""
    from onnx import numpy_helper

    graph = proto.graph
    inits = {i.name: i for i in graph.initializer}
    nodes, changed = [], False
    for k, node in enumerate(graph.node):
        if node.op_type != "If" or node.domain not in ("", "ai.onnx") or node.input[0] not in inits:
            nodes.append(node)
            continue
        cond = bool(np.asarray(numpy_helper.to_array(inits[node.input[0]])).reshape(-1)[0])
        branch = _attr(node, "then_branch" if cond else "else_branch")
        if branch is None or len(branch.output) != len(node.output):
            nodes.append(node)
            continue
        prefix = f"{node.name or 'If'}_{k}__"
        inner = {o for n in branch.node for o in n.output if o} | {i.name for i in branch.initializer}
        rename = {o.name: new for o, new in zip(branch.output, node.output, strict=True)}

        def name(x: str, inner: set[str] = inner, rename: dict[str, str] = rename, prefix: str = prefix) -> str:
            if x in rename:
                return rename[x]
            return prefix + x if x in inner else x

        for init in branch.initializer:
            t = numpy_helper.from_array(numpy_helper.to_array(init), name(init.name))
            graph.initializer.append(t)
        for n in branch.node:
            m = type(n)()
            m.CopyFrom(n)
            m.name = prefix + (n.name or n.op_type)
            m.input[:] = [name(i) if i else "" for i in n.input]
            m.output[:] = [name(o) if o else "" for o in n.output]
            nodes.append(m)
        # A branch output that is an outer value or input: pass it through.
        for o, new in zip(branch.output, node.output, strict=True):
            if o.name not in inner:
                from onnx import helper

                nodes.append(helper.make_node("Identity", [o.name], [new]))
        changed = True
    if changed:
        del graph.node[:]
        graph.node.extend(nodes)
    return changed


def _types_and_shapes(graph: Any) -> tuple[dict[str, int], dict[str, list[int]]]:
    """Element type of every declared tensor (inputs, outputs, value_info, initializers)
    and the shape of those whose dims are all static."""
    types: dict[str, int] = {}
    shapes: dict[str, list[int]] = {}
    for v in [*graph.input, *graph.output, *graph.value_info]:
        if v.type.WhichOneof("value") == "tensor_type":
            types[v.name] = v.type.tensor_type.elem_type
            tt = v.type.tensor_type
            if tt.HasField("shape") and all(d.HasField("dim_value") for d in tt.shape.dim):
                shapes[v.name] = [int(d.dim_value) for d in tt.shape.dim]
    for i in graph.initializer:
        types[i.name] = i.data_type
        shapes[i.name] = list(i.dims)
    return types, shapes


def _decompose(proto: Any) -> bool:
    """Rewrite ops whose torch-mlir lowering differs from ONNX into ONNX ops it lowers right:

    - ``LpNormalization``: x / norm, with the norm of an all-zero vector taken as 1 (ONNX
      gives 0 there; torch-mlir's lowering gives 0/0 = NaN);
    - ``CastLike``: a ``Cast`` to the target's element type (the target is not read);
    - inference ``Dropout``, or training with ratio 0: the identity (and an all-true mask);
    - ``MatMul`` of a 1-D operand with one of rank >= 3 (torch-mlir's aten.matmul does not
      lower it): through an unsqueezed 2-D operand;
    - ``CumProd`` with a constant axis (torch-mlir has no conversion): a masked
      ``ReduceProd`` over an n x n mask;
    - ``Softmax`` / ``LogSoftmax`` on float16: op by op in float16, as ONNX defines them
      (torch-mlir computes them in float32 and rounds once).
    - float ``Clip``, ``Sign``, ``Max``, ``Min``, ``ArgMax``, ``ArgMin``, ``Hardmax``: NaN kept (``onnx_nan.py``).

    Returns whether anything was rewritten.
    """
    import onnx
    from onnx import helper, numpy_helper

    graph = proto.graph
    version = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 1)
    types, shapes = _types_and_shapes(graph)
    nodes, changed = [], False
    for node in graph.node:
        if node.op_type == "CastLike" and node.domain in ("", "ai.onnx") and node.input[1] in types:
            # Only the target's type matters: a Cast, and the target is no longer read.
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            nodes.append(helper.make_node("Cast", [node.input[0]], list(node.output), name=node.name, to=types[node.input[1]], **attrs))
            changed = True
            continue
        rewritten = _rewrite_node(node, graph, types, shapes, version)
        if rewritten is not None:
            nodes.extend(rewritten)
            changed = True
            continue
        if node.op_type != "LpNormalization" or node.domain not in ("", "ai.onnx") or node.input[0] not in types:
            nodes.append(node)
            continue
        p = int(_attr(node, "p", 2))
        axis = int(_attr(node, "axis", -1))
        if p not in (1, 2):
            nodes.append(node)
            continue
        x, y = node.input[0], node.output[0]
        base = f"{node.name or 'LpNormalization'}__rdu"
        dtype = onnx.helper.tensor_dtype_to_np_dtype(types[x])
        reduce = "ReduceL2" if p == 2 else "ReduceL1"
        if version >= 18:
            axes = numpy_helper.from_array(np.array([axis], dtype=np.int64), f"{base}_axes")
            graph.initializer.append(axes)
            nodes.append(helper.make_node(reduce, [x, axes.name], [f"{base}_norm"], keepdims=1))
        else:
            nodes.append(helper.make_node(reduce, [x], [f"{base}_norm"], axes=[axis], keepdims=1))
        zero = numpy_helper.from_array(np.zeros((), dtype=dtype), f"{base}_zero")
        one = numpy_helper.from_array(np.ones((), dtype=dtype), f"{base}_one")
        graph.initializer.extend([zero, one])
        nodes += [
            helper.make_node("Equal", [f"{base}_norm", zero.name], [f"{base}_is0"]),
            helper.make_node("Where", [f"{base}_is0", one.name, f"{base}_norm"], [f"{base}_safe"]),
            helper.make_node("Div", [x, f"{base}_safe"], [y], name=node.name),
        ]
        changed = True
    if changed:
        del graph.node[:]
        graph.node.extend(nodes)
    return changed


#: Ops computed exactly on the wider signed type for values of an unsigned 16/32-bit one.
_WIDEN_EXACT = {
    "Equal", "Greater", "GreaterOrEqual", "Less", "LessOrEqual", "Max", "Min", "Div", "Mod",
    "BitwiseAnd", "BitwiseOr", "BitwiseXor", "Identity", "Reshape", "Transpose", "Squeeze",
    "Unsqueeze", "Flatten", "Concat", "Slice", "Gather", "Expand", "Where", "Abs", "ReduceMax",
    "ReduceMin", "ArgMax", "ArgMin", "Tile", "Sign",
}
#: Ops whose unsigned result wraps around: computed wide, then reduced modulo 2**bits.
_WIDEN_WRAP = {"Add", "Sub", "Mul", "Neg", "BitwiseNot", "Sum"}
#: Ops that give the same bits on int64 as on uint64 (two's complement): uint64 is computed
#: as int64 only where every op is one of these (left shifts too).
_SAME_BITS_64 = {
    "Add", "Sub", "Mul", "Neg", "Sum", "BitwiseAnd", "BitwiseOr", "BitwiseXor", "BitwiseNot",
    "Equal", "Identity", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Concat",
    "Slice", "Gather", "Expand", "Where", "Tile",
}


def _widen_unsigned(proto: Any) -> bool:
    """Compute uint16 / uint32 tensors (which torch-mlir cannot lower) as int32 / int64.

    Every value keeps its number (the wider signed type holds all of them); ops whose
    result wraps around (Add, Sub, Mul, left shifts, ...) are followed by a reduction
    modulo 2**16 / 2**32, so results are those of the unsigned type. uint64 is computed as
    int64 (same bits) where only ops with identical two's-complement bits touch it. Applies only when
    every op touching such a tensor is one this handles; otherwise nothing changes (and
    the element type is refused as before). Returns whether the model was rewritten.
    """
    import onnx
    from onnx import helper, numpy_helper

    T = onnx.TensorProto
    wide: dict[int, tuple[int, int | None]] = {T.UINT16: (T.INT32, 1 << 16), T.UINT32: (T.INT64, 1 << 32), T.UINT64: (T.INT64, None)}
    graph = proto.graph
    types, _ = _types_and_shapes(graph)
    narrow = {n for n, t in types.items() if t in wide}
    casts = [n for n in graph.node if n.op_type == "Cast" and _attr(n, "to") in wide]
    if not narrow and not casts:
        return False
    for node in graph.node:
        touched = [n for n in [*node.input, *node.output] if n in narrow]
        if node.op_type == "Cast" and _attr(node, "to") == T.UINT64:
            return False  # a cast to uint64 does not wrap like one to int64
        if node.op_type in ("Cast", "Constant"):
            continue
        if not touched:
            continue
        if node.domain not in ("", "ai.onnx") or any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
            return False
        op = node.op_type
        left = op == "BitShift" and _attr(node, "direction") in (b"LEFT", "LEFT")
        if any(types.get(n) == T.UINT64 for n in touched):
            if op in _SAME_BITS_64 or left:
                continue
            return False
        if op == "BitShift" or op in _WIDEN_EXACT or op in _WIDEN_WRAP:
            continue
        if op == "Pow" and node.input[0] not in narrow:
            continue  # an unsigned exponent only
        return False
    for node in graph.node:
        if node.op_type == "Constant" and any(a.type == onnx.AttributeProto.TENSOR and a.t.data_type in wide for a in node.attribute):
            return False
    # Rewrite: types, initializers, casts, and a modulo after each wrapping op.
    for v in [*graph.input, *graph.output]:
        if v.type.WhichOneof("value") == "tensor_type" and v.type.tensor_type.elem_type in wide:
            v.type.tensor_type.elem_type = wide[v.type.tensor_type.elem_type][0]
    inits = []
    for init in graph.initializer:
        if init.data_type in wide:
            arr = numpy_helper.to_array(init).astype(onnx.helper.tensor_dtype_to_np_dtype(wide[init.data_type][0]))
            init = numpy_helper.from_array(arr, init.name)
        inits.append(init)
    del graph.initializer[:]
    graph.initializer.extend(inits)
    nodes = []
    for k, node in enumerate(graph.node):
        out = node.output[0] if node.output else ""
        width = None
        if node.op_type == "Cast" and _attr(node, "to") in wide:
            width = _attr(node, "to")
            for a in node.attribute:
                if a.name == "to":
                    a.i = wide[width][0]
        elif out in narrow and (node.op_type in _WIDEN_WRAP or (node.op_type == "BitShift" and _attr(node, "direction") in (b"LEFT", "LEFT"))):
            width = types[out]
        if width is None:
            nodes.append(node)
            continue
        wide_t, modulus = wide[width]
        if modulus is None:  # uint64 as int64: the bits are already right
            nodes.append(node)
            continue
        raw = f"{out}__rdu_wide{k}"
        mod = numpy_helper.from_array(np.array(modulus, dtype=onnx.helper.tensor_dtype_to_np_dtype(wide_t)), f"{out}__rdu_mod{k}")
        graph.initializer.append(mod)
        node.output[0] = raw
        nodes += [node, helper.make_node("Mod", [raw, mod.name], [out], fmod=0)]
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.value_info[:]
    return True


#: Element types below 8 bits and float8/float4 (no numpy arithmetic, no torch-mlir
#: lowering) -> the type they are computed in: every value of theirs is exact there.
def _narrow_types() -> dict[int, int]:
    import onnx

    T = onnx.TensorProto
    wide = {
        "INT4": T.INT8, "INT2": T.INT8, "UINT4": T.UINT8, "UINT2": T.UINT8, "FLOAT4E2M1": T.FLOAT,
        "FLOAT8E4M3FN": T.FLOAT, "FLOAT8E4M3FNUZ": T.FLOAT, "FLOAT8E5M2": T.FLOAT, "FLOAT8E5M2FNUZ": T.FLOAT,
    }
    return {getattr(T, n): w for n, w in wide.items() if hasattr(T, n)}


_NARROW_CACHE: dict[tuple[int, bool], tuple[np.ndarray, np.ndarray, float] | None] = {}


def _f32_key(x: np.ndarray) -> np.ndarray:
    """float32 -> int64 keys in the order of the values (-0.0 just below +0.0); an involution."""
    i = np.asarray(x, np.float32).view(np.int32).astype(np.int64)
    return np.where(i < 0, -(i & 0x7FFFFFFF) - 1, i)


def _f32_of_key(k: np.ndarray) -> np.ndarray:
    k = np.asarray(k, np.int64)
    i = np.where(k < 0, (-(k + 1)) | -0x80000000, k)
    return i.astype(np.int32).view(np.float32)


def _narrow_float_table(to: int, saturate: bool) -> tuple[np.ndarray, np.ndarray, float] | None:
    """How ONNX's reference casts float32 to the narrow float type ``to``, as a step function:
    (thresholds t ascending, values v with len(t) + 1 entries, value of NaN) such that
    cast(x) = v[#{j: x >= t[j]}] for every non-NaN float32 x. The thresholds are found on the
    reference cast itself (a bisection per step between adjacent representable values), and
    the table is checked on every threshold +-1 ulp and on random values; None if the
    reference is not such a step function."""
    key = (to, saturate)
    if key in _NARROW_CACHE:
        return _NARROW_CACHE[key]
    import onnx
    from onnx.reference.ops.op_cast import cast_to

    def ref(x: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            return np.asarray(cast_to(np.asarray(x, np.float32), to, saturate)).astype(np.float32)

    def same(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return (a == b) | (np.isnan(a) & np.isnan(b))

    result: tuple[np.ndarray, np.ndarray, float] | None = None
    try:
        dtype = onnx.helper.tensor_dtype_to_np_dtype(to)
        bits = 16 if np.dtype(dtype).itemsize == 1 and "float4" in np.dtype(dtype).name else 256
        with np.errstate(all="ignore"):
            allv = np.arange(bits, dtype=np.uint8).view(dtype).astype(np.float32)
        vals = np.unique(allv[np.isfinite(allv)])  # -0.0 and +0.0 merge
        big = np.float32(np.finfo(np.float32).max)
        # the values below the lowest and above the highest finite value (saturation or overflow)
        lo_v, hi_v = ref(np.array([-np.inf]))[0], ref(np.array([np.inf]))[0]
        lows = [] if same(ref(np.array([-big])), vals[:1])[0] and same(np.array([lo_v]), vals[:1])[0] else [lo_v]
        highs = [] if same(ref(np.array([big])), vals[-1:])[0] and same(np.array([hi_v]), vals[-1:])[0] else [hi_v]
        table = np.array([*lows, *vals, *highs], np.float32)
        # step j goes from table[j] to table[j + 1]: bisect between two keys where it happens
        lo_k = _f32_key(np.array([-big] * len(lows) + list(vals) + [vals[-1]] * len(highs), np.float32))
        hi_k = _f32_key(np.array([vals[0]] * len(lows) + list(vals[1:]) + [big] * len(highs), np.float32))
        lo_k, hi_k = lo_k[: len(table) - 1], hi_k[: len(table) - 1]
        want = table[1:]
        if not np.all(same(ref(_f32_of_key(hi_k)), want)):
            raise ValueError("not a step function")
        while np.any(hi_k - lo_k > 1):
            mid = (lo_k + hi_k) // 2
            up = same(ref(_f32_of_key(mid)), want)
            hi_k = np.where(up, mid, hi_k)
            lo_k = np.where(up, lo_k, mid)
        thresholds = _f32_of_key(hi_k)
        nan_v = float(ref(np.array([np.nan]))[0])
        rng = np.random.default_rng(0)
        span = float(np.max(np.abs(vals))) * 1.5
        probe = np.concatenate([
            _f32_of_key(hi_k), _f32_of_key(hi_k - 1), _f32_of_key(hi_k + 1), vals, -vals,
            rng.uniform(-span, span, 20000).astype(np.float32),
            (rng.standard_normal(20000) * np.float32(span / 64)).astype(np.float32),
            np.array([np.inf, -np.inf, big, -big, 0.0, -0.0], np.float32),
        ]).astype(np.float32)
        idx = np.sum(probe[:, None] >= thresholds[None, :], axis=1)
        if not np.all(same(table[idx], ref(probe))):
            raise ValueError("table disagrees with the reference")
        result = (thresholds.astype(np.float32), table, nan_v)
    except Exception:  # noqa: BLE001 - no table: the cast stays refused
        result = None
    _NARROW_CACHE[key] = result
    return result


def _plan_narrow_quant(node: Any, types: dict[str, int], shapes: dict[str, list[int]], byte: bool = False) -> tuple[str, Any] | None:
    """How :func:`_lower_narrow_types` rewrites a (De)QuantizeLinear with a narrow quantized
    type (scalar or per-axis scale and zero point), or None to refuse it. ``byte``: plan
    int8/uint8 instead (see :func:`_explicit_quant`)."""
    import onnx

    T = onnx.TensorProto
    wide = {T.INT8: T.INT8, T.UINT8: T.UINT8} if byte else _narrow_types()
    if int(_attr(node, "block_size", 0) or 0) or _attr(node, "precision") is not None or _attr(node, "output_dtype"):
        return None
    ins = [*node.input, "", ""][:3]
    x, scale, zp = ins
    if x not in shapes or scale not in shapes or (zp and zp not in shapes):
        return None
    rank = len(shapes[x])
    axis = int(_attr(node, "axis", 1))
    if rank:
        axis %= rank

    def param_shape(name: str) -> list[int] | None:
        shp = shapes[name]
        if int(np.prod(shp)) == 1:
            return []
        if len(shp) == 1 and rank and shapes[x][axis] == shp[0]:
            return [1] * axis + [shp[0]] + [1] * (rank - axis - 1)
        return None

    pshape = {n: param_shape(n) for n in (scale, zp) if n}
    if any(v is None for v in pshape.values()) or types.get(scale) not in (T.FLOAT, T.FLOAT16, T.BFLOAT16):
        return None
    if node.op_type == "DequantizeLinear":
        qt = types.get(x)
        if qt not in wide:
            return None
        return "deq", (qt, pshape, types[scale])
    qt = types.get(zp) if zp else None
    if qt not in wide or types.get(x) not in (T.FLOAT, T.FLOAT16, T.BFLOAT16):
        return None
    if wide[qt] == T.FLOAT:
        table = _narrow_float_table(qt, bool(_attr(node, "saturate", 1)))
        if table is None or int(np.prod(shapes[x])) * len(table[0]) > (1 << 24):
            return None
        return "q", (qt, pshape, table)
    return "q", (qt, pshape, None)


def _narrow_quant_nodes(kind: str, data: Any, node: Any, base: str, const: Any) -> list[Any]:
    """ONNX nodes computing a (De)QuantizeLinear on a narrow type's wide stand-in, as ONNX's
    reference does: dequantize (float32(x) - zero point) * scale in float32, rounded to the
    scale's type; quantize rint(x / scale) + zero point saturated to the integer range, or
    x / scale (+ zero point for float4) converted like ``Cast`` to the float type."""
    import onnx
    from onnx import helper

    T = onnx.TensorProto
    qt, pshape, extra = data
    wide = {**_narrow_types(), T.INT8: T.INT8, T.UINT8: T.UINT8}
    ins = [*node.input, "", ""][:3]
    x, scale, zp = ins
    out = node.output[0]
    nodes: list[Any] = []

    def param(name: str, to: int, tag: str) -> str:
        nodes.append(helper.make_node("Cast", [name], [f"{base}_{tag}c"], to=to))
        nodes.append(helper.make_node("Reshape", [f"{base}_{tag}c", const(np.array(pshape[name], np.int64), f"{tag}shape")], [f"{base}_{tag}"]))
        return f"{base}_{tag}"

    s = param(scale, T.FLOAT, "scale")
    if kind == "deq":
        scale_t = extra
        nodes.append(helper.make_node("Cast", [x], [f"{base}_xf"], to=T.FLOAT))
        dx = f"{base}_xf"
        if zp and wide[qt] != T.FLOAT:  # float8 zero points are 0 (ignored)
            z = param(zp, T.FLOAT, "zp")
            nodes.append(helper.make_node("Sub", [dx, z], [f"{base}_dx"]))
            dx = f"{base}_dx"
        nodes.append(helper.make_node("Mul", [dx, s], [f"{base}_y"]))
        nodes.append(helper.make_node("Cast", [f"{base}_y"], [out], to=scale_t))
        return nodes
    nodes.append(helper.make_node("Cast", [x], [f"{base}_xf"], to=T.FLOAT))
    nodes.append(helper.make_node("Div", [f"{base}_xf", s], [f"{base}_q"]))
    if extra is None:  # integer: rint, + zero point, saturate
        lo, hi = {T.INT4: (-8, 7), T.UINT4: (0, 15), T.INT2: (-2, 1), T.UINT2: (0, 3), T.INT8: (-128, 127), T.UINT8: (0, 255)}[qt]
        z = param(zp, T.FLOAT, "zp")
        nodes += [
            helper.make_node("Round", [f"{base}_q"], [f"{base}_r"]),
            helper.make_node("Add", [f"{base}_r", z], [f"{base}_rz"]),
            helper.make_node("Clip", [f"{base}_rz", const(np.array(lo, np.float32), "lo"), const(np.array(hi, np.float32), "hi")], [f"{base}_c"]),
            helper.make_node("Cast", [f"{base}_c"], [out], to=wide[qt]),
        ]
        return nodes
    thresholds, table, nan_v = extra
    q = f"{base}_q"
    if qt == getattr(T, "FLOAT4E2M1", -1) and zp:
        z = param(zp, T.FLOAT, "zp")
        nodes.append(helper.make_node("Add", [q, z], [f"{base}_qz"]))
        q = f"{base}_qz"
    nodes += [
        helper.make_node("Unsqueeze", [q, const(np.array([-1], np.int64), "ax")], [f"{base}_xu"]),
        helper.make_node("GreaterOrEqual", [f"{base}_xu", const(thresholds, "thr")], [f"{base}_ge"]),
        helper.make_node("Cast", [f"{base}_ge"], [f"{base}_gei"], to=T.INT64),
        helper.make_node("ReduceSum", [f"{base}_gei", const(np.array([-1], np.int64), "rax")], [f"{base}_idx"], keepdims=0),
        helper.make_node("Gather", [const(table, "table"), f"{base}_idx"], [f"{base}_g"], axis=0),
        helper.make_node("IsNaN", [q], [f"{base}_nan"]),
        helper.make_node("Where", [f"{base}_nan", const(np.array(nan_v, np.float32), "nanv"), f"{base}_g"], [out]),
    ]
    return nodes


def _explicit_quant(proto: Any) -> bool:
    """Per-axis int8/uint8 ``DequantizeLinear`` / ``QuantizeLinear`` as explicit ONNX ops
    (:func:`_narrow_quant_nodes`): torch-mlir's per-axis lowering sign-extends uint8 zero
    points and does not lower per-axis quantization. Returns whether anything changed."""
    graph = proto.graph
    version = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 1)
    if version < 13:
        return False
    types, shapes = _types_and_shapes(graph)
    nodes: list[Any] = []
    changed = False
    for k, node in enumerate(graph.node):
        per_axis = node.domain in ("", "ai.onnx") and node.op_type in ("DequantizeLinear", "QuantizeLinear") and any(
            int(np.prod(shapes.get(n, [1]))) > 1 for n in node.input[1:3] if n
        )
        plan = _plan_narrow_quant(node, types, shapes, byte=True) if per_axis else None
        if plan is None:
            nodes.append(node)
            continue
        base = f"{node.name or node.op_type}__rdu_quant{k}"

        def const(value: np.ndarray, suffix: str, base: str = base) -> str:
            from onnx import numpy_helper

            t = numpy_helper.from_array(np.asarray(value), f"{base}_{suffix}")
            graph.initializer.append(t)
            return t.name

        nodes += _narrow_quant_nodes(plan[0], plan[1], node, base, const)
        changed = True
    if changed:
        del graph.node[:]
        graph.node.extend(nodes)
    return changed


def _lower_narrow_types(proto: Any) -> bool:
    """Compute int4/uint4/int2/uint2/float4/float8 tensors (which torch-mlir cannot lower) in a
    type that holds every value exactly: int8 / uint8 / float32.

    Inputs, outputs and initializers of such a type are computed in the wider type (the
    runtime converts at the boundary, exactly); a ``Cast`` from it reads the wider value
    (the same number); a ``Cast`` to it becomes ONNX ops that compute the reference's
    conversion exactly: for float targets a step function of the float32 value (compares
    with the rounding thresholds of the target, then a lookup; :func:`_narrow_float_table`),
    for integer targets truncation toward zero and wrap-around modulo 2**bits (NaN and
    infinities give 0), as ``ml_dtypes`` (ONNX's reference) converts. Applies only when every
    op touching such a tensor is a ``Cast`` or ``Identity``; otherwise nothing changes and
    the type is refused as before. Returns whether the model was rewritten.
    """
    import onnx
    from onnx import helper, numpy_helper

    T = onnx.TensorProto
    wide = _narrow_types()
    graph = proto.graph
    version = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 1)
    types, shapes = _types_and_shapes(graph)
    narrow = {n for n, t in types.items() if t in wide}
    casts = [n for n in graph.node if n.op_type == "Cast" and _attr(n, "to") in wide]
    if (not narrow and not casts) or version < 13:
        return False
    float_src = {T.FLOAT, T.FLOAT16, T.BFLOAT16}
    int_src = {T.INT8, T.INT16, T.INT32, T.INT64, T.UINT8, T.BOOL}
    plans: dict[int, tuple[str, Any]] = {}
    for k, node in enumerate(graph.node):
        touched = [n for n in [*node.input, *node.output] if n in narrow]
        if node.domain not in ("", "ai.onnx"):
            if touched:
                return False
            continue
        if node.op_type == "Constant" and any(a.type == onnx.AttributeProto.TENSOR and a.t.data_type in wide for a in node.attribute):
            return False
        if node.op_type == "Cast" and _attr(node, "to") in wide:
            to = _attr(node, "to")
            src = types.get(node.input[0])
            src = wide.get(src, src)
            n = int(np.prod(shapes.get(node.input[0], [1 << 30])))
            if wide[to] == T.FLOAT:
                if src not in float_src:
                    return False
                table = _narrow_float_table(to, bool(_attr(node, "saturate", 1)))
                if table is None or n * len(table[0]) > (1 << 24):
                    return False
                plans[k] = ("float", table)
            else:
                if src not in float_src | int_src:
                    return False
                plans[k] = ("int", (to, src in float_src))
            continue
        if node.op_type in ("DequantizeLinear", "QuantizeLinear") and touched:
            plan = _plan_narrow_quant(node, types, shapes)
            if plan is None:
                return False
            plans[k] = plan
            continue
        if node.op_type in ("Cast", "Identity") or not touched:
            continue
        return False
    # Rewrite: boundary types, initializers, casts to narrow types.
    for v in [*graph.input, *graph.output]:
        if v.type.WhichOneof("value") == "tensor_type" and v.type.tensor_type.elem_type in wide:
            v.type.tensor_type.elem_type = wide[v.type.tensor_type.elem_type]
    inits = []
    for init in graph.initializer:
        if init.data_type in wide:
            arr = numpy_helper.to_array(init).astype(helper.tensor_dtype_to_np_dtype(wide[init.data_type]))
            init = numpy_helper.from_array(arr, init.name)
        inits.append(init)
    del graph.initializer[:]
    graph.initializer.extend(inits)

    nodes: list[Any] = []
    for k, node in enumerate(graph.node):
        if k not in plans:
            nodes.append(node)
            continue
        kind, data = plans[k]
        base = f"{node.name or 'Cast'}__rdu_narrow{k}"
        x, out = node.input[0], node.output[0]

        def const(value: np.ndarray, suffix: str, base: str = base) -> str:
            t = numpy_helper.from_array(np.asarray(value), f"{base}_{suffix}")
            graph.initializer.append(t)
            return t.name

        if kind in ("deq", "q"):
            nodes += _narrow_quant_nodes(kind, data, node, base, const)
            continue
        if kind == "float":
            thresholds, table, nan_v = data
            nodes += [
                helper.make_node("Cast", [x], [f"{base}_x"], to=T.FLOAT),
                helper.make_node("Unsqueeze", [f"{base}_x", const(np.array([-1], np.int64), "ax")], [f"{base}_xu"]),
                helper.make_node("GreaterOrEqual", [f"{base}_xu", const(thresholds, "thr")], [f"{base}_ge"]),
                helper.make_node("Cast", [f"{base}_ge"], [f"{base}_gei"], to=T.INT64),
                helper.make_node("ReduceSum", [f"{base}_gei", const(np.array([-1], np.int64), "rax")], [f"{base}_idx"], keepdims=0),
                helper.make_node("Gather", [const(table, "table"), f"{base}_idx"], [f"{base}_r"], axis=0),
                helper.make_node("IsNaN", [f"{base}_x"], [f"{base}_nan"]),
                helper.make_node("Where", [f"{base}_nan", const(np.array(nan_v, np.float32), "nanv"), f"{base}_r"], [out]),
            ]
            continue
        to, from_float = data
        bits = 4 if to in (T.INT4, T.UINT4) else 2
        signed = to in (T.INT4, T.INT2)
        m = 1 << bits
        out_t = wide[to]
        if from_float:
            # trunc toward zero, wrap modulo 2**bits; NaN and +-inf give 0
            nodes += [
                helper.make_node("Cast", [x], [f"{base}_x"], to=T.FLOAT),
                helper.make_node("IsNaN", [f"{base}_x"], [f"{base}_nan"]),
                helper.make_node("IsInf", [f"{base}_x"], [f"{base}_inf"]),
                helper.make_node("Or", [f"{base}_nan", f"{base}_inf"], [f"{base}_bad"]),
                helper.make_node("Where", [f"{base}_bad", const(np.array(0, np.float32), "zf"), f"{base}_x"], [f"{base}_xf"]),
                helper.make_node("Mod", [f"{base}_xf", const(np.array(m, np.float32), "mf")], [f"{base}_rf"], fmod=1),
                helper.make_node("Cast", [f"{base}_rf"], [f"{base}_ri"], to=T.INT64),
            ]
        else:
            nodes.append(helper.make_node("Cast", [x], [f"{base}_ri"], to=T.INT64))
        nodes.append(helper.make_node("Mod", [f"{base}_ri", const(np.array(m, np.int64), "m")], [f"{base}_u"], fmod=0))
        if signed:
            nodes += [
                helper.make_node("GreaterOrEqual", [f"{base}_u", const(np.array(m // 2, np.int64), "half")], [f"{base}_neg"]),
                helper.make_node("Sub", [f"{base}_u", const(np.array(m, np.int64), "m2")], [f"{base}_s"]),
                helper.make_node("Where", [f"{base}_neg", f"{base}_s", f"{base}_u"], [f"{base}_v"]),
                helper.make_node("Cast", [f"{base}_v"], [out], to=out_t),
            ]
        else:
            nodes.append(helper.make_node("Cast", [f"{base}_u"], [out], to=out_t))
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.value_info[:]
    return True


#: Ops never evaluated at import time: random, with subgraphs, or with side outputs.
_NO_FOLD = {
    "RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Multinomial",
    "Bernoulli", "If", "Loop", "Scan", "SequenceMap", "Optional", "OptionalGetElement",
    "OptionalHasElement", "SequenceConstruct", "SequenceEmpty", "SequenceInsert", "SequenceAt",
    "SequenceErase", "SequenceLength", "SplitToSequence", "ConcatFromSequence", "ImageDecoder",
}
#: A folded result larger than this (elements) stays computation, unless it is no larger
#: than the initializers it is computed from (a transposed or cast weight).
_FOLD_MAX_ELEMENTS = 1 << 16


def _fold_constants(proto: Any) -> bool:
    """Evaluate nodes whose inputs are all constants (initializers, Constant nodes, shapes of
    statically shaped values) with ONNX's reference evaluator; their outputs become
    initializers. Returns whether anything was folded."""
    import onnx
    from onnx import numpy_helper

    graph = proto.graph
    inits = {i.name: i for i in graph.initializer}
    values: dict[str, np.ndarray] = {}

    def value(name: str) -> np.ndarray:
        if name not in values:
            values[name] = numpy_helper.to_array(inits[name])
        return values[name]

    static: dict[str, tuple[int, ...]] = {}
    for vi in [*graph.input, *graph.value_info, *graph.output]:
        tt = vi.type.tensor_type if vi.type.WhichOneof("value") == "tensor_type" else None
        if tt is not None and tt.HasField("shape") and all(d.HasField("dim_value") for d in tt.shape.dim):
            static[vi.name] = tuple(int(d.dim_value) for d in tt.shape.dim)
    opset = [o for o in proto.opset_import]
    kept, added = [], []
    folded_any = False
    for node in graph.node:
        outs = _try_fold(node, inits, value, static, opset)
        if outs is None:
            kept.append(node)
            continue
        folded_any = True
        for name, arr in zip(node.output, outs, strict=True):
            if not name:
                continue
            tensor = numpy_helper.from_array(np.asarray(arr), name)
            inits[name] = tensor
            values[name] = np.asarray(arr)
            added.append(tensor)
    if not folded_any:
        return False
    del graph.node[:]
    graph.node.extend(kept)
    graph.initializer.extend(added)
    # Drop initializers nothing reads any more (inputs of folded nodes).
    used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    used |= _subgraph_reads(graph)
    keep = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    declared = {i.name for i in keep}
    inputs = [vi for vi in graph.input if vi.name not in inits or vi.name in declared]
    del graph.input[:]
    graph.input.extend(inputs)
    # Folded values are no longer computed: their value_info entries go.
    vis = [vi for vi in graph.value_info if vi.name not in inits]
    del graph.value_info[:]
    graph.value_info.extend(vis)
    del onnx
    return True


def _subgraph_reads(graph: Any) -> set[str]:
    """Names read inside subgraph attributes (If/Loop/Scan bodies) of ``graph``'s nodes."""
    import onnx

    names: set[str] = set()
    for node in graph.node:
        for attr in node.attribute:
            subs = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)
            for g in subs:
                names |= {i for n in g.node for i in n.input} | _subgraph_reads(g)
    return names


def _try_fold(node: Any, inits: dict[str, Any], value: Any, static: dict[str, tuple[int, ...]], opset: list[Any]) -> list[Any] | None:
    """The node's output values if it can be evaluated now, else None."""
    import onnx

    if node.domain not in ("", "ai.onnx") or node.op_type in _NO_FOLD:
        return None
    if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
        return None
    ins = [i for i in node.input if i]
    if node.op_type in ("Shape", "Size") and ins and ins[0] in static and ins[0] not in inits:
        shape = np.asarray(static[ins[0]], dtype=np.int64)
        if node.op_type == "Size":
            return [np.asarray(int(np.prod(shape)), dtype=np.int64)]
        start = next((a.i for a in node.attribute if a.name == "start"), 0)
        end = next((a.i for a in node.attribute if a.name == "end"), None)
        return [shape[start:end] if end is not None else shape[start:]]
    if not all(i in inits for i in ins) or (not ins and node.op_type != "Constant"):
        return None
    in_elements = sum(int(np.prod(inits[i].dims)) for i in ins)
    if _fold_output_elements(node, value) > max(_FOLD_MAX_ELEMENTS, in_elements):
        return None  # never evaluate a large output (ConstantOfShape([10**6, 10**6]))
    try:
        from onnx.reference import ReferenceEvaluator

        single = onnx.helper.make_model(
            onnx.helper.make_graph(
                [node], "fold",
                [onnx.helper.make_tensor_value_info(i, inits[i].data_type, list(inits[i].dims)) for i in dict.fromkeys(ins)],
                [onnx.helper.make_empty_tensor_value_info(o) for o in node.output if o],
            ),
            opset_imports=opset,
        )
        single.ir_version = onnx.IR_VERSION
        with warnings.catch_warnings(), np.errstate(all="ignore"), _quiet():
            warnings.simplefilter("ignore")
            results = ReferenceEvaluator(single).run(None, {i: value(i) for i in dict.fromkeys(ins)})
    except Exception:  # noqa: BLE001 - not foldable here; torch-mlir gets the node
        return None
    out: list[Any] = []
    it = iter(results)
    for name in node.output:
        if not name:
            out.append(None)
            continue
        r = next(it, None)
        if not isinstance(r, np.ndarray) or r.dtype == object:
            return None
        if r.size > _FOLD_MAX_ELEMENTS and r.size > in_elements:
            return None
        out.append(r)
    return out


def _fold_output_elements(node: Any, value: Any) -> int:
    """Elements of the output of a node whose output size is set by an input's values
    (ConstantOfShape, Expand, Tile, Range), computed without evaluating it; 0 for others."""
    try:
        if node.op_type == "ConstantOfShape":
            return int(np.prod([max(int(d), 0) for d in value(node.input[0]).reshape(-1)], dtype=object))
        if node.op_type == "Expand":
            x = value(node.input[0]).shape
            shape = [int(d) for d in value(node.input[1]).reshape(-1)]
            rank = max(len(x), len(shape))
            x = (1,) * (rank - len(x)) + tuple(x)
            shape = [1] * (rank - len(shape)) + shape
            return int(np.prod([max(a, b) for a, b in zip(x, shape, strict=True)], dtype=object))
        if node.op_type == "Tile":
            reps = value(node.input[1]).reshape(-1)
            return int(value(node.input[0]).size * np.prod([max(int(r), 0) for r in reps], dtype=object))
        if node.op_type == "Range":
            start, limit, delta = (float(value(i)) for i in node.input[:3])
            return max(int(np.ceil((limit - start) / delta)), 0) if delta else 0
    except Exception:  # noqa: BLE001 - malformed inputs: let the evaluator report them
        return 0
    return 0


def _inline_small_constants(proto: Any) -> None:
    """Store small constant tensors in typed fields instead of raw bytes, so torch-mlir's
    importer makes them dense literals (raw bytes become resource blobs)."""
    import onnx
    from onnx import numpy_helper

    inline_types = {
        onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.BOOL, onnx.TensorProto.UINT8,
        onnx.TensorProto.INT8, onnx.TensorProto.INT16, onnx.TensorProto.INT32, onnx.TensorProto.INT64,
    }

    def plain(t: Any) -> None:
        if not t.HasField("raw_data") or t.data_type not in inline_types:
            return
        arr = numpy_helper.to_array(t)
        new = onnx.helper.make_tensor(t.name, t.data_type, list(t.dims), arr.flatten().tolist())
        t.CopyFrom(new)

    for init in proto.graph.initializer:
        plain(init)
    for node in proto.graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.TENSOR:
                    plain(attr.t)


def _unsupported_types() -> set[int]:
    import onnx

    names = [
        "STRING", "COMPLEX64", "COMPLEX128", "FLOAT8E4M3FN", "FLOAT8E4M3FNUZ", "FLOAT8E5M2",
        "FLOAT8E5M2FNUZ", "UINT4", "INT4", "FLOAT4E2M1", "FLOAT8E8M0", "UINT2", "INT2",
    ]
    return {getattr(onnx.TensorProto, n) for n in names if hasattr(onnx.TensorProto, n)}


_UNSUPPORTED_TYPES = _unsupported_types()


def _out_spec(n: int) -> Any:
    """A single output comes back as a tensor, several as a tuple."""
    from torch.utils import _pytree as pytree

    if n == 1:
        return pytree.tree_flatten(0)[1]
    return pytree.tree_flatten(tuple(range(n)))[1]


def _check_types(proto: Any, where: str) -> None:
    """Refuse element types torch-mlir aborts on (unsigned 16/32/64-bit integers) up front."""
    import onnx

    bad = {onnx.TensorProto.UINT16, onnx.TensorProto.UINT32, onnx.TensorProto.UINT64}
    graph = proto.graph
    found: tuple[str, int] | None = None
    for vi in [*graph.input, *graph.output, *graph.value_info]:
        if vi.type.WhichOneof("value") == "tensor_type" and vi.type.tensor_type.elem_type in bad:
            found = (f"'{vi.name}'", vi.type.tensor_type.elem_type)
            break
    if found is None:
        for init in graph.initializer:
            if init.data_type in bad:
                found = (f"initializer '{init.name}'", init.data_type)
                break
    if found is None:
        for node in graph.node:
            for attr in node.attribute:
                if attr.name == "to" and attr.type == onnx.AttributeProto.INT and attr.i in bad:
                    found = (f"the result of {node.op_type} node '{node.name}'", attr.i)
                    break
            if found:
                break
    if found:
        what, et = found
        raise OnnxImportError(
            f"{where}: {what} has element type {_dtype_name(et)}, which torch-mlir does not lower "
            "(of the unsigned integers only uint8 is supported; the compiler computes uint16/uint32 "
            "on int32/int64 and uint64 on int64 where that gives the same results, which is not "
            "the case for an op here). Use a signed type (int32/int64) or uint8 in the model.",
        )


def _lower(proto: Any, where: str, node_kinds: dict[str, str], expand: frozenset[str] = frozenset()) -> tuple[str, list[str], list[str]]:
    """torch-mlir's ONNX importer and pipeline, in this process: (generic MLIR text, functions).

    ``expand``: ONNX ops (default domain) that the importer replaces by their ONNX function
    body, beside torch-mlir's default allowlist.
    """
    from torch_mlir import ir
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
        raise _op_error(where, "ONNX importer", op_type, None, _short(_first_line(e))) from None
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


def _has_function(op_type: str, proto: Any) -> bool:
    """Whether ONNX defines ``op_type`` (default domain, at the model's opset) as a function."""
    import onnx

    version = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    try:
        schema = onnx.defs.get_schema(op_type, domain="", max_inclusive_version=version or 10**6)
    except Exception:  # noqa: BLE001 - not an ONNX op
        return False
    limit = version or 10**6
    return any(v <= limit for v in schema.function_opset_versions) or any(
        v <= limit for v in schema.context_dependent_function_opset_versions
    )


def _lower_isolated(
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
        f"{': ' + _short(fatal) if fatal else ''}.{hint} Simplify or re-export the model around "
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
        return "error", (f"{where}: torch-mlir failed: {type(e).__name__}: {_first_line(e)}", None, None)


def _op_in_text(text: str, node_kinds: dict[str, str]) -> str | None:
    m = _ONNX_OP_RE.search(text)
    if m:
        return m.group(1)
    for node, kind in node_kinds.items():
        if node in text:
            return kind
    return None


def _func_names(module: Any) -> list[str]:
    from torch_mlir import ir

    names = []
    for op in module.regions[0].blocks[0].operations:
        if op.operation.name == "func.func":
            names.append(ir.StringAttr(op.attributes["sym_name"]).value)
    return names


def _run_pipeline(module: Any, ctx: Any, where: str, node_kinds: dict[str, str]) -> None:
    from torch_mlir import ir
    from torch_mlir.passmanager import PassManager

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
            raise _lowering_error(where, "torch-mlir lowering", errors, e, node_kinds) from None
        finally:
            handler.detach()


# --------------------------------------------------------------------------------------
# Running a compiled ONNX program
# --------------------------------------------------------------------------------------


def _as_numpy(v: Any) -> np.ndarray:
    """A torch tensor or array-like as numpy (torch bfloat16 as ml_dtypes.bfloat16)."""
    if hasattr(v, "detach"):
        import torch

        t = v.detach().cpu().contiguous()
        if t.dtype == torch.bfloat16:
            import ml_dtypes

            return t.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
        return t.numpy()
    return np.asarray(v)


#: numpy (ml_dtypes) names of the narrow types -> the dtype the program computes them in.
_NARROW_NUMPY = {
    "int4": np.int8, "int2": np.int8, "uint4": np.uint8, "uint2": np.uint8, "float4_e2m1fn": np.float32,
    "float8_e4m3fn": np.float32, "float8_e4m3fnuz": np.float32, "float8_e5m2": np.float32,
    "float8_e5m2fnuz": np.float32,
}


def run_onnx(program: Any, *inputs: Any) -> list[np.ndarray]:
    """Run a program from ``compile_onnx`` on the emulator; numpy in, numpy out.

    ``inputs``: one array per graph input, in order (or a single dict by input name).
    Returns one array per graph output, in the graph's declared dtypes (the program computes
    on signless integers: a ``uint8`` output comes back as ``uint8``, same bits).

    Raises:
        RduError: wrong inputs, or the emulator refused the program.
    """
    from rdu_compiler.errors import EmulatorError, RduError
    from rdu_compiler.runtime.emulator import Emulator

    imported = program.imported
    if len(inputs) == 1 and isinstance(inputs[0], Mapping):
        by_name = dict(inputs[0])
        missing = [n for n in imported.input_names if n not in by_name]
        if missing:
            raise RduError(f"missing input(s) {', '.join(map(repr, missing))}; the model takes {imported.input_names}")
        inputs = tuple(by_name[n] for n in imported.input_names)
    if len(inputs) != len(imported.input_names):
        raise RduError(f"the model takes {len(imported.input_names)} input(s) {imported.input_names}, got {len(inputs)}")
    values = dict(zip(imported.input_names, inputs, strict=True))
    args = []
    for name in imported.arg_names:
        v = values[name] if name in values else imported.weights[name]
        arr = _as_numpy(v)
        if arr.dtype.name in _NARROW_NUMPY:  # computed in a wider type (_lower_narrow_types): exact
            arr = arr.astype(_NARROW_NUMPY[arr.dtype.name])
        args.append(arr)
    try:
        if program._emulator is None:
            program._emulator = Emulator(program.module, program.fabric)
        outputs, stats = program._emulator.run(args)
    except EmulatorError as e:
        raise add_source_location(e, imported) from None
    program.last_stats = stats
    program.report["emulator"] = stats.to_dict()
    result = []
    for out, dtype in zip(outputs, imported.output_dtypes, strict=False):
        arr = np.asarray(out)
        if dtype.kind != "O" and arr.dtype != dtype:
            if arr.dtype.kind in "iub" and dtype.kind in "iub" and arr.dtype.itemsize == dtype.itemsize:
                arr = arr.view(dtype)
            else:
                arr = arr.astype(dtype)
        result.append(arr)
    return result


# --------------------------------------------------------------------------------------
# rdu-compile model.onnx
# --------------------------------------------------------------------------------------


#: torch ops behind a linalg-level op the compiler refuses (to name the model line).
_ATEN_BEHIND = {
    "tm_tensor.sort": ("aten.sort", "aten.topk", "aten.argsort", "aten.msort", "aten.median", "aten.kthvalue"),
    "tm_tensor.scatter": ("aten.scatter", "aten.scatter_add", "aten.scatter_reduce", "aten.index_put", "aten._index_put_impl", "aten.index_add"),
    "tm_tensor.attention": ("aten.scaled_dot_product_attention", "aten._scaled_dot_product_flash_attention"),
    "ml_program.global_load": (
        "aten.rand", "aten.rand_like", "aten.randn", "aten.randn_like", "aten.bernoulli", "aten.uniform",
        "aten.normal", "aten.randint", "aten.randint_like", "aten.randperm", "aten.dropout", "aten.native_dropout",
    ),
}
_OP_INDEX_RE = re.compile(r"op '([\w.]+)' \(op #(\d+) of @")
_KERNEL_RE = re.compile(r"kernel 'k(\d+)_")


def add_source_location(err: Any, imported: Any) -> Any:
    """Append where a refused op comes from to a compiler error: the ONNX node (by the op's
    position in the imported function), or for a PyTorch model the model line of the torch
    op behind it. Returns ``err`` (its message extended when a location is known)."""
    text = str(getattr(err, "message", err))
    where = None
    op_nodes = getattr(imported, "op_nodes", None)
    m = _OP_INDEX_RE.search(text)
    index = int(m.group(2)) if m else None
    if index is None:
        k = _KERNEL_RE.search(text)
        index = int(k.group(1)) if k else None
    if op_nodes and index is not None and 0 <= index < len(op_nodes) and op_nodes[index]:
        where = op_nodes[index]
    elif m and getattr(imported, "source_lines", None):
        for aten in _ATEN_BEHIND.get(m.group(1), ()):
            line = imported.source_lines.get(aten)
            if line:
                loc, _, code = line.partition(": ")
                where = f"{aten} at {loc}" + (f" `{code.strip()}`" if code.strip() else "")
                break
    if where and hasattr(err, "message") and where not in err.message:
        err.message = f"{err.message} [from {where}]"
        err.args = (err.message,)
    elif where and not hasattr(err, "message") and err.args:
        err.args = (f"{err.args[0]} [from {where}]",)
    return err


def random_inputs(imported: OnnxImportedProgram, seed: int = 0) -> list[np.ndarray]:
    """Random values for every graph input: standard normal floats, integers in [0, 4),
    random booleans (a deterministic ``seed``)."""
    rng = np.random.default_rng(seed)
    out = []
    for name in imported.input_names:
        shape = imported.input_shapes[name]
        dtype = imported.input_dtypes[name]
        if dtype.kind == "b":
            out.append(rng.integers(0, 2, size=shape).astype(np.bool_))
        elif dtype.kind in "iu":
            out.append(rng.integers(0, 4, size=shape).astype(dtype))
        else:
            out.append(rng.standard_normal(size=shape).astype(dtype))
    return out


def reference_outputs(imported: OnnxImportedProgram, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The model's outputs on ``inputs`` from ONNX's reference evaluator.

    Raises:
        FrontendError: the reference evaluator cannot run the model.
    """
    from onnx.reference import ReferenceEvaluator

    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            ref = ReferenceEvaluator(imported.model)
            return [np.asarray(o) for o in ref.run(None, dict(zip(imported.input_names, inputs, strict=True)))]
    except Exception as e:  # noqa: BLE001
        raise FrontendError(
            f"--check: ONNX's reference evaluator cannot run the model ({type(e).__name__}: "
            f"{_first_line(e)}); run without --check."
        ) from None


def cli_compile(args: Any, stage: Any, repro_dir: str) -> tuple[Any, dict[str, Any] | None]:
    """What ``rdu-compile model.onnx`` does between loading and writing: compile, run on
    random inputs (unless ``--no-run``) and with ``--check`` compare with ONNX's reference
    evaluator. Returns the program and the check (None without ``--check``)."""
    import torch

    from rdu_compiler import api
    from rdu_compiler.tools.rdu_compile import compare

    shapes = dict(parse_input_shape(s) for s in (args.input_shape or []))
    program = api.compile_onnx(
        args.model, fabric=args.fabric, opt_level=args.opt_level, input_shapes=shapes or None,
        on_stage=stage, repro_dir=repro_dir, keep_ir=args.emit == "rdu",
    )
    if args.no_run:
        return program, None
    stage("emulate")
    inputs = random_inputs(program.imported)
    outputs = run_onnx(program, *inputs)
    if not args.check:
        return program, None
    stage("check")
    reference = reference_outputs(program.imported, inputs)

    def as_torch(arrays: list[np.ndarray]) -> list[torch.Tensor]:
        return [torch.from_numpy(np.asarray(a, dtype=np.float64)) for a in arrays]

    check = compare(as_torch(outputs), as_torch(reference))
    check["reference"] = "onnx.reference.ReferenceEvaluator, random inputs (seed 0)"
    program.report["check"] = check
    return program, check
