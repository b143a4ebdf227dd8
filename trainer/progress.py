"""The one progress callback every long step reports through: ``progress(done, total, message)``.

Counts rather than a fraction, because a fraction can always be computed from counts and never the reverse: the
CLI's bar shows images and images per second, a Pinecone upsert reports rows, and a caller that runs several steps
places each one's counts on its own scale (the workspace's start-up bar does). Only the place that draws a bar
divides.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["ProgressFn", "no_progress"]

ProgressFn = Callable[[int, int, str], None]
"""``progress(done, total, message)``: units of work finished so far, units in all, and what is happening."""


def no_progress(done: int, total: int, message: str) -> None:
    """The progress callback of a caller that does not want progress."""
