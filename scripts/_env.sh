# Shared set-up for the scripts: a virtual environment in .venv with peftbench installed (editable).
# Sourced, not run. Re-running is cheap: pip skips what is already installed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
echo "[setup] installing peftbench and its dependencies into .venv (the first time takes a few minutes)"
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[dev,peft,plots,sweeps,prepare]"
export PATH="$ROOT/.venv/bin:$PATH"
