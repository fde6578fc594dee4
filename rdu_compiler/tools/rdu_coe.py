"""rdu-coe: a Composition of Experts on an RDU node, against GPU boxes.

    rdu-coe coe.toml [--requests N] [--compare dgx-h100,dgx-a100] [--no-prefetch] [--json FILE] [--plot DIR]

coe.toml names the router, the experts, the node and the request mix
(rdu_compiler/coe/config.py). Prints each machine's totals (router, switch, execution,
hit rate), one expert's switching time (with prefetch, the default, the switch column is
the copy time requests waited for and "hidden" the part overlapped with the previous run;
--no-prefetch runs every step in sequence), the footprint and the speedup; --json writes the
whole result, per-request times included; --plot writes breakdown.png and footprint.png
(rdu_compiler/coe/plots.py). Bad input: `error: ...`, exit 2, nothing written.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from typing import Any

from rdu_compiler.errors import RduError


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="rdu-coe", description="Simulate a Composition of Experts on an RDU node.")
    p.add_argument("config", help="coe.toml")
    p.add_argument("--requests", type=int, default=None, help="requests to simulate (default: the config's count)")
    p.add_argument("--compare", default="", help="GPU boxes, comma-separated (dgx-h100,dgx-a100)")
    p.add_argument("--no-prefetch", action="store_true",
                   help="do not copy the next request's expert during the current run (every step in sequence)")
    p.add_argument("--json", default=None, help="write the result as JSON here")
    p.add_argument("--plot", default=None, help="write breakdown.png (and footprint.png with --compare) here")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    args = p.parse_args(argv)
    try:
        result = _run(args)
        text = json.dumps(result, indent=2)
        if args.plot:
            from rdu_compiler.coe.plots import write_coe_plots

            write_coe_plots(result, args.plot)
        if args.json:
            _write_atomic(args.json, text)
    except RduError as e:
        if args.debug:
            raise
        print("error: " + " ".join(str(e).split()), file=sys.stderr)
        sys.exit(2)
    _print(result)


def _run(args: argparse.Namespace) -> dict[str, Any]:
    from rdu_compiler.coe.config import load_config
    from rdu_compiler.coe.gpu import gpu_node
    from rdu_compiler.coe.study import run_study

    compare = [c.strip() for c in args.compare.split(",") if c.strip()]
    for name in compare:
        gpu_node(name)
    if args.json:
        folder = os.path.dirname(os.path.abspath(args.json))
        if not os.path.isdir(folder):
            raise RduError(f"--json {args.json}: the folder {folder} does not exist; create it or pick another path")
    if args.plot:
        parent = os.path.dirname(os.path.abspath(args.plot))
        if not os.path.isdir(parent) or (os.path.exists(args.plot) and not os.path.isdir(args.plot)):
            raise RduError(f"--plot {args.plot}: not a folder, and its parent {parent} must exist; pick a folder")
    cfg = load_config(args.config)
    return run_study(cfg, args.requests, compare, prefetch=not args.no_prefetch)


def _write_atomic(path: str, text: str) -> None:
    """Write `text` to `path` through a temporary file in the same folder and a rename."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=".rdu-coe-", dir=folder)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError as e:
        raise RduError(f"--json {path}: cannot write it ({e}); pick a writable path") from None


def _print(result: dict[str, Any]) -> None:
    machines = ["rdu"] + [k for k in result["speedup"]]
    print(f"{result['requests']} requests over {result['experts']} experts ({result['config']})")
    print(f"{'machine':<22}{'router':>10}{'switch':>11}{'hidden':>11}{'exec':>10}{'total':>10}{'hit rate':>10}{'speedup':>9}")
    for m in machines:
        r = result[m]
        t = r["totals"]
        sp = result["speedup"].get(m)
        print(f"{r['machine']:<22}{_s(t['router_s']):>10}{_s(t['switch_s']):>11}{_s(t.get('hidden_switch_s', 0.0)):>11}"
              f"{_s(t['exec_s']):>10}{_s(t['total_s']):>10}"
              f"{r['hit_rate']:>10.1%}{(f'{sp:.2f}x' if sp else '-'):>9}")
    print("switching one expert: " + ", ".join(f"{k} {_s(v)}" for k, v in result["switch_one_expert_s"].items()))
    for name, fp in result["footprint"].items():
        print(f"footprint, {fp['experts']} experts: {fp['rdu_nodes']} RDU node(s); {fp['gpu_boxes_hbm']} {name} box(es) "
              f"with experts in HBM, {fp['gpu_boxes_host']} with experts in host memory")
    print("note: RDU times are cost-model estimates; a built-in shape's execution is its decoder layer compiled "
          "with rdu-shard (tensor parallelism over the node's sockets) and timed by the node cost model "
          "(coe.llama.rdu_tp_step_s)")


def _s(seconds: float) -> str:
    """A duration with a readable unit (s, ms, us)."""
    if seconds == 0 or abs(seconds) >= 1:
        return f"{seconds:.2f} s"
    if abs(seconds) >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.2f} us"


if __name__ == "__main__":
    main()
