"""The ONNX frontend's errors: :class:`OnnxImportError`, torch-mlir diagnostics turned into one
paragraph naming the ONNX op and node, and the nearest supported alternative of an op.
"""

from __future__ import annotations

import re

from rdu_compiler.frontend.errors import FrontendError

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


def nearest_alternative(op_type: str | None) -> str | None:
    """What to use instead of an ONNX op this compiler does not lower (None if no hint)."""
    return _ALTERNATIVES.get(op_type or "")


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first non-empty line of ``exc``'s message, at most ``limit`` characters."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


ONNX_OP_RE = re.compile(r"onnx\.(\w+)")

_LOC_NAME_RE = re.compile(r'loc\("([^"]+)"\)')

_TORCH_OP_RE = re.compile(r"'torch\.(aten\.[\w.]+|prim\.[\w.]+)'")

def lowering_error(
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
            m = ONNX_OP_RE.search(msg) or ONNX_OP_RE.search(loc)
            if m:
                op_type = m.group(1)
                detail = msg
                break
    if not detail:
        detail = errors[0][1] if errors else first_line(exc)
    detail = short(detail)
    aten = _TORCH_OP_RE.search(detail)
    if "failed to legalize operation 'torch.operator'" in detail:
        detail = "torch-mlir has no conversion for this ONNX op (or for these attributes/types)"
    elif aten:
        detail = f"its torch op '{aten.group(1)}' does not lower to linalg ({detail})"
    return op_error(where, stage, op_type, node, detail)


def op_error(where: str, stage: str, op_type: str | None, node: str | None, detail: str) -> OnnxImportError:
    """The one-paragraph error for an ONNX op torch-mlir refused at ``stage``: the op, the
    node, the nearest supported alternative and what to do."""
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


def short(msg: str, limit: int = 240) -> str:
    """A torch-mlir diagnostic's first line without the IR it quotes, at most ``limit`` characters."""
    msg = msg.strip().splitlines()[0] if msg.strip() else ""
    cut = re.search(r":\s+%[\w#:]+\s*=|:\s+\"", msg)
    if cut:
        msg = msg[: cut.start()]
    return msg if len(msg) <= limit else msg[: limit - 3] + "..."
