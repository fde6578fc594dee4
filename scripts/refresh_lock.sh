#!/usr/bin/env bash
# Refresh requirements.lock to the newest versions pyproject.toml's ranges allow, show which
# versions moved, then run the whole test suite in a fresh environment built from the new lock.
#
#   scripts/refresh_lock.sh                     # every package to its newest version
#   scripts/refresh_lock.sh -P transformers     # only that one (uv's --upgrade-package)
#
# The lock is written by uv (`uv pip compile`, pinned below) for Python 3.11 on x86_64 Linux;
# torch stays at the CPU build pyproject pins. Nothing is committed: read the diff and the test
# result, then commit the lock (and any refreshed golden files) as one deliberate change, or
# `git checkout requirements.lock` to keep the old one.
set -euo pipefail
cd "$(dirname "$0")/.."
UV_VERSION=0.13.9
tools="$PWD/.venv-lock-tools"
if [ ! -x "$tools/bin/uv" ]; then
  python3 -m venv "$tools"
  "$tools/bin/python" -m pip install --quiet "uv==$UV_VERSION"
fi
upgrade=(--upgrade)
if [ $# -gt 0 ]; then upgrade=("$@"); fi
find_links=()
if [ -d /opt/wheels ]; then find_links=(--find-links /opt/wheels); fi  # the local CPU torch wheel
cp requirements.lock requirements.lock.old
"$tools/bin/uv" pip compile pyproject.toml scripts/build-requirements.in --extra test --extra ray \
  --python-version 3.11 --python-platform x86_64-manylinux_2_28 "${find_links[@]}" \
  --custom-compile-command "scripts/refresh_lock.sh" --quiet "${upgrade[@]}" -o requirements.lock
echo "versions that changed (old -> new):"
python3 scripts/lock_diff.py requirements.lock.old requirements.lock
rm requirements.lock.old
export RDU_VENV="$PWD/.venv-refresh"
rm -rf "$RDU_VENV"
./run_tests.sh
