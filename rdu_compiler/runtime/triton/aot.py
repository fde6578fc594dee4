"""Compile generated kernels for a CUDA architecture ahead of time, without a GPU.

Triton's NVIDIA backend (with its bundled ptxas) compiles a kernel for a target given by
number, so the compiled path (type checks, layouts, `tl.dot` on tensor cores, constexpr
branches) is checked on a machine that only has the interpreter. Used by the tests and
handy before copying kernels.py to a GPU machine:

    from rdu_compiler.runtime.triton.aot import compile_kernels
    failures = {k: e for k, e in compile_kernels(program.triton_source(), arch=90).items() if e}
"""

from __future__ import annotations

import inspect
from typing import Any

from rdu_compiler.dialects import rdu
from rdu_compiler.dtypes import lookup
from rdu_compiler.runtime.triton.generate import TritonSource


def compile_kernels(source: TritonSource, arch: int = 90, all_configs: bool = False) -> dict[str, str | None]:
    """Compile every distinct kernel (its first autotune config, or all) for `cuda:sm_<arch>`.

    Returns kernel name -> None when it compiled, else the error text.
    """
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from rdu_compiler.runtime.triton.runner import load_source
    from rdu_compiler.runtime.triton.settings import interpret_mode

    with interpret_mode(False):  # define the kernels as compiled JIT functions
        module = load_source(source.text)
    results: dict[str, str | None] = {}
    for la in source.launches:
        if la.name in results or not la.source:
            continue
        tuner: Any = getattr(module, la.name)
        fn = tuner.fn
        params = list(inspect.signature(fn.fn).parameters)
        types = [lookup(rdu.element_type_of(v.type)).triton_pointer for v in la.args]
        configs = tuner.configs if all_configs else tuner.configs[:1]
        try:
            for cfg in configs:
                sig = {p: ("constexpr" if p in cfg.kwargs else types[i]) for i, p in enumerate(params)}
                src = ASTSource(fn, signature=sig, constexprs=dict(cfg.kwargs))
                options = {"num_warps": cfg.num_warps, "num_stages": cfg.num_stages}
                triton.compile(src, target=GPUTarget("cuda", arch, 32), options=options)
            results[la.name] = None
        except Exception as e:  # noqa: BLE001 - reported per kernel
            results[la.name] = f"{type(e).__name__}: {e}"
    return results
