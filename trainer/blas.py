"""BLAS on one thread while the engine's small products run, for the whole process, counted across threads.

The label-space matrices (n x n, n at most a few hundred) and the engine's other products are far too small to gain
from BLAS threads, and on a busy machine OpenBLAS's threads spin-wait on each other: measured 128 ms for one 200 x 200
solve, against 1.3 ms limited to one thread (trainer/map_fit.py).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import threadpoolctl

__all__ = ["one_blas_thread"]


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """A context in which BLAS runs on one thread (why: the module docstring). The fit (trainer/map_fit.py,
    trainer/classifier.py), trainer/suspects.py and trainer/prior_axes.py use it.

    BLAS's thread count is one setting for the whole process, and the app fits in several handler threads at once
    (``Settings.concurrency``). So the limit is counted: the first thread in sets one thread, the last one out puts
    back what it found, and a thread inside never sees another's exit lift the limit. (threadpoolctl's own context,
    used here before, lets each thread restore what it read on entry: the first to leave set BLAS back to two
    threads under a fit still running, and the last left one thread set for good.)"""
    global _blas_users, _blas_restore
    with _BLAS_LOCK:
        if _blas_users == 0:
            limiter = _controlled(lambda: _blas_controller().limit(limits=1, user_api="blas"))
            _blas_restore = limiter.restore_original_limits
        _blas_users += 1
    try:
        yield
    finally:
        with _BLAS_LOCK:
            _blas_users -= 1
            if _blas_users == 0 and _blas_restore is not None:
                _controlled(_blas_restore)
                _blas_restore = None


_BLAS_LOCK = threading.Lock()
_blas_users = 0  # threads (and nested uses) inside one_blas_thread
_blas_restore: Callable[[], None] | None = None  # puts back what the first one in found
_T = TypeVar("_T")


def _controlled(change: Callable[[], _T]) -> _T:
    """``change()`` with no thread holding OpenBLAS's limit before or after: threadpoolctl lets only the thread that
    last set it set it again (others' calls do nothing), and the thread that leaves one_blas_thread last is often not
    the one that came in first. Called under ``_BLAS_LOCK``."""
    threadpoolctl.OpenBLASController.clear_controlling_thread(force=True)
    try:
        return change()
    finally:
        threadpoolctl.OpenBLASController.clear_controlling_thread(force=True)


@functools.cache
def _blas_controller() -> threadpoolctl.ThreadpoolController:
    return threadpoolctl.ThreadpoolController()  # inspects the loaded BLAS libraries once, on first use
