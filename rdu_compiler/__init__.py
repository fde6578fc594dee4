"""rdu_compiler: lower PyTorch graphs onto an SN40L-style reconfigurable dataflow unit.

`compile(module, example_inputs, fabric="sn40l", opt_level=1)` returns a
`CompiledProgram` with `.run(*inputs)`, `.report` and `.ir`; `compile_onnx(path_or_model,
fabric="sn40l", opt_level=1, input_shapes=None)` does the same for an ONNX model and returns
an `OnnxProgram`, whose `.run` is onnxruntime's (numpy in, a list of numpy arrays out).
`import_model(module, example_inputs)` then `compile_imported(imported, fabric, opt_level)`
splits `compile` in two, so one export and lowering serves many fabrics.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rdu_compiler.api import (  # noqa: A004
        CompiledProgram,
        OnnxProgram,
        compile,
        compile_imported,
        compile_onnx,
        import_model,
    )

__all__ = ["compile", "compile_onnx", "compile_imported", "import_model", "CompiledProgram", "OnnxProgram"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from rdu_compiler import api

        return getattr(api, name)
    raise AttributeError(name)
