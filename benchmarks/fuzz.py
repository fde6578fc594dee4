"""The random-graph fuzz at a large budget: N programs, each at -O0/-O1 on sn40l and tiny.

Program i is `fuzz_programs.generate(RandomChooser(seed + i))` (testsuite/fuzz), so any
program is reproducible from its seed alone. Each is compiled with `rdu_compiler.compile`
for the four configurations and run on the emulator against eager (see
testsuite/fuzz/fuzz_programs.py for the rules). Writes to DIR (default fuzz_out/):

- `summary.json`: outcome counts per configuration run (pass, refused by class, known by
  class, wrong by class, crash by class), per program (its worst outcome), and the seeds
  of the failing programs;
- `programs.jsonl`: one record per finished program (seed, worst outcome, each run), appended
  as programs finish; `--resume` skips the seeds already there, so a long run can stop and go
  on (the counts in summary.json then cover every record in the file);
- `failures/seed<S>.py`: each program with a wrong number or a crash, as a standalone
  model.py (re-run it with `rdu-compile failures/seed<S>.py --check`), its outcomes in the
  docstring.

    python benchmarks/fuzz.py --examples 10000 [--seed 0] [--out DIR] [--jobs N] [--resume]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "testsuite" / "fuzz"))

import fuzz_programs as fp  # noqa: E402

RANK = {"pass": 0, "refused": 1, "illcond": 2, "known": 3, "wrong": 4, "crash": 5}


def one(seed: int) -> dict[str, Any]:
    """Generate program `seed`, check it in every configuration: a JSON-able record."""
    warnings.filterwarnings("ignore")
    prog = fp.generate(fp.RandomChooser(seed))
    t0 = time.perf_counter()
    try:
        outcomes = fp.check_program(prog)
    except Exception as e:  # noqa: BLE001 - eager itself failed: a generator bug, reported
        outcomes = [fp.Outcome("crash", f"generator: {type(e).__name__}", str(e), ("eager", -1))]
    runs = [{"config": f"{o.config[0]}-O{o.config[1]}", "kind": o.kind, "cls": o.cls,
             "detail": o.detail[-1500:]} for o in outcomes]
    worst = max(runs, key=lambda r: RANK[r["kind"]])
    return {"seed": seed, "kind": worst["kind"], "cls": worst["cls"], "runs": runs,
            "seconds": round(time.perf_counter() - t0, 2),
            "source": fp.render(prog, title=f"fuzz program seed {seed}") if RANK[worst["kind"]] >= RANK["wrong"] else None}


def _label(run: dict[str, Any]) -> str:
    return run["kind"] if run["kind"] == "pass" else f"{run['kind']}: {run['cls']}"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--examples", type=int, default=100, help="programs to run (default 100)")
    p.add_argument("--seed", type=int, default=0, help="seed of the first program (default 0)")
    p.add_argument("--out", default="fuzz_out", help="output folder (default fuzz_out/)")
    p.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--resume", action="store_true", help="skip seeds already in DIR/programs.jsonl")
    args = p.parse_args(argv)
    out = Path(args.out)
    (out / "failures").mkdir(parents=True, exist_ok=True)
    records = out / "programs.jsonl"
    done = [json.loads(line) for line in records.read_text().splitlines() if line.strip()] if args.resume and records.exists() else []
    if not args.resume:
        records.write_text("")
    seen = {r["seed"] for r in done}
    seeds = [s for s in range(args.seed, args.seed + args.examples) if s not in seen]
    per_run: Counter[str] = Counter()
    per_program: Counter[str] = Counter()
    failing: list[int] = []
    seconds = 0.0  # per-program wall time, summed over workers
    for rec in done:
        seconds += rec["seconds"]
        per_program[rec["kind"]] += 1
        per_run.update(_label(r) for r in rec["runs"])
        if RANK[rec["kind"]] >= RANK["wrong"]:
            failing.append(rec["seed"])
    summary: dict[str, Any] = {}
    t0 = time.perf_counter()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).parent).stdout.strip() or "unknown"
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(args.jobs, maxtasksperchild=50) if args.jobs > 1 else _Serial() as pool:
        for i, rec in enumerate(pool.imap_unordered(one, seeds), start=len(done)):
            seconds += rec["seconds"]
            per_program[rec["kind"]] += 1
            per_run.update(_label(r) for r in rec["runs"])
            with records.open("a") as f:
                f.write(json.dumps({k: v for k, v in rec.items() if k != "source"}) + "\n")
            if rec["source"]:
                failing.append(rec["seed"])
                lines = "\n".join(f"#   {r['config']}: {r['kind']} {r['cls']} {r['detail'][:300]!r}" for r in rec["runs"])
                (out / "failures" / f"seed{rec['seed']}.py").write_text(f"# outcomes:\n{lines}\n{rec['source']}")
            print(f"[{i + 1}/{len(seeds) + len(done)}] seed {rec['seed']}: {rec['kind']} {rec['cls']} ({rec['seconds']} s)", flush=True)
            summary = _write_summary(out, args, commit, i + 1, per_program, per_run, failing, t0, seconds)
    if not seeds:
        summary = _write_summary(out, args, commit, len(done), per_program, per_run, failing, t0, seconds)
    print(json.dumps({k: summary[k] for k in ("per_program", "per_config_run", "failing_seeds")}, indent=2))
    return summary


def _write_summary(out: Path, args: argparse.Namespace, commit: str, programs: int, per_program: Counter[str],
                   per_run: Counter[str], failing: list[int], t0: float, seconds: float) -> dict[str, Any]:
    """summary.json, rewritten after every program: an interrupted run keeps its counts."""
    summary = {
        "programs": programs,
        "requested": args.examples,
        "first_seed": args.seed,
        "commit": commit,
        "configs": [f"{f}-O{o}" for f, o in fp.CONFIGS],
        "per_program": dict(per_program.most_common()),
        "per_config_run": dict(sorted(per_run.items())),
        "failing_seeds": sorted(failing),
        "known": {k.name: k.reason for k in fp.KNOWN},
        "wall_s_this_run": round(time.perf_counter() - t0, 1),
        "program_seconds_total": round(seconds, 1),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


class _Serial:
    """`Pool`'s interface, in this process."""

    def __enter__(self) -> _Serial:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def imap_unordered(self, fn: Any, items: Any) -> Any:
        return map(fn, items)


if __name__ == "__main__":
    main()
