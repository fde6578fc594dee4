"""The programs a serving step runs, compiled on a fabric region and cached on disk.

Three kinds of phase point, each one decoder layer (or the LM head) of the model, on the
meta device (shapes only):

- `prefill`, tokens L: one layer on x [1, L, hidden], causal, no past.
- `decode`, batch B and context C: one layer on x [B, 1, hidden] with a KV cache
  [B, kv_heads, C, head_dim] per request (each request reads its own cache).
- `head`, tokens T: final RMSNorm + LM head [hidden -> vocab] on [1, T, hidden] (the tokens
  that need logits: one per request finishing prefill or decoding).
- `mixed`, (L, P, B, C): one layer of a chunked-prefill step (vLLM / Sarathi) as ONE
  program: a prefill chunk of L new tokens after P cached ones and B decode tokens with C
  cached tokens each, concatenated as x [1, L + B, hidden] for the norms, projections and
  MLP (weights read once for all tokens); attention split by sequence (the chunk causal
  over its P + L keys, each decode token over its own C + 1).

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
import math
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rdu_compiler.bench.models import LLAMA_SPECS, LlamaLayer, LlamaSpec, RMSNorm, _rotate_half
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


class MixedLayer(LlamaLayer):
    """A decoder layer over a mixed batch (module docstring, `mixed`): forward(x [1, L + B,
    hidden], cos/sin [L + B, head_dim], [past_k/past_v [1, kv_heads, P, head_dim] when P > 0],
    dec_k/dec_v [B, kv_heads, C, head_dim]) -> [1, L + B, hidden]. Same weights as LlamaLayer."""

    def __init__(self, m: LlamaSpec, chunk: int, past: int, batch: int, context: int):
        super().__init__(m.layer_shape(chunk + batch, past))
        self.chunk, self.past, self.batch, self.context = chunk, past, batch, context

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool) -> torch.Tensor:
        s, d = self.s, self.head_dim
        if s.kv_heads != s.heads:
            k = k.repeat_interleave(s.heads // s.kv_heads, dim=1)
            v = v.repeat_interleave(s.heads // s.kv_heads, dim=1)
        scores = ((q @ k.transpose(2, 3)) * (1.0 / math.sqrt(d))).float()
        if causal:
            n, total = q.shape[2], k.shape[2]
            row = torch.arange(n, device=q.device).unsqueeze(1) + (total - n)
            col = torch.arange(total, device=q.device).unsqueeze(0)
            scores = scores + (col > row).float() * torch.finfo(torch.float32).min
        return torch.softmax(scores, dim=-1).to(q.dtype) @ v

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, *caches: torch.Tensor) -> torch.Tensor:
        s, d, n, b = self.s, self.head_dim, self.chunk, self.batch
        h = self.input_norm(x)
        q = self.q_proj(h).view(1, n + b, s.heads, d).transpose(1, 2)
        k = self.k_proj(h).view(1, n + b, s.kv_heads, d).transpose(1, 2)
        v = self.v_proj(h).view(1, n + b, s.kv_heads, d).transpose(1, 2)
        q = q * cos + _rotate_half(q) * sin
        k = k * cos + _rotate_half(k) * sin
        kp, vp = k[:, :, :n], v[:, :, :n]
        if self.past:
            kp, vp = torch.cat((caches[0], kp), dim=2), torch.cat((caches[1], vp), dim=2)
        out_p = self._attend(q[:, :, :n], kp, vp, causal=n > 1).transpose(1, 2).reshape(n, s.hidden)
        dec_k, dec_v = caches[-2:]
        qd = q[:, :, n:].transpose(0, 2)  # [B, heads, 1, d]
        kd = torch.cat((dec_k, k[:, :, n:].transpose(0, 2)), dim=2)
        vd = torch.cat((dec_v, v[:, :, n:].transpose(0, 2)), dim=2)
        out_d = self._attend(qd, kd, vd, causal=False).reshape(b, s.hidden)
        o = torch.cat((out_p, out_d), dim=0).unsqueeze(0)
        x = x + self.o_proj(o)
        h = self.post_norm(x)
        return x + self.down_proj(nn.functional.silu(self.gate_proj(h)) * self.up_proj(h))


def build(m: LlamaSpec, phase: str, point: tuple[int, ...]) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """The module and meta example inputs of one phase point (module docstring)."""
    dt, d = torch.bfloat16, m.head_dim
    with torch.device("meta"):
        if phase == "head":
            return Head(m).to(dt).eval(), (torch.empty(1, point[0], m.hidden, dtype=dt),)
        if phase == "mixed":
            chunk, past, batch, context = point
            mixed = MixedLayer(m, chunk, past, batch, context).to(dt).eval()
            n = chunk + batch
            args: tuple[torch.Tensor, ...] = (torch.empty(1, n, m.hidden, dtype=dt), torch.empty(n, d, dtype=dt),
                                              torch.empty(n, d, dtype=dt))
            if past:
                args += (torch.empty(1, m.kv_heads, past, d, dtype=dt),) * 2
            args += (torch.empty(batch, m.kv_heads, context, d, dtype=dt),) * 2
            return mixed, args
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
    if phase not in ("prefill", "decode", "head", "mixed"):
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
