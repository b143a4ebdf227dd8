"""What a person looks at, computed from a session: the batch with its stats (the grid's value, and the scripting
API's reply), the counts of each round, the whole collection ranked (Classify), and the 2-D map. Plain data out,
JSON-ready where the browser draws it (``batch_value``, ``panel_value``); drawing it is the UI's job.
"""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .index import Hit
from .session import EXPLORE_EMPTY, Session
from .workbench import Workbench
from .workspace import Workspace

__all__ = [
    "MAP_GRID",
    "MapView",
    "Ranking",
    "RoundCount",
    "batch_value",
    "describe_changes",
    "explore_note",
    "labels_per_round",
    "map_payload",
    "map_view",
    "no_match_note",
    "panel_value",
    "rank",
    "running_out_note",
    "summary",
    "suspects_notice",
]

MAP_GRID = 255  # map coordinates travel as bytes: 0..255 on each axis
# After this many "not it" labels and not one match (two batches of the default size), the stats line says so.
NO_MATCH_AFTER = 20
# How the stats line names each setting that ``Session.configure`` reports as changed.
_SETTING_NAMES = {"strategy": "strategy", "batch_size": "batch size", "prior_strength": "training strength"}


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
    left = session.positives_left()
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
        # Matches expected among the unseen candidates, and whether the next batch's best hold hardly any.
        "positives_left": round(left.expected, 1),
        "running_out": left.running_out,
        # How many of the batch's items are random picks from outside the search, and the line that says why.
        "explored": len(session.explored),
        "explore_note": explore_note(session),
        "running_out_note": running_out_note(session, left.running_out),
        "no_match_note": no_match_note(session),
        # Why the session has no sample of the collection where its index could give one (Pinecone refused, or a
        # namespace too large to list): its suspects, fits and exploration do without it. None almost always.
        "collection_note": session.collection_note,
    }


def running_out_note(session: Session, running_out: bool) -> str | None:
    """What the stats line says while the matches run out (``positives_left().running_out``), or None.

    The next batch is what the person will see; the total over the unseen candidates is an estimate they cannot
    act on, and next to "fewer than one" it read as a contradiction, so it stays in the numbers only. Boundary looks
    further down the search's ranking than mixed and top; a batch that already holds random picks from outside the
    search looks further still (boundary would explore the same way), and the original recipe cannot switch, so
    there the note suggests only a quality check.
    """
    if not running_out or session.exhausted:
        return None
    check = "Check quality to see how good the classifier is."
    switch = not session.explored and session.strategy not in ("boundary", "original")
    advice = f"Try the boundary strategy to look further afield, or {check}" if switch else check
    return f"Matches are running out: fewer than one is expected in the next batch. {advice}"


def no_match_note(session: Session) -> str | None:
    """What the stats line says once ``NO_MATCH_AFTER`` labels hold not one match, or None.

    The prompt's best matches were all wrong, and later batches found none either (with ``mixed`` and ``boundary``,
    half of each is random picks by then: trainer/exploration.py): the model reads the words otherwise, or the
    collection holds nothing like it. Nothing else on screen says that the person can do more than label on: the
    words can change, and an example image can start a session of its own (under More).
    """
    labels = session.labels.values()
    negatives = sum(v < 0 for v in labels)
    if negatives < NO_MATCH_AFTER or any(v > 0 for v in labels) or session.exhausted:
        return None
    return (
        f"No match among {negatives} labels yet: describe the concept another way, or start from an example image "
        "(under More)."
    )


def explore_note(session: Session) -> str | None:
    """What the stats line says when part of the batch comes from outside the search (trainer/exploration.py), so
    that random-looking non-matches among the best matches do not make the classifier look broken; None if none."""
    explored = len(session.explored)
    if not explored:
        return None
    shown = len(session.batch())
    are = "is a random pick" if explored == 1 else "are random picks"
    why = (
        "the search holds no likely match, so the classifier looks elsewhere"
        if session.explore_reason == EXPLORE_EMPTY
        else "the search is full of likely matches, and the concept may reach beyond it"
    )
    return f"{explored} of {shown} images {are} from outside the search: {why}."


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
    last = max([r for r, _ in counts] + [session.rounds_trained], default=0)
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


def batch_value(
    workspace: Workspace,
    bench: Workbench | None,
    *,
    changes: list[str] | None = None,
    notice: str | None = None,
    suspects: Sequence[str] = (),
) -> dict[str, Any]:
    """The grid's value, and the scripting API's reply: ``{"round", "batch", "stats", ...}``; each card
    ``{"id", "thumbnail", "score", "label", "alt"}`` (``"audit": true`` while a quality check is on screen,
    ``"explore": true`` for a random pick from outside the search). Cards and stats are open dicts: other features
    add keys (e.g. ``suspect`` on a card). ``key`` changes whenever a
    different batch is on screen; ``changes`` (from :func:`describe_changes`) and ``notice`` are shown as text.
    ``suspects``: ids of labels brought back by "Recheck", marked ``"suspect": true`` on their cards."""
    session = bench.session if bench else None
    if bench is None or session is None:
        return {"key": "none", "round": 0, "batch": [], "stats": None, "notice": notice}
    check = session.pending_audit()  # a quality check on screen until each of its images has a label
    labels = session.labels
    explored = frozenset() if check else session.explored
    batch = [
        {
            "id": hit.id,
            "thumbnail": workspace.thumbnails.data_uri(hit.id),
            "score": round(hit.score, 4),
            "label": labels.get(hit.id, 0.0),
            "alt": workspace.collection.caption(hit.id) or hit.id,
            **({"audit": True} if check else {}),
            **({"suspect": True} if hit.id in suspects else {}),
            **({"explore": True} if hit.id in explored else {}),
        }
        for hit in check or session.batch()
    ]
    stats = {**summary(session), "undo": bench.undo_kind, "changes": changes or []}
    key = f"{bench.serial}:{session.round}" + (f":check{len(session.audit_weights)}" if check else "")
    return {
        "key": key,
        "round": session.round,
        "batch": batch,
        "stats": stats,
        "prompt": session.classifier.prompt,
        "notice": notice,
        "mode": "check" if check else "train",
    }


def suspects_notice(found: int) -> str:
    """What "Recheck" (check my labels) says after bringing back ``found`` doubted labels."""
    if not found:
        return "No label looks wrong: a classifier trained on the others agrees with each of them."
    return (
        f"{found} of your labels disagree with what the others taught the classifier; they are back on the grid, "
        "marked. Correct any you gave by mistake, then Train & requery."
    )


def describe_changes(changes: dict[str, tuple[object, object]]) -> list[str]:
    """``Session.configure``'s report ``{name: (old, new)}`` as the stats line words it, e.g. "batch size 10 → 14"."""

    def shown(value: object) -> object:
        return "automatic" if value is None else value  # a prior strength of None: the labels choose it

    named = [(k, old, new) for k, (old, new) in changes.items() if k in _SETTING_NAMES]
    words = [f"{_SETTING_NAMES[k]} {shown(old)} → {shown(new)}" for k, old, new in named]
    if "negative_prompt" in changes:
        negative = changes["negative_prompt"][1]
        words.append(f"negative prompt “{negative}”" if negative else "no negative prompt")  # drawn as text
    return words


def map_payload(workspace: Workspace, session: Session | None) -> dict[str, Any]:
    """The map as the side panel draws it: every coordinate one byte per axis on a ``MAP_GRID`` grid (about 5 KB
    for 2,000 points, base64), the classifier's verdict on each ("" before a search), and the marked items."""
    view = map_view(workspace, session)
    low, high = workspace.map_xy.min(axis=0), workspace.map_xy.max(axis=0)
    span = np.where(high > low, high - low, 1.0)

    def cells(xy: np.ndarray) -> np.ndarray:
        return np.clip(np.rint((xy - low) / span * MAP_GRID), 0, MAP_GRID).astype(np.uint8)

    marked = []
    if view.marked:
        placed = cells(np.asarray([[x, y] for _, x, y, _ in view.marked], dtype=np.float32))
        marked = [[i, int(cx), int(cy), kind] for (i, _, _, kind), (cx, cy) in zip(view.marked, placed, strict=True)]
    return {
        "size": MAP_GRID,
        "xy": base64.b64encode(cells(view.xy).tobytes()).decode("ascii"),
        "predicted": (view.predicted.astype(np.uint8) + ord("0")).tobytes().decode("ascii") if session else "",
        "marked": marked,
    }


def panel_value(workspace: Workspace, session: Session | None) -> dict[str, Any]:
    """The side panel's value: ``{"rounds": [[round, it, not_it], ...], "map": map_payload(...)}``."""
    rounds = [[c.round, c.positives, c.negatives] for c in labels_per_round(session)] if session else []
    return {"rounds": rounds, "map": map_payload(workspace, session)}
