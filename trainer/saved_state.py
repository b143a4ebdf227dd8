"""A session's saved copy: what a browser keeps of it (``to_saved``), read back as untrusted input and rebuilt
(``from_saved``).

The value comes back from a visitor's browser, which they control: every field is checked for type, size and range
before any work (the vector's length and the label count before they are walked), and a ValueError names the first
wrong field. ``SavedCopies`` is mixed into ``Session``: it writes the copy and builds a session from what
``read_saved`` returns.

Version 2 adds what a quality check and the round counter need to survive a restart: the rounds trained so far,
the round each label was given in, the audited items with their design weights and the audit labels (held out from
training). Version 1 (labels only) is still read: its labels count as from before the session (round 0), with no
audit.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Self

import numpy as np

from . import checks
from .classifier import LinearProbe, check_prior_strength
from .index import VectorIndex

__all__ = ["MAX_BATCH_SIZE", "MAX_ROUNDS", "SAVED_FIELDS", "SAVED_VERSION", "SavedCopies", "fetch_known", "read_saved"]

# The shape of ``Session.to_saved()``; ``from_saved`` reads it and the versions before it, and refuses any other.
SAVED_VERSION = 2
# Item ids and model / collection names in a saved session are short; anything longer is refused unread.
_MAX_ID_CHARS = 1024
_MAX_NAME_CHARS = 512
# More than a person labels in a round; a bound so that no caller can ask for the whole collection at once.
MAX_BATCH_SIZE = 1000
# More rounds than anyone labels; a bound so that a tampered round number is refused, not carried.
MAX_ROUNDS = 1_000_000
_FIELDS_V1 = frozenset(
    (
        "version",
        "base_model",
        "collection",
        "prompt",
        "negative_prompt",
        "prompt_vector",
        "strategy",
        "batch_size",
        "prior_strength",
        "labels",
    )
)
SAVED_FIELDS = _FIELDS_V1 | {"rounds", "label_rounds", "audit", "audit_labels"}
_FIELDS = {1: _FIELDS_V1, SAVED_VERSION: SAVED_FIELDS}


class SavedCopies:
    """``to_saved`` and ``from_saved`` for :class:`trainer.session.Session`, whose state they read and set."""

    index: VectorIndex
    classifier: LinearProbe
    prompt: str | None
    negative_prompt: str | None
    prompt_vector: np.ndarray
    strategy: str
    batch_size: int
    collection: str | None
    _vectors: dict[str, np.ndarray]
    _label_rounds: dict[str, int]
    _audit: dict[str, float]
    _audit_labels: dict[str, float]
    _rounds_before: int

    def to_saved(self) -> dict[str, Any]:
        """What a browser keeps of this session so that a restarted app loses nothing: plain JSON values.

        How it was started (prompt, negative prompt, its unit prompt vector, strategy, batch size, prior strength,
        base model and collection), every label and the round it was given in, the rounds trained, and the quality
        checks: the audited items with their design weights and their labels (still held out once rebuilt).
        ``from_saved`` rebuilds it.
        """
        return {
            "version": SAVED_VERSION,
            "base_model": self.classifier.base_model,
            "collection": self.collection,
            "prompt": self.prompt,
            "negative_prompt": self.negative_prompt,
            "prompt_vector": [float(x) for x in self.prompt_vector],
            "strategy": self.strategy,
            "batch_size": self.batch_size,
            "prior_strength": self.classifier.prior_strength,
            "labels": self.labels,
            "rounds": self.rounds_trained,
            "label_rounds": self.label_rounds,
            "audit": self.audit_weights,
            "audit_labels": self.audit_labels,
        }

    @classmethod
    def from_saved(
        cls,
        index: VectorIndex,
        saved: object,
        *,
        base_model: str | None = None,
        collection: str | None = None,
        max_batch_size: int = MAX_BATCH_SIZE,
        seed: int = 0,
        pool_size: int | None = None,
    ) -> Self:
        """Rebuild a session from ``to_saved()``'s value, which came back from a browser and is untrusted.

        Everything is checked before any work (types, sizes, finite numbers, the batch size within
        ``max_batch_size``, no more labels than the index holds, every id in the index), and a ValueError names
        what is wrong. ``base_model`` and ``collection`` are what the caller runs now: a session saved for another
        model or collection is refused, and those two never come from ``saved``. The labels are taken over as by
        ``resume``, with the rounds they were given in, and Undo stops there; the round count carries on (from
        the round after the last label's, since taking over trains on every label). The audited items and their
        labels come back held out, so ``quality`` gives the estimate it gave before. A saved copy of version 1
        (labels only) is read too: its labels count as from before this session (round 0).
        """
        values = read_saved(saved, index, max_batch_size=max_batch_size)
        for key, current in (("base_model", base_model), ("collection", collection)):
            if current is not None and values[key] != current:
                raise ValueError(
                    f"the saved session is for {key} {checks.shown(values[key])}, but this app runs {current!r}; "
                    "start a new session"
                )
        # Every id is looked up before the session is built: a saved session naming unknown items costs no search.
        vectors = fetch_known(index, [*values["labels"], *values["audit"]])
        session = cls(
            index,
            values["prompt_vector"],
            strategy=values["strategy"],
            batch_size=values["batch_size"],
            seed=seed,
            pool_size=pool_size,
            prior_strength=values["prior_strength"],
            prompt=values["prompt"],
            negative_prompt=values["negative_prompt"],
            base_model=base_model,
            collection=collection,
        )
        session._vectors.update(zip([*values["labels"], *values["audit"]], vectors, strict=True))
        # Audited items first: held out, so that the batch chosen after taking over the labels never shows them.
        session._audit.update(values["audit"])
        session._audit_labels.update(values["audit_labels"])
        if values["labels"]:
            session.resume(values["labels"], undoable=False)  # it starts where it was saved: Undo stops there
            session._label_rounds = dict(values["label_rounds"])
        elif values["audit"]:  # nothing to train on, but the first batch must not show an audited item
            pool = index.query(session.classifier.weight, session._pool_k(), exclude=set(session._audit))
            session._batch = session._choose(pool)
        session._rounds_before = max([values["rounds"], *values["label_rounds"].values()])
        return session


def fetch_known(index: VectorIndex, ids: list[str]) -> np.ndarray:
    """The vectors of labelled items (n, D), or a ValueError if any id is not in the index."""
    try:
        return index.fetch(ids) if ids else np.empty((0, index.dim), np.float32)
    except KeyError as err:
        raise ValueError(f"cannot resume: labels name items that are not in this collection ({err})") from None


def read_saved(saved: object, index: VectorIndex, *, max_batch_size: int) -> dict[str, Any]:
    """The values of a saved session, each checked; a ValueError names the first wrong one. Reads nothing big:
    every size is checked before the value is walked."""
    if not isinstance(saved, Mapping):
        raise ValueError(f"a saved session is a JSON object; got {checks.shown(saved)}")
    version = saved.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version not in _FIELDS:
        raise ValueError(
            f"the saved session is of version {checks.shown(version)}; this app reads "
            + " and ".join(str(v) for v in sorted(_FIELDS))
        )
    fields = _FIELDS[version]
    missing = sorted(fields - saved.keys())
    unknown = sorted(str(k)[:40] for k in saved.keys() - fields)
    if missing or unknown:
        raise ValueError(
            f"the saved session (version {version}) does not have the expected fields"
            + (f"; missing {missing}" if missing else "")
            + (f"; unknown {unknown[:5]}" if unknown else "")
        )
    values: dict[str, Any] = {}
    for key in ("base_model", "collection"):
        value = saved[key]
        values[key] = None if value is None else checks.text(value, f"saved {key}", max_chars=_MAX_NAME_CHARS)
    values["prompt"] = checks.prompt_text(saved["prompt"], "the saved prompt")
    negative = saved["negative_prompt"]
    values["negative_prompt"] = (
        None if negative is None else checks.prompt_text(negative, "the saved negative prompt", allow_empty=True)
    )
    vector = saved["prompt_vector"]
    if not isinstance(vector, list) or len(vector) != index.dim:
        size = f"{len(vector):,} values" if isinstance(vector, list) else checks.shown(vector)
        raise ValueError(f"the saved prompt vector must be a list of {index.dim} numbers; got {size}")
    values["prompt_vector"] = [checks.number(x, f"prompt vector value {i}") for i, x in enumerate(vector)]
    values["strategy"] = saved["strategy"]  # Session checks it against the recipe names
    values["batch_size"] = checks.integer(saved["batch_size"], "the saved batch size", low=1, high=max_batch_size)
    values["prior_strength"] = check_prior_strength(saved["prior_strength"])
    values["labels"] = _scores(saved["labels"], "labels", "label", index)
    if version == 1:
        values.update(rounds=0, label_rounds=dict.fromkeys(values["labels"], 0), audit={}, audit_labels={})
        return values
    values["rounds"] = checks.integer(saved["rounds"], "the saved number of rounds", low=0, high=MAX_ROUNDS)
    label_rounds = _id_map(saved["label_rounds"], "label rounds", "id: round", index)
    if label_rounds.keys() != values["labels"].keys():
        raise ValueError("the saved label rounds must name exactly the labelled items")
    top = values["rounds"] + 1  # a label given in the round on screen, not trained yet
    values["label_rounds"] = {
        i: checks.integer(r, f"the saved round of {i!r}", low=0, high=top) for i, r in label_rounds.items()
    }
    audit = _id_map(saved["audit"], "audit", "id: weight", index)
    # A design weight is how many unseen items an audited one stands for: at most the whole collection.
    values["audit"] = {
        i: checks.number(w, f"the saved audit weight of {i!r}", above=0, high=len(index)) for i, w in audit.items()
    }
    values["audit_labels"] = _scores(saved["audit_labels"], "audit labels", "audit label", index)
    unaudited = [i for i in values["audit_labels"] if i not in values["audit"]]
    if unaudited:
        raise ValueError(f"the saved audit labels name items that were never audited: {checks.shown(unaudited[:5])}")
    both = [i for i in values["audit"] if i in values["labels"]]
    if both:
        raise ValueError(
            f"the saved session trains on audited items, which must stay held out: {checks.shown(both[:5])}"
        )
    return values


def _id_map(value: object, name: str, shape: str, index: VectorIndex) -> Mapping[str, Any]:
    """A JSON object keyed by item ids, no bigger than the collection: checked before its values are walked."""
    if not isinstance(value, Mapping):
        raise ValueError(f"the saved {name} must be a JSON object of {shape}; got {checks.shown(value)}")
    if len(value) > len(index):
        raise ValueError(f"the saved {name} name {len(value):,} items, but the collection holds {len(index):,}")
    long_ids = [i for i in value if not isinstance(i, str) or len(i) > _MAX_ID_CHARS]
    if long_ids:
        raise ValueError(f"the saved {name} hold an id that is not a collection id: {checks.shown(long_ids[0])}")
    return value


def _scores(value: object, name: str, one: str, index: VectorIndex) -> dict[str, float]:
    """Labels, id: score in [-1, 1]."""
    labels = _id_map(value, name, "id: score", index)
    return {i: checks.number(v, f"the saved {one} of {i!r}", low=-1, high=1) for i, v in labels.items()}
