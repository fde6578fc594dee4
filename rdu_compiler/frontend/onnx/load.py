"""Reading an ONNX model and fixing its interface: the file, static input shapes, inputs bound to
constants, and initializers lifted to weight arguments.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rdu_compiler.frontend.errors import FrontendError
from rdu_compiler.frontend.onnx.errors import first_line
from rdu_compiler.frontend.onnx.graph import as_numpy, np_dtype

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
            f"{first_line(e)}). Check that it is a complete .onnx file (re-export it)."
        ) from None
    if not model.graph.node and not model.graph.output:
        raise FrontendError(f"ONNX model file '{p}' holds no graph. Check that it is an .onnx model file.")
    try:
        onnx.load_external_data_for_model(model, os.fspath(p.resolve().parent))
    except Exception as e:  # noqa: BLE001
        raise FrontendError(
            f"ONNX model file '{p}' refers to external weight data that cannot be read "
            f"({first_line(e)}). Keep the data files next to the model."
        ) from None
    return model


def static_inputs(
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


def immediate_names(graph: Any) -> set[str]:
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
    stack = sorted(immediate_names(graph))
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


def lift_initializers(model: Any) -> dict[str, np.ndarray]:
    """Turn weight initializers (and large Constant nodes) into graph inputs; return their
    values by name, in the order the new inputs were appended."""
    import onnx
    from onnx import numpy_helper

    graph = model.graph
    immediate = immediate_names(graph)
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


def name_nodes(graph: Any) -> dict[str, str]:
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


def bind_inputs(proto: Any, values: Mapping[str, Any], where: str) -> None:
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
        arr = as_numpy(value)
        want = np_dtype(vi.type.tensor_type.elem_type)
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
