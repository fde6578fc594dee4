"""Load a generated kernels.py and run it (CUDA, or Triton's interpreter on the CPU)."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch

from rdu_compiler.dtypes import to_torch
from rdu_compiler.errors import EmulatorError
from rdu_compiler.runtime.triton.generate import TritonSource
from rdu_compiler.runtime.triton.settings import TritonSettings, prepare


def cache_dir() -> Path:
    """Where generated sources are written before import (Triton's JIT reads its source file)."""
    root = os.environ.get("RDU_TRITON_CACHE") or os.path.join(tempfile.gettempdir(), f"rdu_triton_{os.getuid()}")
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def load_source(text: str, directory: Path | None = None) -> ModuleType:
    """Write `text` to `<hash>.py` and import it as a module (after `prepare()`; one module
    per source and mode, since Triton fixes compiled vs interpreted when it is loaded)."""
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    mode = "i" if os.environ.get("TRITON_INTERPRET", "0") == "1" else "c"
    name = f"rdu_triton_{digest}_{mode}"
    if name in sys.modules:
        return sys.modules[name]
    folder = directory or cache_dir()
    path = folder / f"{name}.py"
    if not path.exists() or path.read_text() != text:
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


class TritonRunner:
    """A generated program loaded once, with its weights on the device.

    Args:
        source: the generated kernels.py.
        weights: argument name -> tensor (the model's weights; inputs excluded).
        device: `"cuda"`, `"cpu"` (interpreter) or None (CUDA when available).
    """

    def __init__(self, source: TritonSource, weights: dict[str, torch.Tensor], device: str | None = None):
        self.settings: TritonSettings = prepare(device)
        self.source = source
        self.module = load_source(source.text)
        dev = self.settings.device
        self.device = torch.device(dev)
        self.weights: dict[str, torch.Tensor] = {}
        cache: dict[int, torch.Tensor] = {}
        for k, v in weights.items():
            key = id(v)
            if key not in cache:
                cache[key] = _as_torch(v).to(self.device)
            self.weights[k] = cache[key]
        for k, arr in source.constants.items():
            self.weights[k] = torch.from_numpy(np.require(arr, requirements="C")).to(self.device)

    def run(self, *inputs: Any) -> tuple[torch.Tensor, ...]:
        """Run on `inputs` (tensors or arrays, moved to the device); returns the flat outputs
        (on the device)."""
        args = [_as_torch(x).to(self.device) for x in inputs]
        try:
            return tuple(self.module.run(self.weights, *args))
        except self.module.RuntimeCheckFailed as e:
            err = EmulatorError(f"{e} (target 'triton')")
            err.payload_op = e.op  # type: ignore[attr-defined]  # read by api's _locate
            raise err from None


def _as_torch(x: Any) -> torch.Tensor:
    """A tensor (detached) from a tensor, a numpy array (bf16 through ml_dtypes) or a scalar."""
    if isinstance(x, torch.Tensor):
        return x.detach()
    if isinstance(x, np.ndarray):
        return to_torch(x)
    return torch.as_tensor(x)
