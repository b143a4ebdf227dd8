"""Choosing an audit: a random sample the classifier did not choose, from which trainer/quality.py estimates how good
it is on the whole collection.

The images not yet shown are ranked by the current score and cut into bands whose sizes double from the top: the
best 1/128 of them, the next 1/128, 1/64, ..., the bottom half. The same number of images is drawn at random from
every band. Rare concepts live near the top, so the top is sampled densely (one image in a few dozen) and the bulk
thinly (one in a few thousand), yet *every* image has a known, non-zero chance of being drawn: that chance is what
makes the estimates describe the whole collection and not the batches the classifier chose. Each audited image
carries its design weight, ``band size / images drawn from the band`` (how many images it stands for).
"""

from __future__ import annotations

import math

import numpy as np

from .logistic import logit

__all__ = ["MAX_BANDS", "band_edges", "choose_audit"]

# Doubling bands: the top band holds 1/2**(MAX_BANDS - 1) of the images, the bottom one half of them.
MAX_BANDS = 8


def band_edges(count: int, bands: int = MAX_BANDS, split: int | None = None) -> np.ndarray:
    """Edges of doubling bands over ``count`` ranked items: ``[0, count/2**(bands-1), ..., count/2, count]``.

    ``split`` (the number of items at or above the decision threshold) adds an edge there, so that no band holds
    items on both sides of the threshold. Empty bands are dropped: every band holds at least one item.
    """
    if count <= 0:
        return np.zeros(1, dtype=np.int64)
    inner = [math.ceil(count / 2**k) for k in range(bands - 1, 0, -1)]
    extra = [split] if split is not None and 0 < split < count else []
    return np.unique(np.asarray([0, *inner, *extra, count], dtype=np.int64))


def choose_audit(
    logits: np.ndarray, eligible: np.ndarray, n: int, rng: np.random.Generator, *, threshold: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """A stratified random sample of ``n`` eligible rows: (rows, design weights), best-scored first.

    ``logits`` (N,) are the current classifier's scores for the whole collection, ``eligible`` (N,) bool marks the
    rows that may be drawn (never shown, never audited). See the module docstring for the bands. A weight is the
    number of eligible rows its draw stands for, so the weights of one audit sum to the number of eligible rows.
    """
    logits = np.asarray(logits, dtype=np.float64)
    eligible = np.asarray(eligible, dtype=bool)
    if logits.shape != eligible.shape or logits.ndim != 1:
        raise ValueError(f"logits {logits.shape} and eligible {eligible.shape} must be matching 1-D arrays")
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise ValueError(f"an audit needs a positive whole number of images; got {n!r}")
    pool = np.flatnonzero(eligible)
    if len(pool) == 0:
        return np.empty(0, np.int64), np.empty(0, np.float64)
    pool = pool[np.argsort(-logits[pool], kind="stable")]
    if n >= len(pool):
        return pool, np.ones(len(pool))
    above = int((logits[pool] >= logit(threshold)).sum())
    bands = min(MAX_BANDS, n)
    edges = band_edges(len(pool), bands, above)
    if len(edges) - 1 > n:  # never more bands than draws: every band must have a chance of being drawn
        edges = band_edges(len(pool), bands - 1, above)
    sizes = np.diff(edges)
    counts = _allocate(n, sizes)
    rows, weights = [], []
    for start, size, k in zip(edges[:-1], sizes, counts, strict=True):
        picked = np.sort(rng.choice(size, size=int(k), replace=False))
        rows.append(pool[start + picked])
        weights.append(np.full(int(k), size / k))
    return np.concatenate(rows), np.concatenate(weights)


def _allocate(n: int, sizes: np.ndarray) -> np.ndarray:
    """``n`` draws spread as evenly as the band ``sizes`` allow; leftovers go to the top bands, where matches are."""
    counts = np.zeros(len(sizes), np.int64)
    while counts.sum() < n:
        room = np.flatnonzero(counts < sizes)
        share, left = divmod(n - int(counts.sum()), len(room))
        counts[room] += share
        counts[room[:left]] += 1
        counts = np.minimum(counts, sizes)
    return counts
