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
# Two pytest-xdist workers (STUDIO_TEST_WORKERS; 0 = one process): much of a test's time is spent
# waiting on servers, Ray and Chromium, so two share a 2-core machine well. tests/conftest.py keeps a
# module's tests on one worker (the Ray pool's are spread over both; each worker's Ray is its own)
# and hands out the longest kinds first (container, Ray, slow, browser).
exec .venv/bin/python -m pytest -n "${STUDIO_TEST_WORKERS:-2}" --dist loadgroup "$@"
