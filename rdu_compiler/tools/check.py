"""``--check``: the compiled program's outputs against a reference, and what
``rdu-compile model.onnx`` does between loading the model and writing the outputs.

A PyTorch model is checked against PyTorch eager (:data:`TORCH_REFERENCE`), an ONNX model
against ONNX's reference evaluator (:data:`ONNX_REFERENCE`) on random inputs; the check's
``"reference"`` entry names which, and the CLI prints it.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from rdu_compiler.frontend.errors import FrontendError
from rdu_compiler.frontend.onnx.errors import first_line
from rdu_compiler.frontend.program import OnnxImportedProgram
from rdu_compiler.pipeline import CHECK, RUN

__all__ = ["ONNX_REFERENCE", "TORCH_REFERENCE", "cli_compile", "compare", "parse_input_shape", "random_inputs", "reference_outputs"]

#: What a PyTorch model's ``--check`` compares with.
TORCH_REFERENCE = "PyTorch eager"
#: What an ONNX model's ``--check`` compares with (onnxruntime is not a dependency).
ONNX_REFERENCE = "onnx.reference.ReferenceEvaluator, random inputs (seed 0)"


def compare(outputs: Any, reference: Any) -> dict[str, Any]:
    """Max abs error and relative L2 error of ``outputs`` (tensors or arrays) against
    ``reference`` (torch tensors), both any pytree, over all outputs; ``ok`` when the
    relative L2 error is at most 1e-5."""
    import torch
    from torch.utils import _pytree as pytree

    outs, _ = pytree.tree_flatten(outputs)
    refs, _ = pytree.tree_flatten(reference)
    outs = [o.detach().cpu() if isinstance(o, torch.Tensor) else o for o in outs]  # triton: CUDA tensors
    got = np.concatenate([np.asarray(o, dtype=np.float64).ravel() for o in outs])
    want = np.concatenate([r.detach().double().numpy().ravel() for r in refs if isinstance(r, torch.Tensor)])
    diff = got - want
    rel = float(np.linalg.norm(diff) / max(np.linalg.norm(want), 1e-30))
    tolerance = 1e-5
    return {
        "max_abs_error": float(np.abs(diff).max()) if diff.size else 0.0,
        "rel_l2": rel,
        "tolerance": tolerance,
        "ok": bool(rel <= tolerance),
        "outputs": len(outs),
    }


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
            f"{first_line(e)}); run without --check."
        ) from None


def cli_compile(args: Any, stage: Any, repro_dir: str) -> tuple[Any, dict[str, Any] | None]:
    """What ``rdu-compile model.onnx`` does between loading and writing: compile, run on
    random inputs (unless ``--no-run``) and with ``--check`` compare with ONNX's reference
    evaluator. Returns the program and the check (None without ``--check``)."""
    import torch

    from rdu_compiler import api

    shapes = dict(parse_input_shape(s) for s in (args.input_shape or []))
    program = api.compile_onnx(
        args.model, fabric=args.fabric, opt_level=args.opt_level, input_shapes=shapes or None,
        on_stage=stage, repro_dir=repro_dir, keep_ir=args.emit == "rdu",
        tp=getattr(args, "tp", 1), sockets=getattr(args, "sockets", None),
        kernel_looping=getattr(args, "kernel_looping", False),
    )
    if args.no_run:
        return program, None
    stage(RUN)
    inputs = random_inputs(program.imported)
    outputs = program.run(*inputs)
    if not args.check:
        return program, None
    stage(CHECK)
    reference = reference_outputs(program.imported, inputs)

    def as_torch(arrays: list[np.ndarray]) -> list[torch.Tensor]:
        return [torch.from_numpy(np.asarray(a, dtype=np.float64)) for a in arrays]

    check = compare(as_torch(outputs), as_torch(reference))
    check["reference"] = ONNX_REFERENCE
    program.report["check"] = check
    return program, check
