"""How the next batch is chosen: plain functions with one signature, in the spirit of modAL.

Every strategy receives the candidate pool as the vector search returned it (best first) with the classifier's
probability for each candidate, and returns the positions of the ``k`` candidates to show next:

    strategy(proba: np.ndarray (M,), k: int, rng: np.random.Generator) -> np.ndarray of k distinct positions

The pool never contains an item the session has shown before, so no strategy has to think about that.

``mixed`` takes one more, optional argument, how many of its slots go to the top (``top_count``; half by default).
The session sets it from the labels with ``top_slots``: while the top picks of the last ``TOP_WINDOW`` batches were
all matches, they teach the classifier little and the person sees matches anyway, so one slot keeps the best
candidate and the others go to the boundary. One top pick that was not a match brings back the half.

The pool itself is a share of the collection (``pool_size_for``), not a fixed count: see there.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

__all__ = [
    "POOL_MAX",
    "POOL_MIN",
    "POOL_SHARE",
    "STRATEGIES",
    "TOP_WINDOW",
    "Strategy",
    "boundary",
    "get_strategy",
    "mixed",
    "pool_size_for",
    "random",
    "top",
    "top_slots",
]

Strategy = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]

# How many of the last batches' top picks ``top_slots`` looks at. With one, a single lucky round switched the make-up
# (the bundle's single shapes lost 0.018 mean AP by round 8); with 2 or 3 the bundle kept its AP, and on the hard
# synthetic kind (15 seeds) 3 needed the fewest labels: mean 197, against 200 with 2 and 202 with 4.
TOP_WINDOW = 3

# The candidate pool a session's search returns by default: an eighth of the collection, at least 1,000 (what every
# collection up to 8,000 items had before) and at most 5,000 (Pinecone's top_k cap of 10,000 keeps room for the
# seen ids its filter cannot hold). Why a share: the pool must reach past the part of the concept the classifier
# already knows, or its "boundary" is the bottom of those matches. On the clustered concept (three clusters of
# 6-7% of the items) a fixed 1,000 did at 8,000 items and not at 40,000, where one cluster alone is 2,700 items: every
# pool item was a match from round 2, the batch 5-7 more positives of a cluster already at AP 1.00, and mixed needed
# 221 labels to AP 0.9 (mean of seeds 0-9; median 210) against 114 (median 115) with a pool of 5,000 (2,500: about as
# bad as 1,000); at 16,000, 149 -> 98. Uniform random labels need 108 there (90 at 8,000). Not more than an eighth:
# exploration waits for a known part of the concept to fill exploration.FULL_POOL of the pool, and at 8,000 items a
# pool of 2,000 never got there (no second cluster found in 400 labels). benchmarks/RESULTS-learning.md, 2026-12-03.
POOL_SHARE = 8
POOL_MIN = 1_000
POOL_MAX = 5_000


def pool_size_for(items: int) -> int:
    """The default candidate pool for a collection of ``items``: see ``POOL_SHARE``."""
    return min(max(POOL_MIN, items // POOL_SHARE), POOL_MAX)


def top(proba: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """The highest-ranked candidates: what the original article showed. Finds positives fast, learns little."""
    return np.arange(min(k, len(proba)))


def boundary(proba: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """The candidates the classifier is least sure about (probability nearest 0.5): uncertainty sampling."""
    k = min(k, len(proba))
    return np.argsort(np.abs(np.asarray(proba) - 0.5), kind="stable")[:k]


def mixed(proba: np.ndarray, k: int, rng: np.random.Generator, top_count: int | None = None) -> np.ndarray:
    """Half top, half boundary: a person keeps seeing positives while the classifier learns its edges.

    ``top_count``: how many slots go to the top instead of half of them (the session's ``top_slots``)."""
    k = min(k, len(proba))
    chosen = list(top(proba, (k + 1) // 2 if top_count is None else min(max(top_count, 0), k), rng))
    for position in boundary(proba, len(proba), rng):
        if len(chosen) == k:
            break
        if position not in chosen:
            chosen.append(int(position))
    return np.asarray(chosen, dtype=np.int64)


def top_slots(k: int, recent_top: Sequence[bool]) -> int:
    """How many of ``mixed``'s ``k`` slots go to the top: half, or one while every recent top pick was a match.

    ``recent_top``: for each top pick of the last ``TOP_WINDOW`` batches that has a label, whether it was a match.
    Top picks that turn out as expected teach the classifier little; on concepts whose best candidates are often
    not matches (the offline bundle's rare ones) the top keeps its half, since there it is where the mistakes are.
    """
    half = (k + 1) // 2
    return min(1, half) if len(recent_top) and all(recent_top) else half


def random(proba: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Uniform over the pool: the baseline every other strategy has to beat."""
    return rng.choice(len(proba), size=min(k, len(proba)), replace=False)


STRATEGIES: dict[str, Strategy] = {"top": top, "boundary": boundary, "mixed": mixed, "random": random}


def get_strategy(name: str) -> Strategy:
    try:
        return STRATEGIES[name]
    except KeyError:
        raise ValueError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}") from None
