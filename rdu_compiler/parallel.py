"""Independent jobs on one machine or a Ray cluster: the executor of `rdu-sweep`, the ONNX
conformance sweep (`scripts/refresh_onnx_expected.py`) and the serving-rate sweeps.

`map_unordered(fn, items, executor)` applies `fn` to every item and yields a `Result` per
item as it finishes (not in item order):

- `serial`: in this process, one after another (Ray is not imported; `timeout_s` cannot
  stop a job here and is only reported);
- `process`: `workers` local worker processes (default: the CPU count). Each job runs in a
  worker; a job over `timeout_s` has its worker killed and replaced, and so does a worker
  that dies (a native crash), so one bad job never stops the others;
- `ray`: Ray tasks on a local runtime with `workers` CPUs when no address is given, else on
  the cluster at `address` or $RAY_ADDRESS (Ray is the `[ray]` extra, locked like the
  rest). At most `workers` tasks are in flight, so a task's clock starts when it is
  submitted, which includes Ray starting a worker for it; a task over `timeout_s` is
  cancelled (`ray.cancel(force=True)`).

An exception raised by `fn`, a timeout or a dead worker is a `Result` with `error` set,
never an exception of `map_unordered`: a sweep goes on. `fn` and the items must pickle
(a module-level function; `functools.partial` of one is fine).
"""

from __future__ import annotations

import multiprocessing as mp
import multiprocessing.connection
import os
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from rdu_compiler.errors import RduError

EXECUTORS = ("serial", "process", "ray")


class ExecutorError(RduError):
    """The jobs cannot run at all: an unknown executor, Ray missing or its cluster
    unreachable."""


@dataclass
class Result:
    """One job's outcome: `index` into the items, `value` (fn's return) or `error` (one
    paragraph: the exception, `timeout: ...`, or `worker died ...`), and its wall time in
    seconds."""

    index: int
    value: Any = None
    error: str = ""
    seconds: float = 0.0


def _call(fn: Callable[[Any], Any], item: Any) -> tuple[Any, str]:
    try:
        return fn(item), ""
    except Exception as e:  # noqa: BLE001 - a failed job is a result, not a stopped sweep
        tail = traceback.format_exception(type(e), e, e.__traceback__)[-3:]
        return None, f"{type(e).__name__}: {' '.join(str(e).split())} | {' '.join(''.join(tail).split())[-500:]}"


def map_unordered(fn: Callable[[Any], Any], items: Iterable[Any], executor: str = "serial", *,
                  workers: int | None = None, address: str | None = None, timeout_s: float | None = None,
                  start_method: str = "spawn") -> Iterator[Result]:
    """Apply `fn` to each of `items` on `executor`; yield a `Result` as each finishes.

    Args:
        workers: processes or Ray CPUs (default: `os.cpu_count()`).
        address: a Ray cluster (`ray://host:10001`, or $RAY_ADDRESS); default a local one.
        timeout_s: seconds one job may take (`process` and `ray`); None for no limit.
        start_method: how `process` starts its workers: "spawn" (a fresh interpreter, safe
            with threads) or "fork" (shares what the parent imported and loaded: fast).

    Raises:
        ExecutorError: unknown executor; Ray not installed, or its cluster unreachable.
    """
    if executor not in EXECUTORS:
        raise ExecutorError(f"unknown executor {executor!r}; use one of {', '.join(EXECUTORS)}")
    jobs = list(enumerate(items))
    if not jobs:
        return
    n = max(1, workers or os.cpu_count() or 1)
    if executor == "serial":
        for i, item in jobs:
            t0 = time.perf_counter()
            value, error = _call(fn, item)
            yield Result(i, value, error, time.perf_counter() - t0)
    elif executor == "process":
        yield from _processes(fn, jobs, min(n, len(jobs)), timeout_s, start_method)
    else:
        yield from _ray(fn, jobs, n, address, timeout_s)


# ------------------------------------------------------------------------------ process


def _worker(conn: Any) -> None:
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        fn, item = msg
        t0 = time.perf_counter()
        value, error = _call(fn, item)
        try:
            conn.send((value, error, time.perf_counter() - t0))
        except Exception as e:  # noqa: BLE001 - an unpicklable result is the job's error
            conn.send((None, f"result does not pickle: {type(e).__name__}: {e}", time.perf_counter() - t0))


class _Slot:
    """One worker process and the job it runs."""

    def __init__(self, ctx: Any):
        self.ctx = ctx
        self.start()

    def start(self) -> None:
        parent, child = self.ctx.Pipe()
        self.conn = parent
        self.proc = self.ctx.Process(target=_worker, args=(child,), daemon=True)
        self.proc.start()
        child.close()
        self.job: int | None = None
        self.since = 0.0

    def exit_code(self) -> int | None:
        self.proc.join(5)
        return self.proc.exitcode

    def restart(self) -> None:
        self.stop()
        self.start()

    def stop(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(5)
        self.conn.close()


def _processes(fn: Callable[[Any], Any], jobs: list[tuple[int, Any]], n: int, timeout_s: float | None,
               start_method: str) -> Iterator[Result]:
    ctx = mp.get_context(start_method)
    todo = list(jobs)
    slots = [_Slot(ctx) for _ in range(n)]
    try:
        while todo or any(s.job is not None for s in slots):
            for s in slots:
                if s.job is None and todo:
                    i, item = todo.pop(0)
                    s.job, s.since = i, time.perf_counter()
                    s.conn.send((fn, item))
            waiting = True
            for s in slots:
                if s.job is None:
                    continue
                elapsed = time.perf_counter() - s.since
                out: Result | None = None
                if s.conn.poll(0):
                    try:
                        value, error, secs = s.conn.recv()
                        out = Result(s.job, value, error, secs)
                    except (EOFError, OSError):
                        out = Result(s.job, error=f"worker died (exit code {s.exit_code()})", seconds=elapsed)
                        s.restart()
                elif not s.proc.is_alive():
                    out = Result(s.job, error=f"worker died (exit code {s.exit_code()})", seconds=elapsed)
                    s.restart()
                elif timeout_s is not None and elapsed > timeout_s:
                    out = Result(s.job, error=f"timeout: more than {timeout_s:g} s", seconds=elapsed)
                    s.restart()
                if out is not None:
                    s.job = None
                    waiting = False
                    yield out
            if waiting:
                multiprocessing.connection.wait([s.conn for s in slots if s.job is not None], timeout=0.05)
    finally:
        for s in slots:
            try:
                s.conn.send(None)
            except (OSError, BrokenPipeError):
                pass
            s.stop()


# ------------------------------------------------------------------------------ ray


def _ray(fn: Callable[[Any], Any], jobs: list[tuple[int, Any]], n: int, address: str | None,
         timeout_s: float | None) -> Iterator[Result]:
    try:
        import ray
    except ImportError as e:
        raise ExecutorError("the ray executor needs Ray: pip install '.[ray]' (it is in requirements.lock)") from e
    address = address or os.environ.get("RAY_ADDRESS")
    started = False
    if not ray.is_initialized():
        try:
            if address:
                ray.init(address=address, log_to_driver=False)
            else:
                ray.init(num_cpus=n, include_dashboard=False, log_to_driver=False)
        except Exception as e:  # noqa: BLE001 - Ray raises ConnectionError, RuntimeError, ...
            raise ExecutorError(f"cannot start or join Ray ({address or 'local'}): {' '.join(str(e).split())[:300]}; "
                                "check the address, or use the process executor") from e
        started = True
    try:
        task = ray.remote(_timed)
        todo = list(jobs)
        running: dict[Any, tuple[int, float]] = {}
        while todo or running:
            while todo and len(running) < n:
                i, item = todo.pop(0)
                running[task.remote(fn, item)] = (i, time.perf_counter())
            ready, _ = ray.wait(list(running), num_returns=1, timeout=0.5)
            for ref in ready:
                i, since = running.pop(ref)
                try:
                    value, error, secs = ray.get(ref)
                except Exception as e:  # noqa: BLE001 - the worker died
                    value, error, secs = None, f"worker died: {' '.join(str(e).split())[:300]}", time.perf_counter() - since
                yield Result(i, value, error, secs)
            if timeout_s is not None:
                now = time.perf_counter()
                for ref, (i, since) in list(running.items()):
                    if now - since > timeout_s:
                        ray.cancel(ref, force=True)
                        del running[ref]
                        yield Result(i, error=f"timeout: more than {timeout_s:g} s", seconds=now - since)
    finally:
        if started:
            ray.shutdown()


def _timed(fn: Callable[[Any], Any], item: Any) -> tuple[Any, str, float]:
    t0 = time.perf_counter()
    value, error = _call(fn, item)
    return value, error, time.perf_counter() - t0
