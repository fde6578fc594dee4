#!/usr/bin/env bash
# The test command on a fresh machine: set up the locked environment (.venv), then lint,
# lit + FileCheck pass tests, then pytest (unit, end-to-end models, ONNX sample, fuzz).
set -euo pipefail
source "$(dirname "$0")/scripts/setup_env.sh"
ruff check rdu_compiler testsuite benchmarks
lint-imports --no-cache    # the layers of docs/design.md (pyproject.toml [tool.importlinter])
pyright                    # basic mode over rdu_compiler (pyproject.toml [tool.pyright])
lit -v testsuite/filecheck
python -m pytest testsuite
