"""GPT-2 small (GPT2Config() defaults, sequence 128) on sn40l: compile time and emulator time.

Measured in one run, against the reference, medians of several repetitions:
  1. our whole compile (`rdu_compiler.compile`: torch.export + torch-mlir + xDSL parse +
     the rdu passes + cost model) vs torch.export + torch-mlir lowering alone, with
     weights lifted to arguments, in torch's public two-step flow (`torch.export.export`,
     `run_decompositions` with torch-mlir's table, FxImporter, lowering:
     `import_torch(one_trace=False)`). Our frontend traces once (`one_trace=True`, same
     program); the ratio against that import alone is printed too. Goal: <= 2x.
  2. one emulator forward vs one PyTorch eager forward on the CPU. Goal: <= 3x.

    python benchmarks/gpt2_small.py [--repeats 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _median_time(fn: Any, repeats: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def main() -> None:
    import torch

    import rdu_compiler
    from rdu_compiler.frontend.torch.export import import_torch
    from rdu_compiler.frontend.torch.model_file import load_model_file

    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--model", default="examples/gpt2_small.py")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    model, inputs = load_model_file(args.model)
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}"

    ref_s, ref_all = _median_time(lambda: import_torch(model, inputs, fold_constants=False, one_trace=False), args.repeats)
    own_s, own_all = _median_time(lambda: import_torch(model, inputs, fold_constants=False), args.repeats)
    ours_s, ours_all = _median_time(lambda: rdu_compiler.compile(model, inputs, fabric="sn40l"), args.repeats)
    program = rdu_compiler.compile(model, inputs, fabric="sn40l")

    program.run(*inputs)  # warm-up (allocations, BLAS threads)
    with torch.no_grad():
        model(*inputs)
    emu, eager = [], []
    for _ in range(max(args.repeats, 3)):  # interleaved, so both see the same machine load
        t0 = time.perf_counter()
        program.run(*inputs)
        emu.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        with torch.no_grad():
            model(*inputs)
        eager.append(time.perf_counter() - t0)
    result = {
        "model": args.model,
        "machine": machine,
        "compile": {"ours_s": ours_s, "ours_all": ours_all, "torch_mlir_s": ref_s, "torch_mlir_all": ref_all, "ratio": ours_s / ref_s,
                    "own_import_s": own_s, "own_import_all": own_all, "ratio_own_import": ours_s / own_s},
        "forward": {
            "emulator_s": statistics.median(emu), "emulator_all": emu,
            "eager_s": statistics.median(eager), "eager_all": eager,
            "ratio": statistics.median(emu) / statistics.median(eager),
        },
        "report": {k: program.report["totals"][k] for k in ("sections", "kernels", "hbm_bytes", "estimated_s")},
    }
    print(f"machine: {machine}")
    print(f"compile: ours {ours_s:.2f} s vs torch.export+torch-mlir {ref_s:.2f} s -> {ours_s / ref_s:.2f}x (goal <= 2x); "
          f"vs our single-trace import {own_s:.2f} s -> {ours_s / own_s:.2f}x")
    print(
        f"forward: emulator {result['forward']['emulator_s']:.3f} s vs eager {result['forward']['eager_s']:.3f} s "
        f"-> {result['forward']['ratio']:.2f}x (goal <= 3x)"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
