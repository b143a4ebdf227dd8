"""What a person looks at besides the batch, computed from a session: the counts of each round, the whole
collection ranked (Classify), and the 2-D map. Plain data out; drawing it is the UI's job.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from .index import Hit
from .session import Session
from .workspace import Workspace

__all__ = ["MapView", "Ranking", "RoundCount", "labels_per_round", "map_view", "rank", "summary"]


@dataclass(frozen=True)
class RoundCount:
    round: int  # 1-based; 0 for labels taken over from an earlier visit without their rounds
    positives: int
    negatives: int


@dataclass(frozen=True)
class Ranking:
    """A collection scored by a classifier: how many items reach ``threshold``, and the best of them."""

    total: int
    above: int
    threshold: float
    top: list[Hit]  # best first, each >= threshold; at most the ``top_k`` asked for


@dataclass(frozen=True)
class MapView:
    """The collection's 2-D map under a session: predictions for the drawn sample, and the session's own items."""

    xy: np.ndarray  # (M, 2) the sample's coordinates
    predicted: np.ndarray  # (M,) bool: the classifier says "it"
    marked: list[tuple[str, float, float, str]]  # (id, x, y, kind): kind "it", "not it" (labelled) or "batch"


def summary(session: Session) -> dict[str, object]:
    """The session in numbers, as the stats line shows them (JSON-ready; other features add keys)."""
    labels = session.labels.values()
    positives = sum(v > 0 for v in labels)
    negatives = sum(v < 0 for v in labels)
    return {
        "round": session.round,
        "labels": positives + negatives,
        "positives": positives,
        "negatives": negatives,
        "seen": len(session.seen),
        "strategy": session.strategy,
        "batch_size": session.batch_size,
        "prior_strength": session.classifier.prior_strength,
        "exhausted": session.exhausted,
    }


def labels_per_round(session: Session) -> list[RoundCount]:
    """How many "it" and "not it" labels each round's batch got (its latest label for an item labelled twice).

    Computed from the labels themselves, not the round history, so it survives a resume that restores labels and
    their rounds.
    """
    rounds = session.label_rounds
    counts: Counter[tuple[int, bool]] = Counter()
    for id_, value in session.labels.items():
        if value != 0:
            counts[rounds.get(id_, 0), value > 0] += 1
    last = max([r for r, _ in counts] + [len(session.history)], default=0)
    first = 0 if any(r == 0 for r, _ in counts) else 1
    return [RoundCount(r, counts[r, True], counts[r, False]) for r in range(first, last + 1)]


def rank(
    session: Session, ids: list[str] | tuple[str, ...], vectors: np.ndarray, threshold: float, top_k: int
) -> Ranking:
    """Score every row of ``vectors`` (n, D) with the session's classifier; count and list those >= ``threshold``."""
    if not 0 <= threshold <= 1:
        raise ValueError(f"threshold must be within [0, 1]; got {threshold!r}")
    if top_k < 0:
        raise ValueError(f"top_k must be >= 0; got {top_k!r}")
    proba = session.scores(np.asarray(vectors))
    above = proba >= threshold
    candidates = np.flatnonzero(above)
    k = min(top_k, len(candidates))
    if k:
        best = candidates[np.argpartition(-proba[candidates], k - 1)[:k]]
        best = best[np.argsort(-proba[best], kind="stable")]
    else:
        best = candidates[:0]
    return Ranking(len(proba), int(above.sum()), float(threshold), [Hit(ids[i], float(proba[i])) for i in best])


def map_view(workspace: Workspace, session: Session | None) -> MapView:
    """The map's sample with the classifier's verdict on each point, and every labelled and current item on top."""
    xy = workspace.map_xy
    if session is None:
        return MapView(xy, np.zeros(len(xy), bool), [])
    vectors = np.asarray(workspace.embeddings.vectors[workspace.map_rows], dtype=np.float32)
    predicted = session.scores(vectors) >= session.classifier.threshold
    kinds = {i: ("it" if v > 0 else "not it") for i, v in session.labels.items() if v != 0}
    kinds.update({h.id: "batch" for h in session.batch()})
    marked: list[tuple[str, float, float, str]] = []
    if kinds:
        ids = list(kinds)
        coords = workspace.project(workspace.vectors_of(ids))
        marked = [(i, float(x), float(y), kinds[i]) for i, (x, y) in zip(ids, coords, strict=True)]
    return MapView(xy, predicted, marked)
