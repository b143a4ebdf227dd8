#!/usr/bin/env bash
# Idempotent set-up: a venv in .venv with the pinned runtime and test dependencies; `--browser` adds Chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
# torch first and pinned: the CPU wheel. An unpinned torch (or one pulled in by another package) is a multi-GB CUDA build.
.venv/bin/pip install -q --disable-pip-version-check torch==2.13.0
.venv/bin/pip install -q --disable-pip-version-check -r requirements-dev.txt

if [ "${1:-}" = "--browser" ] && ! command -v chromium >/dev/null 2>&1; then
  # Browser tests drive Debian's Chromium through Playwright; `playwright install` downloads are blocked here.
  if [ "$(id -u)" -eq 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq chromium >/dev/null
  else
    echo "setup: Chromium is missing and this is not root: run 'sudo apt-get install -y chromium' for browser tests" >&2
  fi
fi
