#!/usr/bin/env bash
# The whole test suite, offline, exactly as CI runs it: `bash scripts/test.sh` (extra arguments go to pytest).
# The slow load test is left out by default (pyproject's addopts); run it with `bash scripts/test.sh -m slow`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --browser
export GRADIO_ANALYTICS_ENABLED=False HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1
.venv/bin/ruff check .
.venv/bin/ruff format --check .
exec .venv/bin/python -m pytest -q "$@"
