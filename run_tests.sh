#!/usr/bin/env bash
# The test command on a fresh machine: set up the locked environment (.venv), then lint,
# lit + FileCheck pass tests, then pytest (unit, end-to-end models, ONNX sample, fuzz).
set -euo pipefail
source "$(dirname "$0")/scripts/setup_env.sh"
ruff check rdu_compiler testsuite benchmarks
lint-imports --no-cache    # the layers of docs/design.md (pyproject.toml [tool.importlinter])
pyright                    # basic mode over rdu_compiler (pyproject.toml [tool.pyright])
lit -v testsuite/filecheck
# pytest as two processes, one per core of a 2-core machine: the unit tests, and the model,
# ONNX and fuzz suites (their log is printed when both are done); fails if either fails
rest_log="$(mktemp)"
# three of the slowest unit files go with the second process, to balance the two (~6 min each)
heavy="testsuite/unit/test_kernel_loop.py testsuite/unit/test_tp_pp.py testsuite/unit/test_online_training.py"
python -m pytest -p no:cacheprovider testsuite/models testsuite/onnx testsuite/fuzz $heavy > "$rest_log" 2>&1 &
rest=$!
rc=0
python -m pytest testsuite/unit $(printf -- "--ignore=%s " $heavy) || rc=$?
wait "$rest" || rc=$?
echo "---- testsuite/models, testsuite/onnx, testsuite/fuzz, $heavy ----"
cat "$rest_log"
rm -f "$rest_log"
exit "$rc"
