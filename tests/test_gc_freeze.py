"""The server's start-up (``app.load_and_freeze``): what the workspace's load leaves alive, kept for the process's
life, is moved out of the cyclic garbage collector's reach, so that a full collection no longer walks it (340 ms of a
visitor's request each time, benchmarks/RESULTS-load.md)."""

from __future__ import annotations

import gc

import app


def test_what_the_load_leaves_alive_is_frozen_and_the_workspace_is_returned(monkeypatch):
    kept = []

    def load(settings, progress):
        kept.append([[] for _ in range(1000)])  # objects alive after the load, each tracked by the collector
        return "the workspace"

    monkeypatch.setattr(app, "load_workspace", load)
    gc.unfreeze()
    try:
        assert app.load_and_freeze(settings=None, progress=None) == "the workspace"  # type: ignore[arg-type]
        assert gc.get_freeze_count() >= 1001
    finally:
        gc.unfreeze()
