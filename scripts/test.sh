#!/usr/bin/env bash
# Installs everything the tests need into .venv and runs the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q torch==2.15.0 torchvision==0.29.2
.venv/bin/python -m pip install -q -r requirements.txt -r requirements-dev.txt
exec .venv/bin/python -m pytest "$@"
