"""Compiling the same model twice gives the same bytes (issue 10 §3).

`rdu-compile --no-run` in separate processes with different PYTHONHASHSEED values must
write byte-identical model.mlir, weights.safetensors and report.json (less the wall-clock
`compile_stages_s`). safetensors 0.8 writes its `__metadata__` in a random order (a Rust
HashMap, upstream safetensors#584); `save_weights` canonicalizes the header.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import torch

from rdu_compiler.frontend.weights import load_weights, save_weights

MODEL = textwrap.dedent(
    '''
    """A small model with parameters, a buffer and tied weights (an alias in the metadata)."""
    import torch
    from torch import nn

    torch.manual_seed(0)


    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(10, 8)
            self.fc = nn.Linear(8, 8)
            self.head = nn.Linear(8, 10, bias=False)
            self.head.weight = self.emb.weight
            self.register_buffer("scale", torch.full((8,), 0.5))

        def forward(self, ids):
            h = torch.tanh(self.fc(self.emb(ids))) * self.scale
            return torch.softmax(self.head(h), dim=-1)


    model = Tied().eval()
    example_inputs = (torch.tensor([[1, 2, 3, 4]]),)
    '''
)

WALL_CLOCK = ("compile_stages_s",)


def _compile(model_py: Path, out: Path, hash_seed: str) -> None:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed, "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "rdu_compiler.tools.rdu_compile", str(model_py),
           "--fabric", "tiny", "--no-run", "-o", str(out)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]


def _report(path: Path) -> dict:
    report = json.loads(path.read_text())
    for key in WALL_CLOCK:
        assert key in report, f"report.json has no '{key}' any more: update WALL_CLOCK"
        del report[key]
    return report


def test_outputs_identical_across_processes(tmp_path: Path) -> None:
    model_py = tmp_path / "tied.py"
    model_py.write_text(MODEL)
    outs = [tmp_path / f"out{seed}" for seed in ("1", "2", "3")]
    for seed, out in zip(("1", "2", "3"), outs, strict=True):
        _compile(model_py, out, seed)
    first = outs[0]
    for other in outs[1:]:
        assert (first / "model.mlir").read_bytes() == (other / "model.mlir").read_bytes()
        assert (first / "weights.safetensors").read_bytes() == (other / "weights.safetensors").read_bytes()
        assert _report(first / "report.json") == _report(other / "report.json")
    weights = load_weights(first / "weights.safetensors")  # the canonical header still loads
    assert set(weights) >= {"p_emb_weight", "p_head_weight"}


def test_save_weights_bytes_do_not_vary(tmp_path: Path) -> None:
    """In one process too: safetensors' metadata map has a random order per instance."""
    shared = torch.randn(4, 3)
    prog = SimpleNamespace(  # what save_weights reads of an ImportedProgram
        arg_names=["w_a", "w_b", "w_tied", "buf"],
        arg_kinds=["parameter", "parameter", "parameter", "buffer"],
        weights={"w_a": torch.randn(2, 2), "w_b": shared, "w_tied": shared, "buf": torch.ones(5)},
    )
    blobs = set()
    for i in range(6):
        path = tmp_path / f"w{i}.safetensors"
        save_weights(path, prog)
        blobs.add(path.read_bytes())
    assert len(blobs) == 1
    header = next(iter(blobs))
    size = int.from_bytes(header[:8], "little")
    meta = json.loads(header[8 : 8 + size])["__metadata__"]
    assert list(meta) == sorted(meta)
    loaded = load_weights(tmp_path / "w0.safetensors")
    assert torch.equal(torch.from_numpy(loaded["w_tied"]), shared)
