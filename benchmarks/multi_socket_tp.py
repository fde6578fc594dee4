"""Llama-3.1-8B decode (HF `LlamaForCausalLM`, BF16, batch 1, 8K context, on the meta device)
compiled with the real tensor-parallel pass: `rdu_compiler.compile(..., tp=N)` runs
`rdu-shard{tp=N}` on the whole 32-layer program, and the node's time is each socket's
sections plus every collective (`cost.node`), plus one sync per call.

Reported per tp: predicted output tokens/s/user = 1 / the node's time for one decode call,
one socket's sections, the collectives (count, seconds), sync, the HBM bytes one socket
moves and that stream's time at the socket's HBM bandwidth (the decode bound), and the
weight bytes left replicated. Beside it, `benchmarks/multi_socket.py`'s estimate (a
Megatron shard of one layer compiled from shapes) for the same case without kernel looping.

    python benchmarks/multi_socket_tp.py [--tp 1 8 16] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from torch import nn

CONTEXT = 8192
FABRIC = {1: "sn40l", 2: "sn40l-node8", 4: "sn40l-node8", 8: "sn40l-node8", 16: "sn40l-rack16"}


def llama31_8b_decode(context: int) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """HF's LlamaForCausalLM (Llama-3.1-8B config) decoding one token after `context` cached."""
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.cache_utils import DynamicCache

    cfg = LlamaConfig(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                      num_key_value_heads=8, vocab_size=128256, max_position_embeddings=131072,
                      rope_theta=500000.0)  # type: ignore[call-arg]  # a LlamaConfig kwarg its stubs miss

    class Decode(nn.Module):
        def __init__(self, m: nn.Module) -> None:
            super().__init__()
            self.m = m

        def forward(self, ids: torch.Tensor, pos: torch.Tensor, *kv: torch.Tensor) -> torch.Tensor:
            cache = DynamicCache(config=cfg)
            for i in range(len(kv) // 2):
                cache.update(kv[2 * i], kv[2 * i + 1], i)
            return self.m(input_ids=ids, position_ids=pos, past_key_values=cache, use_cache=True).logits

    with torch.device("meta"):
        model = Decode(LlamaForCausalLM(cfg).to(torch.bfloat16).eval())  # type: ignore[arg-type]
        inputs = (torch.zeros(1, 1, dtype=torch.int64), torch.full((1, 1), context, dtype=torch.int64),
                  *(torch.zeros(1, 8, context, 128, dtype=torch.bfloat16) for _ in range(64)))
    return model, inputs


def point(tp: int, imported: object) -> dict[str, object]:
    from rdu_compiler.api import compile_imported
    from rdu_compiler.fabric import load_fabric

    fabric = FABRIC[tp]
    t0 = time.perf_counter()
    prog = compile_imported(imported, fabric, 1, tp=tp)
    wall = time.perf_counter() - t0
    r, fab = prog.report, load_fabric(fabric)
    t = r["totals"]
    from xdsl.dialects import func

    from rdu_compiler.passes.shard_layout import arg_shards

    fn = next(op for op in prog.module.ops if isinstance(op, func.FuncOp))
    kinds = dict(zip(prog.imported.arg_names, prog.imported.arg_kinds, strict=True))
    replicated = 0
    for name, shard in zip(prog.imported.arg_names, arg_shards(fn), strict=True):
        if kinds[name] != "input" and shard is None and tp > 1:
            w = prog.imported.weights[name]
            replicated += w.numel() * w.element_size()
    colls = r.get("collectives", [])
    return {
        "tp": tp, "fabric": fabric, "compile_s": round(wall, 1), "step_s": t["estimated_s"],
        "tokens_per_s": 1 / t["estimated_s"], "sections_s": t.get("socket_sections_s", t["estimated_s"]),
        "collectives": len(colls), "all_reduces": sum(c["op"] == "rdu.all_reduce" for c in colls),
        "collectives_s": t.get("collectives_s", 0.0), "sync_s": t.get("sync_s", 0.0),
        "hbm_bytes_per_socket": t["hbm_bytes"], "hbm_stream_s": t["hbm_bytes"] / fab.hbm.bytes_per_s,
        "launch_s": t["launch_s"], "sections": t["sections"], "replicated_weight_bytes": replicated,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tp", type=int, nargs="+", default=[1, 8, 16])
    p.add_argument("--json", default=None)
    args = p.parse_args()
    from rdu_compiler.api import import_model

    model, inputs = llama31_8b_decode(CONTEXT)
    t0 = time.perf_counter()
    imported = import_model(model, inputs)
    print(f"import {time.perf_counter() - t0:.1f} s", flush=True)
    rows = []
    for tp in args.tp:
        rows.append(point(tp, imported))
        print(json.dumps(rows[-1]), flush=True)
    print("| tp | fabric | tokens/s/user | step | one socket's sections | HBM stream | collectives (all-reduces) "
          "| collectives | sync | launch | weights left replicated |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for x in rows:
        print(f"| {x['tp']} | {x['fabric']} | {x['tokens_per_s']:.0f} | {x['step_s'] * 1e3:.2f} ms | "
              f"{x['sections_s'] * 1e3:.2f} ms | {x['hbm_stream_s'] * 1e3:.2f} ms | {x['collectives']} ({x['all_reduces']}) | "
              f"{x['collectives_s'] * 1e3:.2f} ms | {x['sync_s'] * 1e6:.0f} µs | {x['launch_s'] * 1e3:.2f} ms | "
              f"{x['replicated_weight_bytes'] / 1e9:.2f} GB |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
