"""rdu-serve: how should this chip serve this traffic? (issue 15)

    rdu-serve --model llama3.1-8b --fabric sn40l --trace conversation --rate 2.5 --duration 600 \
              --policy nexus [--slo-ttft 0.5 --slo-tbt 0.05] [--goodput] [--json FILE] [--plot DIR]
    rdu-serve --fabric sn40l-node8 --sockets 4 --policy disaggregated[:P:D] ...

Compiles (or reads from the cache) the model's prefill, decode and head programs on shares
of the fabric, fits their latency (rdu_compiler.serve.latency), then simulates the trace
(rdu_compiler.serve.sim) and prints TTFT/TBT p50/p95/p99, throughput and SLO attainment.
`--goodput` finds the highest rate at which >= 90 % of requests meet both SLOs (binary
search). `--sockets N` serves on N sockets of a node fabric (`serve.node`): replicas of the
policy, or `disaggregated` prefill and decode sockets (plain `disaggregated` sweeps the
P:D splits and keeps the best). Bad input: one paragraph `error: ...` on stderr, exit status 2, no file written.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from rdu_compiler.errors import RduError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"error: {message}; see rdu-serve --help\n")
        sys.exit(2)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="rdu-serve", description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--model", default="llama3.1-8b", help="llama3.1-8b | llama2-7b | tiny")
    p.add_argument("--fabric", default="sn40l", help="preset name or fabric .toml")
    p.add_argument("--trace", default="conversation", help="conversation | code | FILE.csv")
    p.add_argument("--rate", type=float, default=1.0, help="requests/s (generated traces; a CSV keeps its own times unless --goodput rescales them)")
    p.add_argument("--duration", type=float, default=60.0, help="seconds of arrivals (generated traces)")
    p.add_argument("--cv", type=float, default=1.0, help="inter-arrival coefficient of variation (1 = Poisson)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--policy", default="nexus", help="nexus | chunked | static:F | disaggregated[:P:D]")
    p.add_argument("--sockets", type=int, default=1, help="sockets of the node to serve on (a node fabric such as sn40l-node8)")
    p.add_argument("--shares", default="0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9", help="fabric shares to compile")
    p.add_argument("--chunk-tokens", type=int, default=512, help="chunked: token budget per step")
    p.add_argument("--block-tokens", type=int, default=16, help="KV block size (tokens)")
    p.add_argument("--slo-ttft", type=float, default=None, help="TTFT SLO (s)")
    p.add_argument("--slo-tbt", type=float, default=None, help="TBT (TPOT) SLO (s)")
    p.add_argument("--goodput", action="store_true", help="binary-search the highest rate meeting both SLOs at P90")
    p.add_argument("--json", default=None, help="write metrics (and goodput) as JSON")
    p.add_argument("--plot", default=None, help="write TTFT/TBT CDFs and the split over time as PNGs into this directory")
    p.add_argument("--cache", default=None, help="latency cache dir (default $RDU_SERVE_CACHE or ~/.cache/rdu_compiler/serve)")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    try:
        _run(args)
    except (RduError, OSError) as e:
        if args.debug:
            raise
        sys.stderr.write(f"error: {' '.join(str(e).split())}\n")
        sys.exit(2)


def _check(args: argparse.Namespace) -> list[float]:
    from rdu_compiler.serve.policies import parse_policy
    from rdu_compiler.serve.programs import MODELS

    if args.model not in MODELS:
        raise RduError(f"unknown model {args.model!r}; use one of {', '.join(MODELS)}")
    policy = parse_policy(args.policy, chunk_tokens=args.chunk_tokens)  # refuses bad names before compiling
    _node(args, policy)
    for name in ("rate", "duration", "cv"):
        value = getattr(args, name)
        if not (math.isfinite(value) and value > 0):
            raise RduError(f"--{name} must be a positive number, got {value!r}")
    for name in ("slo_ttft", "slo_tbt"):
        value = getattr(args, name)
        if value is not None and not (math.isfinite(value) and value > 0):
            raise RduError(f"--{name.replace('_', '-')} must be a positive number of seconds, got {value!r}")
    if args.goodput and (args.slo_ttft is None or args.slo_tbt is None):
        raise RduError("--goodput needs both --slo-ttft and --slo-tbt (seconds)")
    if args.block_tokens < 1:
        raise RduError(f"--block-tokens must be >= 1, got {args.block_tokens}")
    if args.json and os.path.isdir(args.json):
        raise RduError(f"--json {args.json!r} is a directory; give a file name")
    if args.plot and os.path.exists(args.plot) and not os.path.isdir(args.plot):
        raise RduError(f"--plot {args.plot!r} is a file; give a directory")
    if args.json and not os.path.isdir(os.path.dirname(os.path.abspath(args.json))):
        raise RduError(f"--json {args.json!r}: its directory does not exist; create it or give another path")
    try:
        shares = [float(s) for s in args.shares.split(",") if s.strip()]
    except ValueError:
        raise RduError(f"--shares {args.shares!r}: give comma-separated numbers in (0, 1)") from None
    if not shares or any(not 0 < s < 1 for s in shares):
        raise RduError(f"--shares {args.shares!r}: every share must be strictly between 0 and 1")
    return shares


def _node(args: argparse.Namespace, policy: Any) -> Any:
    """The node's NodeSpec when serving on several sockets or disaggregated, else None.

    Raises:
        RduError: a bad --sockets, or a split that does not add up to it."""
    if args.sockets < 1:
        raise RduError(f"--sockets must be >= 1, got {args.sockets}")
    if args.sockets == 1 and policy.kind != "disaggregated":
        return None
    if args.sockets < 2:
        raise RduError(f"policy {policy.name} needs --sockets >= 2 (prefill and decode on different sockets) on a node "
                       "fabric, e.g. --fabric sn40l-node8 --sockets 4")
    from rdu_compiler.fabric import load_fabric

    node = load_fabric(args.fabric).node
    if args.sockets > node.sockets:
        raise RduError(f"--sockets {args.sockets}: fabric {args.fabric!r} has {node.sockets} socket(s); use a node fabric "
                       "such as sn40l-node8 (8 sockets) or fewer sockets")
    if policy.prefill_sockets and policy.prefill_sockets + policy.decode_sockets != args.sockets:
        raise RduError(f"policy {policy.name}: P + D = {policy.prefill_sockets + policy.decode_sockets} but --sockets is "
                       f"{args.sockets}; make them equal, or use plain disaggregated to sweep the splits")
    return node


def _trace(args: argparse.Namespace, rate: float) -> list[Any]:
    from rdu_compiler.serve.traces import Request, generate, read_csv

    if args.trace.endswith(".csv") or os.path.exists(args.trace):
        reqs = read_csv(args.trace)
        if rate == args.rate and not args.goodput:
            return reqs
        span = max(reqs[-1].arrived_at, 1e-9)
        scale = (len(reqs) / span) / rate  # compress or stretch arrivals to the asked mean rate
        return [Request(r.arrived_at * scale, r.num_prefill_tokens, r.num_decode_tokens) for r in reqs]
    return generate(args.trace, rate, args.duration, cv=args.cv, seed=args.seed)


def _run(args: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.progress import Progress

    from rdu_compiler.serve import latency
    from rdu_compiler.serve.node import simulate_node
    from rdu_compiler.serve.policies import parse_policy
    from rdu_compiler.serve.sim import simulate

    shares = _check(args)
    policy = parse_policy(args.policy, chunk_tokens=args.chunk_tokens)
    node = _node(args, policy)
    _trace(args, args.rate)  # a bad trace name or CSV fails before compiling
    shares = sorted({*shares, *(1 - s for s in shares)} | ({policy.share, 1 - policy.share} if policy.kind == "static" else set()))
    if not policy.spatial:
        shares = []  # chunked and disaggregated run on whole sockets: only the whole grid (always compiled)
    console = Console(stderr=True)
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("compiling phase points", total=None)
        lm = latency.build_latency_model(args.model, args.fabric, shares, cache_dir=args.cache,
                                 progress=lambda s: bar.update(task, description=f"compiling {s}"))
        bar.remove_task(task)

        def run_at(rate: float, label: str) -> Any:
            t = bar.add_task(label, total=1)

            def tick(done: int, total: int) -> None:
                bar.update(t, completed=done, total=total)

            kw: dict[str, Any] = {"block_tokens": args.block_tokens, "slo_ttft": args.slo_ttft, "slo_tbt": args.slo_tbt,
                                  "progress": tick}
            if node is None:
                res = simulate(_trace(args, rate), lm, policy, **kw)
            else:
                res = simulate_node(_trace(args, rate), lm, policy, sockets=args.sockets, node=node, **kw)
            bar.remove_task(t)
            return res

        result = run_at(args.rate, f"simulating {policy.name} at {args.rate:g} req/s")
        good = _goodput(run_at, args.rate) if args.goodput else None
    out = {"model": args.model, "fabric": args.fabric, "trace": args.trace, "rate": args.rate, "policy": result.policy,
           "sockets": args.sockets,
           "metrics": result.metrics, "kv_capacity_blocks": result.kv_capacity_blocks, "kv_peak_blocks": result.kv_peak_blocks,
           "fit_error": lm.fit_error, "goodput_rps": good}
    if node is not None and policy.kind == "disaggregated":
        trs = result.transfers
        out["kv_transfers"] = {"count": len(trs), "bytes_mean": sum(t.nbytes for t in trs) / max(1, len(trs)),
                               "seconds_mean": sum(t.end - t.start for t in trs) / max(1, len(trs))}
        out["split_sweep"] = result.sweep
    _print(out)
    if args.plot:
        from rdu_compiler.serve.plots import write_plots

        for path in write_plots(result, lm.base_rows, args.plot):
            print(f"  wrote {path}")
    if args.json:
        tmp = f"{args.json}.tmp{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(out, f, indent=1, default=str)
        os.replace(tmp, args.json)


def _goodput(run_at: Callable[[float, str], Any], start: float, steps: int = 8) -> float:
    """Highest rate (req/s) whose SLO attainment is >= 0.9: bracket by doubling/halving from
    `start`, then `steps` bisections. 0.0 when even start / 256 fails."""

    def ok(rate: float) -> bool:
        return run_at(rate, f"goodput: trying {rate:.3g} req/s").metrics["slo_attainment"] >= 0.9

    lo, hi = 0.0, start
    if ok(start):
        lo = start
        for _ in range(8):
            hi = lo * 2
            if not ok(hi):
                break
            lo = hi
        else:
            return lo
    else:
        for _ in range(8):
            hi /= 2
            if ok(hi):
                lo, hi = hi, hi * 2
                break
        else:
            return 0.0
    for _ in range(steps):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
    return lo


def _print(out: dict[str, Any]) -> None:
    m = out["metrics"]

    def ms(d: dict[str, float]) -> str:
        return " / ".join(f"{d[k] * 1e3:.1f}" for k in ("p50", "p95", "p99"))

    print(f"{out['model']} on {out['fabric']}, trace {out['trace']} at {out['rate']:g} req/s, policy {out['policy']}")
    if out.get("sockets", 1) > 1:
        print(f"  sockets             {out['sockets']}")
    for s in out.get("split_sweep") or []:
        print(f"  split {s['prefill_sockets']}:{s['decode_sockets']}           SLO {s['slo_attainment'] * 100:5.1f} %, "
              f"{s['throughput_tok_s']:.1f} tokens/s, P95 TTFT {s['ttft_p95_s'] * 1e3:.1f} ms")
    if "kv_transfers" in out:
        k = out["kv_transfers"]
        print(f"  KV transfers        {k['count']}, mean {k['bytes_mean'] / 1e6:.2f} MB in {k['seconds_mean'] * 1e3:.3f} ms")
    print(f"  requests finished   {m['finished']} / {m['requests']}  (preemptions {m['preemptions']})")
    print(f"  TTFT p50/p95/p99    {ms(m['ttft_s'])} ms")
    print(f"  TBT  p50/p95/p99    {ms(m['tbt_s'])} ms")
    print(f"  throughput          {m['throughput_rps']:.3f} req/s, {m['throughput_tok_s']:.1f} output tokens/s")
    print(f"  KV blocks peak      {out['kv_peak_blocks']} / {out['kv_capacity_blocks']}")
    if m["slo_ttft_s"] is not None or m["slo_tbt_s"] is not None:
        print(f"  SLO attainment      {m['slo_attainment'] * 100:.1f} %  (TTFT <= {m['slo_ttft_s']} s, TPOT <= {m['slo_tbt_s']} s)")
    if out["goodput_rps"] is not None:
        print(f"  goodput (P90 SLOs)  {out['goodput_rps']:.3f} req/s")


if __name__ == "__main__":
    main()
