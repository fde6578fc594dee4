"""Compile time and peak memory against sequence length and depth (issue 11).

Each point is one `rdu_compiler.compile` (-O1, sn40l unless told) in a fresh child process,
so its peak RSS (`ru_maxrss` of the child) is that compile's alone. Two sweeps:

1. sequence: a Llama-2-7B-shaped decoder layer written here, outside the project's model
   builders, the way users write one: bf16, `F.scaled_dot_product_attention(is_causal=True)`,
   RoPE from `cos`/`sin` inputs. Real CPU tensors up to `--real-max` tokens, the meta device
   beyond (weights on meta take no memory).
2. depth: GPT-2 (hidden 768) with 12, 24, 48 layers on the meta device, one token of
   decode after 128 cached tokens (`rdu_compiler.bench.models.gpt2_model`).
3. Hugging Face `LlamaForCausalLM` with the Llama-3.1-8B config (32 layers, GQA 32/8), on
   the meta device with its own masks, decoding one token after 8,192 cached (a
   `DynamicCache` filled from the inputs). Goal: under 30 s.

    python benchmarks/compile_scaling.py [--seqs 256,512,1024,2048,4096,8192]
        [--depths 12,24,48] [--real-max 1024] [--timeout 900] [--json out.json]

A point that fails prints its error (first line) instead of figures; a point past
`--timeout` seconds is reported as such. Timings on a shared machine are noisy: the load
average is printed with the table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

CHILD = r'''
import json, resource, sys, time, traceback
import torch
import torch.nn.functional as F
from torch import nn
import rdu_compiler

kind, size, device, fabric, level = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])


class SdpaLayer(nn.Module):
    """Llama-2-7B decoder layer: RMSNorm, q/k/v/o, RoPE, causal SDPA, SwiGLU."""

    def __init__(self, hidden=4096, heads=32, mlp=11008, eps=1e-5):
        super().__init__()
        self.heads, self.eps = heads, eps
        self.q, self.k, self.v, self.o = (nn.Linear(hidden, hidden, bias=False) for _ in range(4))
        self.gate, self.up = nn.Linear(hidden, mlp, bias=False), nn.Linear(hidden, mlp, bias=False)
        self.down = nn.Linear(mlp, hidden, bias=False)
        self.n1, self.n2 = nn.Parameter(torch.ones(hidden)), nn.Parameter(torch.ones(hidden))

    def norm(self, x, w):
        return x * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + self.eps).to(x.dtype) * w

    def rope(self, x, cos, sin):
        x1, x2 = x.chunk(2, dim=-1)
        return x * cos + torch.cat((-x2, x1), dim=-1) * sin

    def forward(self, x, cos, sin):
        b, s, h = x.shape
        y = self.norm(x, self.n1)
        q = self.q(y).view(b, s, self.heads, -1).transpose(1, 2)
        k = self.k(y).view(b, s, self.heads, -1).transpose(1, 2)
        v = self.v(y).view(b, s, self.heads, -1).transpose(1, 2)
        a = F.scaled_dot_product_attention(self.rope(q, cos, sin), self.rope(k, cos, sin), v, is_causal=True)
        x = x + self.o(a.transpose(1, 2).reshape(b, s, h))
        y = self.norm(x, self.n2)
        return x + self.down(F.silu(self.gate(y)) * self.up(y))


torch.manual_seed(0)
out = {"kind": kind, "size": size, "device": device}
try:
    with torch.device(device):
        if kind == "seq":
            model = SdpaLayer().to(torch.bfloat16).eval()
            inputs = (torch.randn(1, size, 4096, dtype=torch.bfloat16),
                      torch.randn(size, 128, dtype=torch.bfloat16), torch.randn(size, 128, dtype=torch.bfloat16))
    if kind == "depth":
        from rdu_compiler.bench.models import GPT2_SMALL_DECODE, gpt2_model
        model, inputs = gpt2_model(GPT2_SMALL_DECODE, layers=size)
    if kind == "hf-llama3.1-8b":  # HF's own model and masks, decode one token after `size` cached
        from transformers import LlamaConfig, LlamaForCausalLM
        from transformers.cache_utils import DynamicCache
        cfg = LlamaConfig(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                          num_key_value_heads=8, vocab_size=128256, max_position_embeddings=131072,
                          rope_theta=500000.0)

        class Decode(nn.Module):
            def __init__(self, m):
                super().__init__()
                self.m = m

            def forward(self, ids, pos, *kv):
                cache = DynamicCache(config=cfg)
                for i in range(len(kv) // 2):
                    cache.update(kv[2 * i], kv[2 * i + 1], i)
                return self.m(input_ids=ids, position_ids=pos, past_key_values=cache, use_cache=True).logits

        with torch.device("meta"):
            model = Decode(LlamaForCausalLM(cfg).to(torch.bfloat16).eval())
            inputs = (torch.zeros(1, 1, dtype=torch.int64), torch.full((1, 1), size, dtype=torch.int64),
                      *(torch.zeros(1, 8, size, 128, dtype=torch.bfloat16) for _ in range(64)))
    stages = {}
    last = [time.perf_counter(), "start"]
    def stage(name):
        now = time.perf_counter()
        stages[last[1]] = round(now - last[0], 3)
        last[0], last[1] = now, name
    t0 = time.perf_counter()
    program = rdu_compiler.compile(model, inputs, fabric=fabric, opt_level=level, on_stage=stage)
    stage("end")
    out["compile_s"] = time.perf_counter() - t0
    out["stages_s"] = stages
    out["kernels"] = program.report["totals"]["kernels"]
    out["sections"] = program.report["totals"]["sections"]
    out["estimated_s"] = program.report["totals"]["estimated_s"]
except Exception as e:
    out["error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
out["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print("RESULT " + json.dumps(out))
'''


def point(kind: str, size: int, device: str, fabric: str, level: int, timeout: float) -> dict[str, Any]:
    """One compile in a child process: its figures, or its error."""
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, kind, str(size), device, fabric, str(level)],
            capture_output=True, text=True, timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return {"kind": kind, "size": size, "device": device, "error": f"timeout after {timeout:.0f} s"}
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            out = json.loads(line[len("RESULT "):])
            out["wall_s"] = time.perf_counter() - t0
            return out
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return {"kind": kind, "size": size, "device": device, "error": f"child exited {proc.returncode}: {tail}"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seqs", default="256,512,1024,2048,4096,8192")
    ap.add_argument("--depths", default="12,24,48")
    ap.add_argument("--real-max", type=int, default=1024, help="largest sequence compiled with real CPU tensors")
    ap.add_argument("--fabric", default="sn40l")
    ap.add_argument("-O", dest="level", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=900)
    ap.add_argument("--no-hf-llama", dest="hf_llama", action="store_false",
                    help="skip HF LlamaForCausalLM (Llama-3.1-8B config, 32 layers) decoding at 8K context")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    rows = []
    for s in [int(x) for x in args.seqs.split(",") if x]:
        devices = ["cpu", "meta"] if s <= args.real_max else ["meta"]
        for dev in devices:
            rows.append(point("seq", s, dev, args.fabric, args.level, args.timeout))
            print(_line(rows[-1]), flush=True)
    for d in [int(x) for x in args.depths.split(",") if x]:
        rows.append(point("depth", d, "meta", args.fabric, args.level, args.timeout))
        print(_line(rows[-1]), flush=True)
    if args.hf_llama:
        rows.append(point("hf-llama3.1-8b", 8192, "meta", args.fabric, args.level, args.timeout))
        print(_line(rows[-1]), flush=True)
    meta = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
            "load_average": os.getloadavg(), "fabric": args.fabric, "opt_level": args.level}
    print(f"machine: {meta['machine']}; load average {meta['load_average'][0]:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "points": rows}, f, indent=2)


def _line(r: dict[str, Any]) -> str:
    label = {"seq": "sequence", "depth": "depth"}.get(r["kind"], r["kind"])
    what = f"{label} {r['size']:>5} ({r['device']})"
    if "error" in r:
        return f"{what}: {r['error']}"
    return (f"{what}: compile {r['compile_s']:7.2f} s, peak RSS {r['peak_rss_bytes'] / 2**30:6.2f} GiB, "
            f"{r['kernels']} kernels, {r['sections']} sections")


if __name__ == "__main__":
    main()
