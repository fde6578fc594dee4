"""Our Triton kernels vs PyTorch eager vs torch.compile (inductor), on a CUDA GPU.

Measured in one run, on the device it prints, medians of many timed samples:

  1. every fused Triton kernel of GPT-2 small (GPT2Config(), fp32, sequence 128) and of a
     Llama-2-7B-shaped decoder layer (`rdu_compiler.bench.models.llama_layer`, bf16, real
     random weights on the GPU), each against the same computation as PyTorch ops
     (`runtime.triton.reference.GroupReference`: the kernel's rdu kernels run op by op, as
     eager runs them) and against `torch.compile` of that function. GPT-2's twelve
     layers repeat the same kernels: each distinct kernel is timed once (`x12`).
  2. the whole GPT-2 small forward: ours (and ours replayed as one CUDA graph) against the
     Hugging Face model in eager and under torch.compile (default, and reduce-overhead,
     which also uses CUDA graphs).

Goals (issue 5): fused elementwise and row-reduction kernels >= 1.0x torch.compile;
matmul with epilogue >= 0.8x torch.compile; whole GPT-2 small forward >= 1.5x eager. The
summary states, from the numbers of this run only, whether each goal is met.

    python benchmarks/triton_vs_torch.py [--samples 50] [--reps 10] [--json out.json]
        [--llama-seq 4096] [--skip-llama] [--skip-gpt2]
    python benchmarks/triton_vs_torch.py --smoke   # no GPU: tiny shapes, the interpreter,
                                                   # checks that the script runs (no timing claims)

Each sample times `--reps` back-to-back calls between two CUDA events (so launch latency
is amortized when the GPU is the bottleneck and visible when it is not); inputs stay
resident (no L2 flush). Our kernels are autotuned on their first call (warmup). fp32
matmuls run with IEEE fp32 on all three sides (`torch.backends.cuda.matmul.allow_tf32`
stays False, our `tl.dot(..., input_precision="ieee")`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--samples", type=int, default=50, help="timed samples per measurement (median reported)")
    p.add_argument("--reps", type=int, default=10, help="back-to-back calls per sample (kernels)")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--llama-seq", type=int, default=4096, help="tokens of the Llama-2-7B layer (prefill)")
    p.add_argument("--skip-llama", action="store_true")
    p.add_argument("--skip-gpt2", action="store_true")
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile (e.g. no working inductor)")
    p.add_argument("--smoke", action="store_true", help="CPU + Triton interpreter, tiny shapes: does the script run")
    p.add_argument("--json", default=None, help="write all measurements to this file")
    return p.parse_args(argv)


# --------------------------------------------------------------------------- timing


class Timer:
    """Median time of a callable, in microseconds (CUDA events on a GPU, wall clock on the CPU)."""

    def __init__(self, device: str, samples: int, reps: int, warmup: int):
        self.device, self.samples, self.reps, self.warmup = device, samples, reps, warmup

    def __call__(self, fn: Callable[[], Any], reps: int | None = None) -> float:
        import torch

        reps = reps or self.reps
        for _ in range(self.warmup):
            fn()
        times = []
        if self.device == "cuda":
            torch.cuda.synchronize()
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            for _ in range(self.samples):
                start.record()
                for _ in range(reps):
                    fn()
                end.record()
                end.synchronize()
                times.append(start.elapsed_time(end) * 1e3 / reps)
        else:
            for _ in range(self.samples):
                t0 = time.perf_counter()
                for _ in range(reps):
                    fn()
                times.append((time.perf_counter() - t0) * 1e6 / reps)
        return statistics.median(times)


# --------------------------------------------------------------------------- fused kernels


def category(launch: Any) -> str:
    from rdu_compiler.dialects.rdu import Pattern

    if any(i.kind == Pattern.SCAN for i in launch.infos):
        return "scan"
    if any(i.dot is not None for i in launch.infos):
        return "matmul+epilogue" if len(launch.infos) > 1 else "matmul"
    if any(i.red for i in launch.infos):
        return "row reduction" if len(launch.infos) > 1 else "reduction"
    return "elementwise"


def record_launches(runner: Any, inputs: list[Any]) -> dict[str, tuple[tuple[Any, ...], Any]]:
    """Run once, keeping each kernel's arguments and grid (the tensors stay alive)."""
    seen: dict[str, tuple[tuple[Any, ...], Any]] = {}
    patched = []
    for name in dict.fromkeys(la.name for la in runner.source.launches):  # shared kernels once
        kernel = getattr(runner.module, name)
        orig = kernel.run

        def wrap(*a: Any, _orig: Any = orig, _name: str = name, **kw: Any) -> Any:
            seen[_name] = (a, kw.get("grid"))
            return _orig(*a, **kw)

        kernel.run = wrap
        patched.append((kernel, orig))
    runner.run(*inputs)
    for kernel, orig in patched:
        kernel.run = orig
    return seen


def bench_kernels(title: str, runner: Any, inputs: list[Any], timer: Timer, compile_ok: bool) -> list[dict[str, Any]]:
    import torch

    from rdu_compiler.runtime.triton.reference import GroupReference

    src = runner.source
    seen = record_launches(runner, inputs)
    groups: dict[str, list[Any]] = {}
    for la in src.launches:  # a kernel shared by several layers is timed once
        groups.setdefault(la.name, []).append(la)
    rows = []
    print(f"\n{title}: {len(src.launches)} Triton kernels for {src.rdu_kernels} rdu kernels, {len(groups)} distinct")
    print(f"{'kernel':34s} {'kind':16s} {'x':>3s} {'ours µs':>10s} {'eager µs':>10s} {'compile µs':>11s} {'vs eager':>9s} {'vs comp.':>9s} {'max err':>9s}")
    for same in groups.values():
        la = same[0]
        args, grid = seen[la.name]
        kernel = getattr(runner.module, la.name)
        outs = set(la.outputs)
        n_in = len([v for v in la.args if v not in outs])
        ins, outputs = list(args[:n_in]), list(args[n_in:])
        ref = GroupReference(src, la)
        with torch.no_grad():
            want = ref(*ins)
        err = max((_rel(g, w) for g, w in zip(outputs, want, strict=True)), default=0.0)
        ours = timer(lambda kernel=kernel, args=args, grid=grid: kernel.run(*args, grid=grid, warmup=False))
        with torch.no_grad():
            eager = timer(lambda ref=ref, ins=ins: ref(*ins))
            comp = math.nan
            if compile_ok:
                try:
                    fn = torch.compile(ref, dynamic=False)
                    comp = timer(lambda fn=fn, ins=ins: fn(*ins))
                except Exception as e:  # noqa: BLE001 - report and go on
                    print(f"  torch.compile failed on {la.name}: {type(e).__name__}: {str(e)[:120]}")
        row = {
            "kernel": la.name, "members": la.members, "kind": category(la), "count": len(same),
            "ours_us": ours, "eager_us": eager, "compile_us": comp, "max_rel_err": err,
        }
        rows.append(row)
        print(f"{la.name[:34]:34s} {row['kind']:16s} {len(same):3d} {ours:10.1f} {eager:10.1f} {comp:11.1f} "
              f"{eager / ours:8.2f}x {comp / ours:8.2f}x {err:9.1e}")
    return rows


def _rel(got: Any, want: Any) -> float:
    if not want.dtype.is_floating_point:
        return float((got != want).float().mean())
    g, w = got.double(), want.double()
    ok = torch_isfinite(w)
    return float((g[ok] - w[ok]).norm() / max(float(w[ok].norm()), 1e-30))


def torch_isfinite(x: Any) -> Any:
    import torch

    return torch.isfinite(x)


# --------------------------------------------------------------------------- models


def build_gpt2(smoke: bool) -> tuple[Any, tuple[Any, ...]]:
    sys.path.insert(0, str(ROOT / "examples"))
    if smoke:
        import gpt2_2layer as m
    else:
        import gpt2_small as m
    return m.get_model()


def compile_program(model: Any, inputs: tuple[Any, ...], device: str) -> tuple[Any, Any]:
    import rdu_compiler
    from rdu_compiler.runtime.triton.runner import TritonRunner

    t0 = time.perf_counter()
    program = rdu_compiler.compile(model, inputs, fabric="sn40l", opt_level=1)
    src = program.triton_source()
    print(f"compiled in {time.perf_counter() - t0:.1f} s")
    return program, TritonRunner(src, program.imported.weights, device=device)


def whole_forward(model: Any, inputs: tuple[Any, ...], runner: Any, timer: Timer, device: str, compile_ok: bool) -> dict[str, Any]:
    import torch

    model = model.to(device)
    xs = [x.to(device) for x in inputs]
    out: dict[str, Any] = {}
    with torch.no_grad():
        want = model(*xs)
        (got,) = runner.run(*xs)
        out["max_rel_err"] = _rel(got, want)
        out["ours_us"] = timer(lambda: runner.run(*xs), reps=1)
        if device == "cuda":
            out["ours_cuda_graph_us"] = timer(_graphed(runner, xs), reps=1)
        out["eager_us"] = timer(lambda: model(*xs), reps=1)
        if compile_ok:
            for mode in ("default", "reduce-overhead"):
                try:
                    fn = torch.compile(model, mode=mode)
                    out[f"compile_{mode}_us"] = timer(lambda fn=fn: fn(*xs), reps=1)
                except Exception as e:  # noqa: BLE001
                    print(f"torch.compile({mode}) failed: {type(e).__name__}: {str(e)[:120]}")
    print("\nwhole GPT-2 small forward (µs, median):")
    for k, v in out.items():
        print(f"  {k:28s} {v:12.1f}" if k.endswith("_us") else f"  {k:28s} {v:12.2e}")
    print(f"  ours vs eager: {out['eager_us'] / out['ours_us']:.2f}x"
          + (f", ours+CUDA graph vs eager: {out['eager_us'] / out['ours_cuda_graph_us']:.2f}x" if "ours_cuda_graph_us" in out else ""))
    return out


def _graphed(runner: Any, xs: list[Any]) -> Callable[[], Any]:
    """`runner.run` captured once as a CUDA graph (same input buffers), replayed."""
    import torch

    static = [x.clone() for x in xs]
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            runner.run(*static)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        runner.run(*static)
    return graph.replay


# --------------------------------------------------------------------------- summary


def summarize(rows: list[dict[str, Any]], whole: dict[str, Any] | None, smoke: bool = False) -> dict[str, Any]:
    def geo(xs: list[float]) -> float:
        xs = [x for x in xs if x > 0 and math.isfinite(x)]
        return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else math.nan

    def weighted(kinds: tuple[str, ...], ref: str) -> float:
        sel = [r for r in rows if r["kind"] in kinds]
        return geo([r[ref] / r["ours_us"] for r in sel])

    out = {
        "elementwise_vs_compile": weighted(("elementwise",), "compile_us"),
        "row_reduction_vs_compile": weighted(("row reduction", "reduction"), "compile_us"),
        "matmul_vs_compile": weighted(("matmul", "matmul+epilogue"), "compile_us"),
        "all_vs_eager": weighted(("elementwise", "row reduction", "reduction", "matmul", "matmul+epilogue"), "eager_us"),
    }
    goals = [
        ("fused elementwise >= 1.0x torch.compile", out["elementwise_vs_compile"], 1.0),
        ("fused row reductions >= 1.0x torch.compile", out["row_reduction_vs_compile"], 1.0),
        ("matmul with epilogue >= 0.8x torch.compile", out["matmul_vs_compile"], 0.8),
    ]
    if whole:
        out["gpt2_forward_vs_eager"] = whole["eager_us"] / whole["ours_us"]
        goals.append(("whole GPT-2 small forward >= 1.5x eager", out["gpt2_forward_vs_eager"], 1.5))
    print("\nsummary (geometric means of per-kernel speedups; >1 = ours faster):")
    for name, value, goal in goals:
        verdict = "not measured" if not math.isfinite(value) or smoke else ("met" if value >= goal else "NOT met")
        print(f"  {name:46s} {value:6.2f}x  {verdict}")
    out["goals"] = {name: (None if not math.isfinite(v) or smoke else v >= g) for name, v, g in goals}
    return out


def main(argv: list[str] | None = None) -> None:
    args = _args(argv)
    if args.smoke:
        os.environ["TRITON_INTERPRET"] = "1"  # before anything imports triton
    from rdu_compiler.runtime.triton.settings import prepare

    settings = prepare("cpu" if args.smoke else None)
    import torch
    import triton

    device = settings.device
    if device != "cuda" and not args.smoke:
        sys.exit("no CUDA device: this benchmark needs a GPU (use --smoke to check that it runs)")
    name = torch.cuda.get_device_name() if device == "cuda" else f"CPU ({platform.processor() or platform.machine()}), Triton interpreter"
    print(f"device: {name}; torch {torch.__version__}, triton {triton.__version__}, python {platform.python_version()}")
    if args.smoke:
        args.samples, args.reps, args.warmup = 2, 1, 1
    timer = Timer(device, args.samples, args.reps, args.warmup)
    compile_ok = not args.no_compile and not args.smoke
    result: dict[str, Any] = {"device": name, "torch": torch.__version__, "triton": triton.__version__,
                              "samples": args.samples, "reps": args.reps, "smoke": args.smoke}
    rows: list[dict[str, Any]] = []
    whole = None
    if not args.skip_gpt2:
        model, inputs = build_gpt2(args.smoke)
        _, runner = compile_program(model, inputs, device)
        xs = [x.to(device) for x in inputs]
        gpt2_rows = bench_kernels("GPT-2 small" if not args.smoke else "GPT-2 (2 layers, smoke)", runner, xs, timer, compile_ok)
        rows += gpt2_rows
        result["gpt2_kernels"] = gpt2_rows
        whole = whole_forward(model, inputs, runner, timer, device, compile_ok)
        result["gpt2_forward"] = whole
    if not args.skip_llama:
        from rdu_compiler.bench.models import LayerShape, llama_layer

        shape = LayerShape(seq=args.llama_seq) if not args.smoke else LayerShape(hidden=64, heads=4, kv_heads=4, mlp=128, seq=16)
        model, inputs = llama_layer(shape, dtype=torch.bfloat16, device="cpu")  # real weights
        _, runner = compile_program(model, inputs, device)
        xs = [x.to(device) for x in inputs]
        llama_rows = bench_kernels(f"Llama-2-7B-shaped decoder layer (bf16, seq {shape.seq})", runner, xs, timer, compile_ok)
        rows += llama_rows
        result["llama_kernels"] = llama_rows
    result["summary"] = summarize(rows, whole, args.smoke)
    if args.smoke:
        print("\n(--smoke: CPU interpreter timings, meaningless as performance numbers)")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=str))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
