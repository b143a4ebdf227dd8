"""The engine's BLAS limit: one thread while any thread is inside, whatever order threads come and go in."""

from __future__ import annotations

import threading

import pytest
import threadpoolctl

from trainer import blas


def blas_threads() -> set[int]:
    """The thread counts of the process's BLAS libraries (numpy's and scipy's OpenBLAS here)."""
    return {info["num_threads"] for info in threadpoolctl.threadpool_info() if info["user_api"] == "blas"}


def test_one_blas_thread_holds_while_any_thread_is_inside_and_restores_what_it_found_after_the_last():
    """The app fits in several handler threads at once: one leaving must not lift the limit under another's fit,
    and the last out puts back the count from before, whichever thread came in first."""
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        if blas_threads() != {2}:
            pytest.skip("this BLAS cannot be set to two threads")
        first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
        seen: dict[str, set[int]] = {}

        def first() -> None:
            with blas.one_blas_thread():
                first_in.set()
                second_in.wait(5)
                seen["first, inside"] = blas_threads()
            first_out.set()

        def second() -> None:
            first_in.wait(5)
            with blas.one_blas_thread():
                with blas.one_blas_thread():  # nested in the same thread, as classifier.fit calls fit_map
                    second_in.set()
                    first_out.wait(5)
                    seen["second, after the first left"] = blas_threads()
                seen["second, after its inner use"] = blas_threads()

        threads = [threading.Thread(target=first), threading.Thread(target=second)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert seen == {"first, inside": {1}, "second, after the first left": {1}, "second, after its inner use": {1}}
        assert blas_threads() == {2}
