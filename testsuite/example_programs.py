"""The example models (examples/*.py) loaded, compiled and run once per test process.

`test_models.py`, `test_golden.py` and `test_kernel_loop.py` compile the same
(model, fabric, -O) programs; compiling each once per process (`functools.cache`) keeps
their assertions and saves the repeated compiles (an -O0 sn40l compile of GPT-2 2-layer is
about 20 s on the CI machine). A test that changes a program must compile its own.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

import rdu_compiler
from rdu_compiler.api import CompiledProgram
from rdu_compiler.frontend.torch.model_file import load_model_file

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@dataclass(frozen=True)
class Loaded:
    model: torch.nn.Module
    inputs: tuple[Any, ...]
    reference: torch.Tensor


@dataclass(frozen=True)
class Result:
    program: CompiledProgram
    output: torch.Tensor


@functools.cache
def loaded(name: str) -> Loaded:
    """The example model, its example inputs and its eager output (computed once)."""
    model, inputs = load_model_file(EXAMPLES / f"{name}.py")
    with torch.no_grad():
        reference = model(*inputs)
    return Loaded(model, tuple(inputs), reference)


@functools.cache
def program(name: str, fabric: str, opt_level: int) -> CompiledProgram:
    """The example model compiled for `fabric` at `opt_level` (`rdu_compiler.compile`)."""
    m = loaded(name)
    return rdu_compiler.compile(m.model, m.inputs, fabric=fabric, opt_level=opt_level)


@functools.cache
def compiled(name: str, fabric: str, opt_level: int) -> Result:
    """`program(...)` and its output on the example inputs (run once)."""
    p = program(name, fabric, opt_level)
    return Result(p, p.run(*loaded(name).inputs))
