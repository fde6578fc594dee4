"""Run a sweep on an executor, resumably, writing rows as jobs finish.

Output folder (default `sweep_out/<name>/`):
- `results.jsonl`: one row per finished job, appended as it finishes (so an interrupted
  sweep keeps what it finished);
- `results.csv`: every row, in job order, rewritten at the end;
- `fabrics/`: the fabric variants the jobs compiled for.

A job whose key (its inputs + the compiler's identity, `compiler_id`) is already in
results.jsonl is not run again: a killed sweep resumes where it stopped, and a finished job
is never recomputed (pass `retry_failed` to rerun the rows that hold an error).

Executors (`rdu_compiler.parallel`, shared with the ONNX conformance sweep and the serving
sweeps): `serial` (this process; Ray is not imported), `process` (local worker processes,
`workers` of them, default the CPU count), `ray` (Ray tasks: a local runtime with the
machine's cores when no address is given, else the cluster at `address` or $RAY_ADDRESS;
Ray is the `[ray]` extra).
"""

from __future__ import annotations

import csv
import functools
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from rdu_compiler.errors import RduError
from rdu_compiler.parallel import EXECUTORS, ExecutorError, map_unordered
from rdu_compiler.sweep.job import FIGURES, compiler_id, error_row, run_job
from rdu_compiler.sweep.spec import Job, SweepSpec


class SweepError(RduError):
    """The sweep cannot run (bad executor, Ray missing or unreachable, unwritable folder)."""


def run(spec: SweepSpec, executor: str = "serial", out_dir: str | Path | None = None, *, workers: int | None = None,
        address: str | None = None, retry_failed: bool = False, timeout_s: float | None = None,
        on_row: Callable[[dict[str, Any], int, int], None] | None = None) -> list[dict[str, Any]]:
    """Run every job of `spec` not already done; return all rows in job order.

    `on_row(row, done, total)` is called as each job finishes (progress display). The
    executors are `rdu_compiler.parallel`'s; `timeout_s` bounds one job (`process`, `ray`):
    a job over it, or whose worker dies, is a row with its error.

    Raises:
        SweepError: unknown executor, Ray not installed or its cluster unreachable, or the
            output folder cannot be written.
    """
    if executor not in EXECUTORS:
        raise SweepError(f"unknown executor {executor!r}; use one of {', '.join(EXECUTORS)}")
    out = Path(out_dir) if out_dir is not None else Path("sweep_out") / spec.name
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.jsonl").touch()
    except OSError as e:
        raise SweepError(f"{out}: cannot write the sweep's results ({e.strerror or e}); choose another -o folder") from e
    compiler = compiler_id()
    jobs = spec.jobs
    done = _read_rows(out / "results.jsonl")
    keys = {j.index: j.key(compiler) for j in jobs}
    finished = {k for k, r in done.items() if not (retry_failed and r.get("error"))}
    todo = [j for j in jobs if keys[j.index] not in finished]
    count = len(jobs) - len(todo)
    fabric_dir = str((out / "fabrics").resolve())
    with (out / "results.jsonl").open("a") as sink:
        for row in _execute(executor, todo, compiler, fabric_dir, workers, address, timeout_s):
            sink.write(json.dumps(row, default=str) + "\n")
            sink.flush()
            done[row["key"]] = row
            count += 1
            if on_row:
                on_row(row, count, len(jobs))
    rows = [done[keys[j.index]] for j in jobs]
    _write_csv(out / "results.csv", rows)
    return rows


def _read_rows(path: Path) -> dict[str, dict[str, Any]]:
    rows = {}
    for line in path.read_text().splitlines():
        if line.strip():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a kill: that job runs again
            rows[row["key"]] = row
    return rows


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    columns: list[str] = []
    for r in rows:
        columns += [c for c in r if c not in columns and c not in (*FIGURES, "error")]
    columns += [*FIGURES, "error"]
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns)
        w.writeheader()
        for r in rows:
            w.writerow({c: r.get(c, "") for c in columns})
    tmp.replace(path)


def _execute(executor: str, jobs: list[Job], compiler: str, fabric_dir: str, workers: int | None,
             address: str | None, timeout_s: float | None) -> Iterator[dict[str, Any]]:
    fn = functools.partial(run_job, compiler=compiler, fabric_dir=fabric_dir)
    try:
        for res in map_unordered(fn, jobs, executor, workers=workers, address=address, timeout_s=timeout_s):
            job = jobs[res.index]
            yield res.value if not res.error else error_row(job, compiler, f"internal error {res.error}")
    except ExecutorError as e:
        raise SweepError(str(e)) from e
