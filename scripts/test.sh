#!/usr/bin/env bash
# THE test command (CI's .ci/run execs it): set-up without models but with the test tools, then
# lint and format checks (ruff), the type check (mypy over contracts, utils and jobs; both
# configured in pyproject.toml), then the whole suite. Safe to repeat: set-up skips whatever is
# already installed.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --skip-models --dev
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
exec .venv/bin/python -m pytest "$@"
