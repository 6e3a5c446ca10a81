#!/usr/bin/env bash
# Set up everything accelsim needs on a fresh machine; idempotent (re-running is quick).
#   - a virtual environment in .venv (or $ACCELSIM_VENV) with torch==2.13.0 installed FIRST
#     (an unpinned torch would pull gigabytes of CUDA packages), then accelsim with the
#     workloads and test extras;
#   - the Debian package dataset-fashion-mnist (real images for the workloads), when root.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${ACCELSIM_VENV:-.venv}"
PYTHON="${PYTHON:-python3}"
STAMP="$VENV/.accelsim-setup"

if [ ! -x "$VENV/bin/python" ]; then
    echo "setup: creating $VENV"
    "$PYTHON" -m venv "$VENV"
fi
if [ ! -f "$STAMP" ] || [ pyproject.toml -nt "$STAMP" ] || [ "$0" -nt "$STAMP" ]; then
    echo "setup: installing torch==2.13.0 (CPU), then accelsim[workloads,test]"
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q torch==2.13.0
    "$VENV/bin/python" -m pip install -q -e ".[workloads,test]"
    touch "$STAMP"
fi

if ! dpkg -s dataset-fashion-mnist >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        echo "setup: installing the Debian package dataset-fashion-mnist"
        apt-get update -qq >/dev/null && apt-get install -y -qq dataset-fashion-mnist >/dev/null
    else
        echo "setup: note: run 'sudo apt-get install dataset-fashion-mnist' for the real-data workloads"
    fi
fi
