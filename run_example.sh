#!/usr/bin/env bash
# The main job on a fresh machine: set up the locked environment (.venv), then compile
# GPT-2 small for sn40l, run it on the emulator and compare with PyTorch eager.
# Extra arguments go to rdu-compile (e.g. ./run_example.sh --fabric tiny).
set -euo pipefail
source "$(dirname "$0")/scripts/setup_env.sh"
rdu-compile examples/gpt2_small.py --check "$@"
