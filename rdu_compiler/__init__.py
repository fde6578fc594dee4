"""rdu_compiler: lower PyTorch graphs onto an SN40L-style reconfigurable dataflow unit.

`compile(module, example_inputs, fabric="sn40l", opt_level=1)` returns a
`CompiledProgram` with `.run(*inputs)`, `.report` and `.ir`; `compile_onnx(path_or_model,
fabric="sn40l", opt_level=1, input_shapes=None)` does the same for an ONNX model.
"""

from __future__ import annotations

from typing import Any

__all__ = ["compile", "compile_onnx", "CompiledProgram"]


def __getattr__(name: str) -> Any:
    if name in ("compile", "compile_onnx", "CompiledProgram"):
        from rdu_compiler import api

        return getattr(api, name)
    raise AttributeError(name)
