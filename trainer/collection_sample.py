"""A sample of the collection and its leading axes, drawn once per index and seed and shared by every session.

A session that can sample its index draws some of the collection's vectors once and takes their leading axes
(``suspects.leading_axes``): the suspects' third witness measures nearness along them, and from 100 labels the fit's
prior is freer along them (trainer/prior_axes.py). The draw comes from a stream of the session's seed alone, so every
session of an app (one seed in its settings) draws the same items and finds the same axes: each used to compute them
again, 5 ms on the bundle (4,000 of its 2,500 items asked for, 64 dimensions) and about 40 ms at 512, the first
round past 100 labels of every visitor. Here they are computed for the first session that asks and kept for the
index's life, keyed by the seed, the sample size and the index's length (a local index only grows, and a grown one
draws anew). The answer is the very one a session's own draw gives; the arrays are read-only, as they are shared.

Where the index cannot sample but can list its ids (``ListingIndex``: Pinecone, whose rounds are one query each),
the draw is a uniform choice among those ids (sorted) from the same stream, and their vectors one ``fetch``: on
Pinecone no call for the ids where the process wrote the namespace (the app), else at most 100 list calls; the fetch,
1,000 ids a request at most, is 10-14 requests for 4,000 ids of 9-20 characters (the URL budget,
trainer/index/pinecone.py). Once per index, seed and count for every session, like the local draw; a failure raises
``IndexUnavailable`` (or ``KeyError`` for an id gone from the index) for the session to note, and is not kept: the
next session tries again.
"""

from __future__ import annotations

import threading
import weakref
from typing import NamedTuple

import numpy as np

from .exploration import SamplingIndex
from .index import ListingIndex, VectorIndex
from .index.local import LocalIndex
from .suspects import Axes, leading_axes

__all__ = ["STREAM", "Draw", "collection_sample"]

# The session seed's stream for this draw, apart from its batches' and audits' (so no batch's random choice moves).
STREAM = 0x5A3B1E

_draws: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # index -> {(seed, size, length): Draw}
_lock = threading.Lock()


class Draw(NamedTuple):
    """One sample of the collection, shared by every session of a seed: read-only, like everything in it."""

    ids: tuple[str, ...]
    axes: Axes  # the leading axes of their vectors (``suspects.leading_axes``)
    # The sample as an index of its own (its ids and vectors): where an explored match's neighbours are looked for,
    # and, where the index cannot sample itself (Pinecone), what a session explores from (trainer/exploration.py),
    # both with no call a round. 4,000 x 512 float32 is 8 MB, once per index and seed.
    local: LocalIndex


def collection_sample(index: VectorIndex, size: int, seed: int) -> Draw | None:
    """``size`` ids drawn from ``index`` (fewer when it holds fewer) with ``np.random.default_rng([seed, STREAM])``,
    and the leading axes of their vectors; None where the index can neither sample nor list its ids.

    Computed on the first ask for this index, seed, size and length, and shared after: two sessions asking at once
    may both compute it (the same answer); the first one kept serves from then on."""
    if not isinstance(index, (SamplingIndex, ListingIndex)):
        return None
    key = (seed, size, len(index))
    with _lock:
        found = _draws.get(index, {}).get(key)
    if found is not None:
        return found
    rng = np.random.default_rng([seed, STREAM])
    if isinstance(index, SamplingIndex):
        ids = tuple(index.sample(size, rng))
    else:
        every = sorted(index.list_ids())  # the draw depends on which ids, not on the order a backend learnt them
        ids = tuple(every[row] for row in rng.choice(len(every), size=min(size, len(every)), replace=False).tolist())
    vectors = index.fetch(list(ids))
    axes = leading_axes(vectors)
    for array in axes:
        array.flags.writeable = False
    with _lock:
        return _draws.setdefault(index, {}).setdefault(key, Draw(ids, axes, LocalIndex.from_vectors(ids, vectors)))
