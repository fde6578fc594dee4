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
the compiler's sources outside the top layers, `compiler_version`).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rdu_compiler.bench.models import LLAMA_SPECS, LlamaLayer, LlamaSpec, RMSNorm
from rdu_compiler.fabric import load_fabric
from rdu_compiler.serve.regions import Region, fabric_digest

#: The serving models by name (`bench.models.LLAMA_SPECS`).
MODELS: dict[str, LlamaSpec] = LLAMA_SPECS


class Head(nn.Module):
    """Final RMSNorm + LM head: [1, T, hidden] -> logits [1, T, vocab]."""

    def __init__(self, m: LlamaSpec):
        super().__init__()
        self.norm = RMSNorm(m.hidden, 1e-5)
        self.lm_head = nn.Linear(m.hidden, m.vocab, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lm_head(self.norm(x))


def build(m: LlamaSpec, phase: str, point: tuple[int, ...]) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
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


def cache_key(m: LlamaSpec, reg: Region, phase: str, point: tuple[int, ...]) -> str:
    """The cache key of one measurement (hex SHA-256)."""
    fab = load_fabric(reg.path)
    doc = {"model": asdict(m), "fabric": fabric_digest(fab), "rows": reg.rows, "agcus": reg.agcus,
           "phase": phase, "point": list(point), "compiler": compiler_version()}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


_SECTION_KEYS = ("compute_s", "pmu_s", "hbm_s", "ddr_s", "agcu_s", "network_s", "fill_s", "launch_s", "total_s")


def measure(m: LlamaSpec, regions: list[Region], phase: str, point: tuple[int, ...], cache_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
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
