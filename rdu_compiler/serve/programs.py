"""The programs a serving step runs, compiled on a fabric region and cached on disk.

Three kinds of phase point, each one decoder layer (or the LM head) of the model, on the
meta device (shapes only):

- `prefill`, tokens L: one layer on x [1, L, hidden], causal, no past.
- `decode`, batch B and context C: one layer on x [B, 1, hidden] with a KV cache
  [B, kv_heads, C, head_dim] per request (each request reads its own cache).
- `head`, tokens T: final RMSNorm + LM head [hidden -> vocab] on [1, T, hidden] (the tokens
  that need logits: one per request finishing prefill or decoding).

`measure` compiles one point with `rdu_compiler.compile_imported` on a `regions.Region`
and keeps what serving needs from the report: `totals.estimated_s` (seconds), HBM/DDR bytes,
and per section the cost model's resource times (`compute_s`, `hbm_s`, ...: seconds). The
result is cached as JSON under `cache_dir`, keyed by a SHA-256 of (model shape, fabric
content, region rows/AGCUs, phase, point, compiler version = package version + a hash of
the compiler's sources outside `serve/` and `tools/`).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rdu_compiler.bench.models import LayerShape, LlamaLayer, RMSNorm
from rdu_compiler.fabric import load_fabric
from rdu_compiler.serve.regions import Region, fabric_digest


@dataclass(frozen=True)
class ModelSpec:
    """A decoder-only model: layer dims, `layers`, `vocab`; bf16 weights and KV (2 bytes)."""

    name: str
    hidden: int
    heads: int
    kv_heads: int
    mlp: int
    layers: int
    vocab: int
    dtype_bytes: int = 2

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    def weight_bytes(self) -> int:
        """Bytes of all weights: layers x (attention + MLP + 2 norms) + embedding + LM head + norm."""
        kv = self.kv_heads * self.head_dim
        layer = 2 * self.hidden * self.hidden + 2 * self.hidden * kv + 3 * self.hidden * self.mlp + 2 * self.hidden
        return self.dtype_bytes * (self.layers * layer + 2 * self.vocab * self.hidden + self.hidden)

    def kv_bytes_per_token(self) -> int:
        """KV-cache bytes of one token over all layers: layers x 2 (K, V) x kv_heads x head_dim x dtype."""
        return self.layers * 2 * self.kv_heads * self.head_dim * self.dtype_bytes

    def layer_shape(self, seq: int, past: int) -> LayerShape:
        return LayerShape(self.hidden, self.heads, self.kv_heads, self.mlp, seq, past)


#: Shapes from the models' configs: Llama-3.1-8B (GQA 8 KV heads, MLP 14336, vocab 128256),
#: Llama-2-7B (MHA, MLP 11008, vocab 32000) [P, Hugging Face config.json]; `tiny` for tests.
MODELS: dict[str, ModelSpec] = {
    "llama3.1-8b": ModelSpec("llama3.1-8b", 4096, 32, 8, 14336, 32, 128256),
    "llama2-7b": ModelSpec("llama2-7b", 4096, 32, 32, 11008, 32, 32000),
    "tiny": ModelSpec("tiny", 64, 4, 2, 128, 2, 256),
}


class Head(nn.Module):
    """Final RMSNorm + LM head: [1, T, hidden] -> logits [1, T, vocab]."""

    def __init__(self, m: ModelSpec):
        super().__init__()
        self.norm = RMSNorm(m.hidden, 1e-5)
        self.lm_head = nn.Linear(m.hidden, m.vocab, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lm_head(self.norm(x))


def build(m: ModelSpec, phase: str, point: tuple[int, ...]) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """The module and meta example inputs of one phase point (module docstring)."""
    dt, d = torch.bfloat16, m.head_dim
    with torch.device("meta"):
        if phase == "head":
            return Head(m).to(dt).eval(), (torch.empty(1, point[0], m.hidden, dtype=dt),)
        if phase == "prefill":
            (seq,), batch, past = point, 1, 0
        else:
            (batch, past), seq = point, 1
        layer = LlamaLayer(m.layer_shape(seq, past)).to(dt).eval()
        x = torch.empty(batch, seq, m.hidden, dtype=dt)
        inputs: tuple[torch.Tensor, ...] = (x, torch.empty(seq, d, dtype=dt), torch.empty(seq, d, dtype=dt))
        if past:
            kv = torch.empty(batch, m.kv_heads, past, d, dtype=dt)
            inputs += (kv, kv)
    return layer, inputs


def compiler_version() -> str:
    """The compiler's identity, leaving out serve/ and tools/ (`rdu_compiler.version`)."""
    from rdu_compiler.version import compiler_id

    return compiler_id(("serve/", "tools/"))


def cache_key(m: ModelSpec, reg: Region, phase: str, point: tuple[int, ...]) -> str:
    """The cache key of one measurement (hex SHA-256)."""
    fab = load_fabric(reg.path)
    doc = {"model": asdict(m), "fabric": fabric_digest(fab), "rows": reg.rows, "agcus": reg.agcus,
           "phase": phase, "point": list(point), "compiler": compiler_version()}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


_SECTION_KEYS = ("compute_s", "pmu_s", "hbm_s", "ddr_s", "agcu_s", "network_s", "fill_s", "launch_s", "total_s")


def measure(m: ModelSpec, regions: list[Region], phase: str, point: tuple[int, ...], cache_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Compile one phase point on each of `regions` (or read it from the cache); the model is
    exported and lowered once for all regions missing from the cache.

    Returns:
        one dict per region: {"estimated_s": s, "hbm_bytes": B, "ddr_bytes": B,
        "hbm_peak_bytes": B, "cached": bool, "sections": [{"hbm_bytes", "ddr_bytes", "bound",
        compute_s/pmu_s/hbm_s/ddr_s/agcu_s/network_s/fill_s/launch_s/total_s (s)}]}

    Raises:
        RduError: the compiler refused the program (e.g. it does not fit the region).
    """
    if phase not in ("prefill", "decode", "head"):
        raise ValueError(f"unknown phase {phase!r}")
    imported: Any = None
    results: list[dict[str, Any]] = []
    for reg in regions:
        path = Path(cache_dir) / f"{cache_key(m, reg, phase, point)}.json"
        if path.exists():
            with open(path, encoding="utf-8") as f:
                out = json.load(f)
            out["cached"] = True
            results.append(out)
            continue
        from rdu_compiler.api import compile_imported, import_model

        if imported is None:
            imported = import_model(*build(m, phase, point))
        report = compile_imported(imported, reg.path).report
        totals = report["totals"]
        out = {
            "model": m.name, "phase": phase, "point": list(point), "rows": reg.rows, "share": reg.share,
            "estimated_s": totals["estimated_s"], "hbm_bytes": totals["hbm_bytes"], "ddr_bytes": totals["ddr_bytes"],
            "hbm_peak_bytes": totals["hbm_peak_bytes"],
            "sections": [
                {"hbm_bytes": s["hbm_bytes"], "ddr_bytes": s["ddr_bytes"], "bound": s["cost"]["bound"],
                 **{k: s["cost"].get(k, 0.0) for k in _SECTION_KEYS}}
                for s in report["sections"]
            ],
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(out, f, indent=1)
        os.replace(tmp, path)
        out["cached"] = False
        results.append(out)
    return results
