"""Load: 20 visitors at once, 10 rounds each, through the scripting API of the launched app (benchmarks/load_test.py).

Slow (a few minutes on 2 cores), so not in the default run: ``bash scripts/test.sh -m slow``. Correctness only: the
figures (throughput against the floor, latency, server CPU) are the benchmark's, never assertions here.
"""

from __future__ import annotations

import pytest

from benchmarks import load_test
from trainer.config import Settings


@pytest.mark.slow
def test_twenty_concurrent_sessions_never_fail_and_never_see_each_others_work(tmp_path):
    settings = Settings.from_env(environ={})  # the serving defaults the app ships with
    with load_test.app_server(tmp_path, settings.concurrency, settings.torch_threads) as server:
        report = load_test.run_load(server.url, "app", server.pid, sessions=20, rounds=10, batch_size=10, timeout_s=900)
    print(report.summary())
    assert report.errors == []  # no failed request, no foreign batch or label count, no image shown twice
    assert len(report.round_s) == 20 * 10
