"""The executors of rdu_compiler.parallel: every item once, failures as results (an
exception, a timeout, a dead worker), the same values on every executor.

The job function is the builtin `eval` over expressions, so Ray's workers (which do not
see the test's sys.path) can unpickle it."""

from __future__ import annotations

import time

import pytest

from rdu_compiler.parallel import ExecutorError, map_unordered

SQUARES = ["0 * 0", "1 * 1", "2 * 2", "int('three')", "6 * 6"]
SLEEP = "__import__('time').sleep(60)"
DIE = "__import__('os')._exit(7)"  # a native crash, as far as the parent can tell


def _by_index(results: list) -> dict[int, tuple]:
    return {r.index: (r.value, r.error.split(":")[0]) for r in results}


def test_process_executor_survives_exceptions_timeouts_and_dead_workers() -> None:
    items = [*SQUARES[:4], SLEEP, DIE, "6 * 6", "7 * 7"]
    t0 = time.perf_counter()
    got = _by_index(list(map_unordered(eval, items, "process", workers=2, timeout_s=5.0)))
    assert time.perf_counter() - t0 < 50  # the sleeper was killed, not waited for
    assert got == {0: (0, ""), 1: (1, ""), 2: (4, ""), 3: (None, "ValueError"), 4: (None, "timeout"),
                   5: (None, "worker died (exit code 7)"), 6: (36, ""), 7: (49, "")}


def test_serial_and_process_and_ray_agree_and_ray_cancels_on_timeout() -> None:
    serial = _by_index(list(map_unordered(eval, SQUARES, "serial")))
    assert serial == {0: (0, ""), 1: (1, ""), 2: (4, ""), 3: (None, "ValueError"), 4: (36, "")}
    assert _by_index(list(map_unordered(eval, SQUARES, "process", workers=2))) == serial
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)  # one runtime for both calls
    try:
        assert _by_index(list(map_unordered(eval, SQUARES, "ray", workers=2))) == serial
        got = _by_index(list(map_unordered(eval, ["2 * 2", SLEEP], "ray", workers=2, timeout_s=10.0)))
        assert got == {0: (4, ""), 1: (None, "timeout")}
    finally:
        ray.shutdown()


def test_unknown_executor_is_refused() -> None:
    with pytest.raises(ExecutorError, match="unknown executor 'threads'; use one of serial, process, ray"):
        list(map_unordered(eval, ["1"], "threads"))
