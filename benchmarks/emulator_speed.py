"""Emulator forward time against eager PyTorch on the CPU (issue 11's emulator goals).

Each model is compiled once (-O1, sn40l); then two warm-up forwards each side (the
emulator prepares its kernels on the first and compiles its hot map payloads on the second,
`interpreters/jit.py`) and `--repeats` forwards of each, interleaved (emulator, eager, emulator, ...) so both see the
same machine load. Reported: the wall-clock medians and their ratio (the goal's measure),
the ratio of the medians of process CPU time (one thread each side, so less sensitive to
other jobs on a shared machine), and `os.getloadavg()` before and after. Threads are fixed to `--threads` on both sides (OMP/OpenBLAS/MKL and torch) before
numpy or torch is imported: the only setting that is stable on a shared machine.

Goals (issue 11): GPT-2 small <= 1.5x eager in fp32 and bf16; the 2-layer examples (Llama,
BERT) and the Llama-2-7B-shaped layer at seq 128 (bf16) <= 2x.

    python benchmarks/emulator_speed.py [--models gpt2,gpt2-bf16,llama2,bert2,7b-layer]
        [--repeats 5] [--threads 1] [--json out.json] [--profile MODEL]

`--profile MODEL` runs cProfile over one emulator forward of MODEL and prints the top
functions by total time (no ratios). `--kernels MODEL` times each kernel of one emulator
forward (after a warm-up) and prints the kernels grouped by pattern, domain and payload
ops, by total time: where a forward's time goes, kernel by kernel.

Eager's own GEMM speed is printed beside the table (one 128x768 @ 768x3072 product in f32
and bf16, and numpy's f32): on a CPU without native bf16 (AVX2 only), torch's bf16 matmul
takes a slow fallback, 10-100x its f32 time, and a bf16 ratio against that eager measures
the fallback, not the emulator; the goal column then says so instead of "met".
"""

from __future__ import annotations

import argparse
import json
import os
import sys

_ap = argparse.ArgumentParser()
_ap.add_argument("--models", default="gpt2,gpt2-bf16,llama2,bert2,7b-layer")
_ap.add_argument("--repeats", type=int, default=5)
_ap.add_argument("--threads", type=int, default=1)
_ap.add_argument("--json", default=None)
_ap.add_argument("--profile", default=None)
_ap.add_argument("--kernels", default=None)
ARGS = _ap.parse_args()
for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = str(ARGS.threads)
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

import torch  # noqa: E402

GOALS = {"gpt2": 1.5, "gpt2-bf16": 1.5, "llama2": 2.0, "bert2": 2.0, "7b-layer": 2.0}


def _load(name: str) -> tuple[Any, tuple[Any, ...]]:
    from rdu_compiler.frontend.torch.model_file import load_model_file

    if name in ("gpt2", "gpt2-bf16"):
        model, inputs = load_model_file("examples/gpt2_small.py")
        if name == "gpt2-bf16":
            model = model.to(torch.bfloat16)
        return model, inputs
    if name == "llama2":
        return load_model_file("examples/llama_2layer.py")
    if name == "bert2":
        return load_model_file("examples/bert_2layer.py")
    if name == "7b-layer":
        from rdu_compiler.bench.models import LayerShape, llama_layer

        return llama_layer(LayerShape(seq=128), dtype=torch.bfloat16, device="cpu")
    raise SystemExit(f"unknown model '{name}'; choose from {sorted(GOALS)}")


def _git_commit(where: str = ".") -> str:
    try:
        return subprocess.run(["git", "-C", where, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


def measure(name: str, repeats: int) -> dict[str, Any]:
    import rdu_compiler

    model, inputs = _load(name)
    t0 = time.perf_counter()
    program = rdu_compiler.compile(model, inputs, fabric="sn40l")
    compile_s = time.perf_counter() - t0
    with torch.no_grad():
        for _ in range(2):  # warm-up: the emulator's per-program preparation, then its compiled loops
            program.run(*inputs)
            model(*inputs)
        emu, eager, emu_cpu, eager_cpu = [], [], [], []
        for _ in range(repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            program.run(*inputs)
            emu.append(time.perf_counter() - t0)
            emu_cpu.append(time.process_time() - c0)
            t0, c0 = time.perf_counter(), time.process_time()
            model(*inputs)
            eager.append(time.perf_counter() - t0)
            eager_cpu.append(time.process_time() - c0)
    e, g = statistics.median(emu), statistics.median(eager)
    ec, gc = statistics.median(emu_cpu), statistics.median(eager_cpu)
    kernels = program.report["totals"]["kernels"]
    return {"model": name, "compile_s": compile_s, "emulator_s": e, "eager_s": g, "ratio": e / g, "goal": GOALS[name],
            "emulator_cpu_s": ec, "eager_cpu_s": gc, "cpu_ratio": ec / gc,
            "kernels": kernels, "emulator_all": emu, "eager_all": eager}


def profile(name: str) -> None:
    import cProfile
    import pstats

    import rdu_compiler

    model, inputs = _load(name)
    program = rdu_compiler.compile(model, inputs, fabric="sn40l")
    program.run(*inputs)
    program.run(*inputs)
    prof = cProfile.Profile(time.process_time)
    prof.enable()
    program.run(*inputs)
    prof.disable()
    pstats.Stats(prof).sort_stats(os.environ.get("SORT", "tottime")).print_stats(int(os.environ.get("TOP", "30")))


def kernel_times(name: str, top: int = 30) -> None:
    """Per-kernel wall time of one emulator forward of `name`, grouped by (pattern, domain,
    payload ops), printed by total time."""
    from collections import defaultdict

    import rdu_compiler
    from rdu_compiler.interpreters.kernel import KernelExecutor
    from rdu_compiler.interpreters.kernel_fast import PreparedKernelExecutor

    model, inputs = _load(name)
    program = rdu_compiler.compile(model, inputs, fabric="sn40l")
    program.run(*inputs)
    program.run(*inputs)
    total: dict[tuple[str, ...], float] = defaultdict(float)
    calls: dict[tuple[str, ...], int] = defaultdict(int)
    timed = PreparedKernelExecutor.run

    def run(self: KernelExecutor, *a: Any, **k: Any) -> Any:
        t = time.perf_counter()
        out = timed(self, *a, **k)  # type: ignore[arg-type]
        ops = " ".join(op.name.split(".")[-1] for op in self.kernel.body.block.ops)
        key = (self.kind.name, str(tuple(self.domain)), f"{out[1].tiles} tile(s)", ops)
        total[key] += time.perf_counter() - t
        calls[key] += 1
        return out

    PreparedKernelExecutor.run = run  # type: ignore[method-assign]
    try:
        t0 = time.perf_counter()
        program.run(*inputs)
        whole = time.perf_counter() - t0
    finally:
        PreparedKernelExecutor.run = timed  # type: ignore[method-assign]
    print(f"{name}: one forward {whole * 1e3:.1f} ms, kernels {sum(total.values()) * 1e3:.1f} ms")
    print("| ms | calls | pattern | domain | tiles | payload |")
    print("|---:|---:|---|---|---|---|")
    for key, t in sorted(total.items(), key=lambda kv: -kv[1])[:top]:
        print(f"| {t * 1e3:.1f} | {calls[key]} | {key[0]} | {key[1]} | {key[2]} | {key[3][:90]} |")


def _cpu() -> str:
    """The CPU's model name and its bf16-relevant ISA flags (Linux /proc/cpuinfo), else the machine type."""
    try:
        with open("/proc/cpuinfo") as f:
            info = f.read()
    except OSError:
        return platform.machine()
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), platform.machine())
    flags = next((set(line.split(":", 1)[1].split()) for line in info.splitlines() if line.startswith("flags")), set())
    isa = [f for f in ("amx_bf16", "avx512_bf16", "avx512f", "avx2") if f in flags]
    return f"{name} ({', '.join(isa) or 'no AVX2'})"


def eager_gemms() -> dict[str, float]:
    """Seconds (best of 5) of one 128x768 @ 768x3072 product: torch f32, torch bf16, numpy f32."""
    a, b = torch.randn(128, 768), torch.randn(768, 3072)
    a16, b16, an, bn = a.bfloat16(), b.bfloat16(), a.numpy(), b.numpy()
    out = {}
    for name, fn in (("torch_f32", lambda: a @ b), ("torch_bf16", lambda: a16 @ b16), ("numpy_f32", lambda: an @ bn)):
        fn()
        ts = []
        for _ in range(5):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        out[name] = min(ts)
    return out


def main() -> None:
    torch.set_num_threads(ARGS.threads)
    if ARGS.profile:
        profile(ARGS.profile)
        return
    if ARGS.kernels:
        kernel_times(ARGS.kernels)
        return
    load0 = os.getloadavg()
    rows = [measure(m, ARGS.repeats) for m in ARGS.models.split(",") if m]
    load1 = os.getloadavg()
    machine = f"{_cpu()}, {os.cpu_count()} cores, {ARGS.threads} thread(s) each side"
    import rdu_compiler
    from rdu_compiler.interpreters import bf16_vec, onednn, sgemm

    where = os.path.dirname(os.path.dirname(os.path.abspath(rdu_compiler.__file__)))
    print(f"rdu_compiler from {where}; commit {_git_commit(where)}; {machine}; load average {load0[0]:.1f} -> {load1[0]:.1f}; medians of {ARGS.repeats}")
    print(f"bf16 tile GEMMs: {onednn.backend()} (RDU_BF16_GEMM=numpy for the widened sgemm)")
    print(f"f32 tile GEMMs: {sgemm.backend()} (RDU_F32_GEMM=numpy for OpenBLAS)")
    print(f"bf16 element-wise: {'torch loops' if bf16_vec.available() else 'ml_dtypes loops'} (RDU_BF16_ELEMENTWISE=numpy for ml_dtypes')")
    from rdu_compiler.interpreters import jit

    print(f"map payloads: {'numba loops' if jit.enabled() else 'numpy steps'} (RDU_JIT=0 for numpy steps); "
          f"compiled runs in this process: {dict(jit.RUNS)}")
    gemm = eager_gemms()
    slow_bf16 = gemm["torch_bf16"] > 4 * gemm["torch_f32"]
    print(f"eager GEMM 128x768x3072: torch f32 {gemm['torch_f32'] * 1e3:.2f} ms, torch bf16 {gemm['torch_bf16'] * 1e3:.2f} ms, "
          f"numpy f32 {gemm['numpy_f32'] * 1e3:.2f} ms" + ("  (torch's bf16 GEMM is a slow fallback on this CPU)" if slow_bf16 else ""))
    print("| model | kernels | emulator | eager | ratio | CPU-time ratio | goal |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        met = "met" if r["ratio"] <= r["goal"] else "not met"
        if slow_bf16 and r["model"] in ("gpt2-bf16", "7b-layer"):
            met = "n/a: eager's bf16 GEMM is a slow fallback here"
        print(f"| {r['model']} | {r['kernels']} | {r['emulator_s'] * 1e3:.1f} ms | {r['eager_s'] * 1e3:.1f} ms | "
              f"{r['ratio']:.2f}x | {r['cpu_ratio']:.2f}x | <= {r['goal']}x ({met}) |")
    if ARGS.json:
        with open(ARGS.json, "w") as f:
            json.dump({"commit": _git_commit(where), "machine": machine, "bf16_gemm": onednn.backend(), "f32_gemm": sgemm.backend(),
                       "eager_gemm_s": gemm, "jit_runs": dict(jit.RUNS), "load": [load0, load1], "rows": rows}, f, indent=2)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
