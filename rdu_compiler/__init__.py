"""rdu_compiler: lower PyTorch graphs onto an SN40L-style reconfigurable dataflow unit.

`compile(module, example_inputs, fabric="sn40l", opt_level=1)` returns a
`CompiledProgram` with `.run(*inputs)`, `.report` and `.ir`.
"""

from __future__ import annotations

from typing import Any

__all__ = ["compile", "CompiledProgram"]


def __getattr__(name: str) -> Any:
    if name in ("compile", "CompiledProgram"):
        from rdu_compiler import api

        return getattr(api, name)
    raise AttributeError(name)
