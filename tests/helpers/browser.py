"""Debian's Chromium as Playwright drives it here: where it is and the flags this machine needs (no sandbox, no GPU,
no background traffic). Shared by the browser tests and the browser benchmark."""

from __future__ import annotations

import shutil

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
