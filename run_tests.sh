#!/usr/bin/env bash
# The test command on a fresh machine: set up the locked environment (.venv), then lint,
# lit + FileCheck pass tests, then pytest (unit, end-to-end models, ONNX sample, fuzz).
set -euo pipefail
source "$(dirname "$0")/scripts/setup_env.sh"
ruff check rdu_compiler testsuite benchmarks
lint-imports --no-cache    # the layers of docs/design.md (pyproject.toml [tool.importlinter])
# pyright (one core) beside lit (two workers): both finish before pytest starts
pyright_log="$(mktemp)"
pyright > "$pyright_log" 2>&1 &   # basic mode over rdu_compiler (pyproject.toml [tool.pyright])
pyright_pid=$!
lint_rc=0
lit -v testsuite/filecheck || lint_rc=$?
wait "$pyright_pid" || lint_rc=$?
cat "$pyright_log"
rm -f "$pyright_log"
if [ "$lint_rc" -ne 0 ]; then exit "$lint_rc"; fi
# pytest as two processes, one per core of a 2-core machine: the unit tests, and the model,
# ONNX and fuzz suites (their log is printed when both are done); fails if either fails
rest_log="$(mktemp)"
# some of the slowest unit files go with the second process, to balance the two (699 s and
# 714 s on the 2-core CI machine, 2026-12-03, chosen from `pytest --durations` of both)
heavy="testsuite/unit/test_kernel_loop.py testsuite/unit/test_tp_pp.py testsuite/unit/test_online_training.py
       testsuite/unit/test_numerics.py testsuite/unit/test_serve_latency.py testsuite/unit/test_sweep.py"
python -m pytest -p no:cacheprovider testsuite/models testsuite/onnx testsuite/fuzz $heavy > "$rest_log" 2>&1 &
rest=$!
rc=0
python -m pytest testsuite/unit $(printf -- "--ignore=%s " $heavy) || rc=$?
wait "$rest" || rc=$?
echo "---- testsuite/models, testsuite/onnx, testsuite/fuzz, $heavy ----"
cat "$rest_log"
rm -f "$rest_log"
exit "$rc"
