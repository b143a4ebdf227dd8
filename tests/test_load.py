"""Load: 20 visitors at once, 10 rounds each, through the HTTP API of the launched app (benchmarks/load_test.py).

Slow (a few minutes on 2 cores), so not in the default run: ``bash scripts/test.sh -m slow``.
"""

from __future__ import annotations

import pytest

from app import MAX_BATCH
from benchmarks import load_test
from trainer.config import Settings


@pytest.mark.slow
def test_twenty_concurrent_sessions_never_fail_and_never_see_each_others_work():
    assert load_test.MAX_BATCH == MAX_BATCH  # the client reads the grid's outputs by position
    settings = Settings.from_env(environ={})  # the serving defaults the app ships with
    with load_test.serve_app(concurrency=settings.concurrency, torch_threads=settings.torch_threads) as url:
        report = load_test.run_load(url, sessions=20, rounds=10, timeout_s=900)
    print(report.summary())
    assert report.errors == []  # no failed request, no foreign batch or label count, no image shown twice
    assert len(report.round_s) == 20 * 10
