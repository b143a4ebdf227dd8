#!/usr/bin/env bash
# Set up (first time only takes a minute) and start the app at http://127.0.0.1:7860.
# Offline, it runs on the bundled tiny CLIP model and generated collection; with the Hub reachable, on the real ones.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export GRADIO_ANALYTICS_ENABLED=False HF_HUB_DISABLE_TELEMETRY=1
exec .venv/bin/python app.py "$@"
