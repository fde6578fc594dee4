"""rdu-sweep: many compiles of a sweep.toml, on this machine or a Ray cluster.

    rdu-sweep sweep.toml [--executor serial|process|ray] [--address ray://host:10001] [-o DIR]
                         [--workers N] [--retry-failed] [--plot FIGURE:AXIS] [--pareto A:B]

Writes DIR/results.jsonl (rows as jobs finish; a rerun resumes), DIR/results.csv, and the
plots asked for. Prints a progress bar (done / failed / running) and a summary. Bad input:
one paragraph `error: ...` and exit status 2 (see rdu_compiler/sweep/spec.py).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from rdu_compiler.errors import RduError


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="rdu-sweep", description="Run a design-space sweep (sweep.toml) of compiles.")
    p.add_argument("spec", help="the sweep.toml")
    p.add_argument("--executor", choices=("serial", "process", "ray"), default="serial")
    p.add_argument("--address", default=None, help="a Ray cluster to join (default: $RAY_ADDRESS, else a local runtime)")
    p.add_argument("--workers", type=int, default=None, help="worker processes / local Ray CPUs (default: all cores)")
    p.add_argument("-o", "--out", default=None, help="output folder (default sweep_out/<name>)")
    p.add_argument("--retry-failed", action="store_true", help="rerun jobs whose row holds an error")
    p.add_argument("--timeout", type=float, default=None, metavar="S",
                   help="seconds one job may take under process/ray (it is then a row with its error)")
    p.add_argument("--plot", action="append", default=[], metavar="FIGURE:AXIS", help="plot FIGURE against AXIS (repeatable)")
    p.add_argument("--pareto", action="append", default=[], metavar="A:B", help="Pareto front of figures A and B (both minimised)")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    args = p.parse_args(argv)
    err = Console(stderr=True)
    try:
        _run(args)
    except RduError as e:
        if args.debug:
            raise
        err.print("[bold red]error:[/] " + escape(str(e)), highlight=False)
        sys.exit(2)


def _pairs(values: list[str], flag: str) -> list[tuple[str, str]]:
    out = []
    for v in values:
        a, sep, b = v.partition(":")
        if not sep or not a or not b:
            raise RduError(f"{flag} {v!r}: write it as NAME:NAME (e.g. {flag} estimated_s:hbm.bytes_per_s)")
        out.append((a, b))
    return out


def _run(args: argparse.Namespace) -> None:
    from rdu_compiler import sweep
    from rdu_compiler.sweep.plot import plot_axis, plot_pareto

    plots, paretos = _pairs(args.plot, "--plot"), _pairs(args.pareto, "--pareto")
    spec = sweep.load_spec(args.spec)
    out = Path(args.out) if args.out else Path("sweep_out") / spec.name
    console = Console()
    failed = 0
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as progress:
        task = progress.add_task(f"{spec.name}: {len(spec.jobs)} jobs", total=len(spec.jobs))

        def on_row(row: dict, done: int, total: int) -> None:
            nonlocal failed
            failed += bool(row.get("error"))
            progress.update(task, completed=done, description=f"{spec.name}: done {done - failed}, failed {failed}, "
                            f"left {total - done}")

        rows = sweep.run(spec, args.executor, out, workers=args.workers, address=args.address, timeout_s=args.timeout,
                         retry_failed=args.retry_failed, on_row=on_row)
    bad = [r for r in rows if r.get("error")]
    console.print(f"{len(rows)} jobs: {len(rows) - len(bad)} compiled, {len(bad)} failed; rows in {out}/results.csv")
    for r in bad[:5]:
        console.print(f"  job {r['index']} ({r['model']}): {escape(r['error'][:200])}", highlight=False)
    columns = set().union(*(r.keys() for r in rows)) if rows else set()
    for figure, axis in plots:
        for name in (figure, axis):
            if name not in columns:
                raise RduError(f"--plot {figure}:{axis}: no column {name!r}; columns are {', '.join(sorted(columns))}")
        console.print(f"wrote {plot_axis(rows, axis, figure, out / f'{figure}-vs-{axis}.png')}")
    for a, b in paretos:
        for name in (a, b):
            if name not in columns:
                raise RduError(f"--pareto {a}:{b}: no column {name!r}; columns are {', '.join(sorted(columns))}")
        console.print(f"wrote {plot_pareto(rows, a, b, out / f'pareto-{a}-{b}.png')}")


if __name__ == "__main__":
    main()
