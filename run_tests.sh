#!/usr/bin/env bash
# The test command: lint, lit + FileCheck pass tests, then pytest (unit + end-to-end models).
set -euo pipefail
cd "$(dirname "$0")"
export HF_HUB_OFFLINE=1
ruff check rdu_compiler testsuite benchmarks
lit -v testsuite/filecheck
python -m pytest testsuite
