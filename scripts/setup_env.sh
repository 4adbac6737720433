#!/usr/bin/env bash
# Create (or update) the project's virtual environment on Debian 12 / Python 3.11:
# torch + torchvision (the pair that lies on this machine's disk), then this package with its
# test extras. Usage: scripts/setup_env.sh [VENV_DIR]   (default: .venv in the repository root)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${1:-$root/.venv}"
python="${PYTHON:-python3}"

[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
pip() { "$venv/bin/python" -m pip --disable-pip-version-check "$@"; }
pip install -q --upgrade pip
# A torch/torchvision pair that import together; another pair fails to import on this platform.
pip install -q torch==2.14.1 torchvision==0.29.1
pip install -q -e "$root[test]"
"$venv/bin/python" -c 'import torch, torchvision, metrabs_ros; print("environment ready:", "torch", torch.__version__, "torchvision", torchvision.__version__)'
