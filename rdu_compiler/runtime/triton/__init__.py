"""The GPU fallback: each fused group of `rdu.kernel`s becomes one Triton kernel.

    from rdu_compiler.runtime.triton import generate
    src = generate(program.module, arg_names, input_names)   # TritonSource
    open("kernels.py", "w").write(src.text)

`runner.TritonRunner` loads the generated source and runs it on CUDA tensors (or on
Triton's interpreter on the CPU; see `settings`). Importing this package does not import
Triton; only running does.
"""

from __future__ import annotations

from rdu_compiler.runtime.triton.generate import TritonSource, generate
from rdu_compiler.runtime.triton.settings import TritonSettings, prepare

__all__ = ["generate", "TritonSource", "TritonSettings", "prepare"]
