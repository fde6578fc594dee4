"""The figures of issue 3 on sn40l, from the static bandwidth model (shapes only, meta tensors).

1. Llama-2-7B-shaped decoder layer, bf16 (hidden 4096, 32 heads, MLP 11008): prefill at
   sequence 4096, and one decode step at batch 1 against a KV cache of 4096 -- -O1 over
   -O0 speedup, kernel launches -O0 / -O1, % of the roofline, and what binds.
2. Llama-3.1-8B (32 layers, GQA 8 KV heads, vocab 128256), one decode step at 8K context:
   predicted tokens/s per socket against the HBM roofline (bytes per token / bandwidth).
3. GPT-2 small (fp32) decoding one token after a 128-token prompt: the same.

    python benchmarks/issue3_figures.py [--json out.json] [--skip-8b]
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any


def _layer(name: str, builder: Any) -> dict[str, Any]:
    from rdu_compiler import bench

    model, inputs = builder()
    result = bench.compare(model, inputs, fabric="sn40l", name=name)
    bench.print_table(result)
    return result.to_dict()


def _tokens_per_s(name: str, builder: Any) -> dict[str, Any]:
    import rdu_compiler

    model, inputs = builder()
    t0 = time.perf_counter()
    program = rdu_compiler.compile(model, inputs, fabric="sn40l", opt_level=1)
    compile_s = time.perf_counter() - t0
    totals, roof = program.report["totals"], program.report["roofline"]
    bounds: dict[str, int] = {}
    for s in program.report["sections"]:
        bounds[s["cost"]["bound"]] = bounds.get(s["cost"]["bound"], 0) + 1
    out = {
        "name": name,
        "sections": totals["sections"],
        "kernels": totals["kernels"],
        "estimated_s": totals["estimated_s"],
        "tokens_per_s": 1.0 / totals["estimated_s"],
        "roofline_tokens_per_s": 1.0 / roof["bound_s"],
        "roofline_bound": roof["bound"],
        "bytes_per_token": roof["compulsory_bytes"],
        "hbm_traffic_bytes": totals["hbm_bytes"],
        "fraction_of_roofline": program.report["roofline_fraction"],
        "sections_bound_by": bounds,
        "compile_s": compile_s,
    }
    print(
        f"{name}: {out['tokens_per_s']:.1f} tokens/s per socket predicted, roofline {out['roofline_tokens_per_s']:.1f} "
        f"({out['fraction_of_roofline']:.0%}); {out['bytes_per_token'] / 1e9:.2f} GB compulsory per token, "
        f"{out['sections']} sections, bound by {bounds}; compiled in {compile_s:.1f} s"
    )
    return out


def main() -> None:
    from rdu_compiler.bench import models as m

    ap = argparse.ArgumentParser()
    ap.add_argument("--json", default=None)
    ap.add_argument("--skip-8b", action="store_true", help="skip the 32-layer Llama-3.1-8B compile (~30 s)")
    args = ap.parse_args()
    figures: dict[str, Any] = {
        "llama2_7b_layer_prefill": _layer("Llama-2-7B layer, prefill 4096, bf16", lambda: m.llama_layer(m.LLAMA2_7B_PREFILL)),
        "llama2_7b_layer_decode": _layer("Llama-2-7B layer, decode (KV 4096), bf16", lambda: m.llama_layer(m.LLAMA2_7B_DECODE)),
    }
    if not args.skip_8b:
        cfg = m.LLAMA31_8B
        figures["llama31_8b_decode"] = _tokens_per_s(
            "Llama-3.1-8B decode at 8K, bf16", lambda: m.llama_model(cfg["shape"], cfg["layers"], cfg["vocab"])
        )
    figures["gpt2_small_decode"] = _tokens_per_s("GPT-2 small decode after 128 tokens, fp32", lambda: m.gpt2_model(m.GPT2_SMALL_DECODE))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2)


if __name__ == "__main__":
    main()
