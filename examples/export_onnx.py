"""Export example models to ONNX: examples/onnx/mlp.onnx and examples/onnx/cnn.onnx.

    python examples/export_onnx.py [OUT_DIR]
    rdu-compile examples/onnx/mlp.onnx --check

Uses torch.onnx.export with the TorchScript exporter (``dynamo=False``, which needs no
onnxscript), opset 17, weights as initializers and static input shapes (the example
inputs' shapes). The input is named ``x``, the output ``logits``.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
MODELS = ("mlp", "cnn")
OPSET = 17


def export(name: str, out_dir: Path) -> Path:
    """Export examples/<name>.py's model on its example inputs to out_dir/<name>.onnx."""
    from rdu_compiler.frontend.torch.model_file import load_model_file

    model, example_inputs = load_model_file(HERE / f"{name}.py")
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.onnx"
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            model, example_inputs, str(path), dynamo=False, opset_version=OPSET,
            input_names=["x"], output_names=["logits"],
        )
    return path


def main(argv: list[str]) -> int:
    out_dir = Path(argv[0]) if argv else HERE / "onnx"
    for name in MODELS:
        path = export(name, out_dir)
        print(f"wrote {path} ({path.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
