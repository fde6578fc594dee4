"""Small helpers over ONNX protos shared by the ONNX frontend's modules: element types as numpy
dtypes, node attributes, declared types and shapes, shape inference.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from typing import Any

import numpy as np

from rdu_compiler.frontend.onnx.errors import OnnxImportError, first_line


def np_dtype(elem_type: int) -> np.dtype[Any]:
    """The numpy dtype of an ONNX element type (``object`` where numpy has none)."""
    import onnx

    try:
        return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type))
    except Exception:  # noqa: BLE001
        return np.dtype(object)


def dtype_name(elem_type: int) -> str:
    """``'uint16'`` for ``TensorProto.UINT16`` (the number itself when unknown)."""
    import onnx

    try:
        return onnx.TensorProto.DataType.Name(elem_type).lower()
    except ValueError:
        return str(elem_type)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Keep MLIR/onnx chatter off the terminal (errors are reported as FrontendError)."""
    with contextlib.redirect_stderr(io.StringIO()):
        yield


def node_attr(node: Any, name: str, default: Any = None) -> Any:
    """The value of attribute ``name`` of an ONNX node, or ``default`` when it is absent."""
    import onnx

    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def types_and_shapes(graph: Any) -> tuple[dict[str, int], dict[str, list[int]]]:
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


def infer(proto: Any, where: str) -> Any:
    """``proto`` after ONNX shape inference (with data propagation): a new ModelProto.

    Raises:
        OnnxImportError: shape inference failed (the model is malformed).
    """
    import onnx

    try:
        with quiet():
            return onnx.shape_inference.infer_shapes(proto, data_prop=True)
    except Exception as e:  # noqa: BLE001 - onnx raises InferenceError and others
        raise OnnxImportError(
            f"{where}: ONNX shape inference failed ({first_line(e)}). Check the model with "
            "onnx.checker.check_model and re-export it.",
        ) from None


def as_numpy(v: Any) -> np.ndarray:
    """A torch tensor or array-like as numpy (torch bfloat16 as ml_dtypes.bfloat16)."""
    if hasattr(v, "detach"):
        import torch

        t = v.detach().cpu().contiguous()
        if t.dtype == torch.bfloat16:
            import ml_dtypes

            return t.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
        return t.numpy()
    return np.asarray(v)
