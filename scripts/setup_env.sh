# Sourced by ./run_example.sh and ./run_tests.sh: make (or reuse) the project's virtual
# environment and install exactly what requirements.lock pins, then the project itself.
#
#   RDU_VENV   where the environment lives (default: .venv in the repository)
#   PYTHON     the interpreter to build it with (default: python3.11, else python3 if 3.11)
#
# The install is skipped when the environment already holds this lock (a hash of
# requirements.lock is kept in $RDU_VENV/.rdu-lock). torch 2.13.0+cpu comes from a local
# wheel folder when pip is configured with one (find-links), else add PyTorch's CPU index:
#   PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu
#   RDU_INSTALLER=pip   install with pip even where uv could (see below)
set -euo pipefail
_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RDU_VENV="${RDU_VENV:-$_root/.venv}"
if [ ! -x "$RDU_VENV/bin/python" ]; then
  _py="${PYTHON:-}"
  if [ -z "$_py" ]; then
    if command -v python3.11 >/dev/null 2>&1; then _py=python3.11; else _py=python3; fi
  fi
  if ! "$_py" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
    echo "error: requirements.lock is for Python 3.11; $_py is $("$_py" --version 2>&1)." \
         "Install Python 3.11 or set PYTHON=/path/to/python3.11." >&2
    exit 2
  fi
  echo "creating the virtual environment $RDU_VENV ($("$_py" --version))"
  "$_py" -m venv "$RDU_VENV"
fi
# shellcheck disable=SC1091
source "$RDU_VENV/bin/activate"
_want="$(python -c 'import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],"rb").read()).hexdigest())' "$_root/requirements.lock")"
if [ "$(cat "$RDU_VENV/.rdu-lock" 2>/dev/null)" != "$_want" ]; then
  echo "installing requirements.lock into $RDU_VENV"
  # uv (pinned as in scripts/refresh_lock.sh) installs the lock in 18 s where pip takes ~3 min
  # (measured on the 2-core CI machine, 2026-12-03). uv reads no pip configuration, so it is used only when
  # a find-links folder pip is configured with holds the torch 2.13.0 CPU wheel (else uv would
  # take PyPI's CUDA build): then the same wheels as pip's. RDU_INSTALLER=pip forces pip.
  # --compile-bytecode writes the .pyc files pip writes at install time and uv does not: with
  # PYTHONDONTWRITEBYTECODE=1 (set on the CI machine) every process would otherwise compile
  # torch's sources again (`import torch, torch.export, torch_mlir, xdsl`: 3.05 s against
  # 1.70 s; about 5 s of a 9 s compile in a fresh process). It adds about 6 s to the install.
  _links=()
  for _d in ${PIP_FIND_LINKS:-} $(python -m pip config get global.find-links 2>/dev/null || true); do
    if compgen -G "$_d/torch-2.13.0+cpu-*.whl" >/dev/null; then _links+=(--find-links "$_d"); fi
  done
  if [ "${RDU_INSTALLER:-uv}" = uv ] && [ ${#_links[@]} -gt 0 ] \
     && python -m pip install --quiet "uv==0.13.9" \
     && python -m uv pip install --quiet --compile-bytecode --python "$RDU_VENV/bin/python" "${_links[@]}" \
          -r "$_root/requirements.lock"; then
    :
  else
    python -m pip install --quiet -r "$_root/requirements.lock"
  fi
  python -m pip install --quiet --no-deps --no-build-isolation -e "$_root"
  echo "$_want" > "$RDU_VENV/.rdu-lock"
fi
export HF_HUB_OFFLINE=1
cd "$_root"
