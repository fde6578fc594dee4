#!/usr/bin/env python
"""Run ONNX's backend node tests (all 1,884 cases, or a subset) on the emulator and
rewrite testsuite/onnx/expected.json: every case that does not pass, with its class.

    python scripts/refresh_onnx_expected.py                  # full sweep, 2 workers
    python scripts/refresh_onnx_expected.py --workers 8 --timeout 120
    python scripts/refresh_onnx_expected.py --only 'test_conv.*' --dry-run
    python scripts/refresh_onnx_expected.py --executor ray [--address ray://host:10001]
    nohup python scripts/refresh_onnx_expected.py > sweep.log 2>&1 &

Each case is compiled for sn40l at -O1 and run in a worker process (or a Ray task: the
executors of rdu-sweep, `rdu_compiler.parallel`) under a per-case timeout (a timeout
counts as a crash). With --only, the other cases keep their entries.
Prints one line per case and the count per class; the JSON records the counts, the date,
the machine and the wall time of the sweep.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "testsuite" / "onnx"))

import onnx_conformance as oc  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--timeout", type=float, default=oc.CASE_TIMEOUT_S, help="seconds per case")
    p.add_argument("--executor", choices=["process", "ray"], default="process",
                   help="rdu_compiler.parallel executor: forked processes, or Ray tasks (local or --address)")
    p.add_argument("--address", default=None, help="a Ray cluster (ray://host:10001); default $RAY_ADDRESS or local")
    p.add_argument("--only", default=None, help="regex of case names (others keep their entries)")
    p.add_argument("--sample", action="store_true", help="only the CI sample")
    p.add_argument("--dry-run", action="store_true", help="print, do not write expected.json")
    p.add_argument("--out", default=str(oc.EXPECTED_JSON))
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    cases = oc.load_cases()
    names = list(cases)
    if args.sample:
        names = oc.sample(cases)
    if args.only:
        names = [n for n in names if re.fullmatch(args.only, n)]
    partial = len(names) != len(cases)
    print(f"{len(names)} of {len(cases)} cases, {args.workers} workers, {args.timeout:.0f} s per case", flush=True)

    done = [0]
    t0 = time.time()

    def report(out: oc.Outcome) -> None:
        done[0] += 1
        print(f"[{done[0]}/{len(names)}] {out.name}: {out.cls} ({out.seconds:.1f} s) {out.detail}", flush=True)

    results = oc.run_cases(names, workers=args.workers, timeout_s=args.timeout, on_result=report,
                           executor=args.executor, address=args.address)
    wall = time.time() - t0

    out_path = Path(args.out)
    old = json.loads(out_path.read_text()) if out_path.exists() else {"cases": {}}
    entries: dict[str, dict[str, str]] = {}
    if partial:
        entries = {k: v for k, v in old.get("cases", {}).items() if k in cases and k not in results}
    for name, out in results.items():
        if out.cls != "pass":
            entries[name] = out.to_json()
    all_classes = {n: (entries[n]["class"] if n in entries else "pass") for n in cases}
    counts = {c: 0 for c in oc.CLASSES}
    for c in all_classes.values():
        counts[c] += 1
    changed = sorted(
        n for n in results if results[n].cls != oc.expected_class(old, n)
    ) if old.get("cases") is not None else []
    print("\nthis run: " + ", ".join(f"{c} {v}" for c, v in oc.summarize(results).items()))
    print(f"all {len(cases)} cases: " + ", ".join(f"{c} {v} ({100 * v / len(cases):.1f}%)" for c, v in counts.items()))
    print(f"{len(changed)} case(s) changed class; wall {wall:.0f} s")
    for n in changed[:50]:
        print(f"  {n}: {oc.expected_class(old, n)} -> {results[n].cls}")
    if args.dry_run:
        return 0
    doc = {
        "about": (
            "ONNX backend node tests (onnx.backend.test.loader.load_model_tests(kind='node')) "
            "compiled for sn40l -O1 and run on the emulator; every case not listed passes. "
            "Refresh with scripts/refresh_onnx_expected.py."
        ),
        "onnx_version": _version("onnx"),
        "torch_mlir_version": _version("torch-mlir"),
        "date": datetime.date.today().isoformat() if not partial else old.get("date", datetime.date.today().isoformat()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "sweep_wall_s": round(wall) if not partial else old.get("sweep_wall_s"),
        "total": len(cases),
        "counts": counts,
        "cases": dict(sorted(entries.items())),
    }
    out_path.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {out_path}")
    return 0


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "?"


if __name__ == "__main__":
    sys.exit(main())
