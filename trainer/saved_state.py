"""What a browser keeps of a session (``Session.to_saved()``), read back as untrusted input.

The value comes back from a visitor's browser, which they control: every field is checked for type, size and range
before any work (the vector's length and the label count before they are walked), and a ValueError names the first
wrong field. ``Session.from_saved`` builds the session from what this returns.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import checks
from .classifier import check_prior_strength
from .index import VectorIndex

__all__ = ["SAVED_FIELDS", "SAVED_VERSION", "read_saved"]

# The shape of ``Session.to_saved()``; ``from_saved`` refuses any other.
SAVED_VERSION = 1
# Item ids and model / collection names in a saved session are short; anything longer is refused unread.
_MAX_ID_CHARS = 1024
_MAX_NAME_CHARS = 512
SAVED_FIELDS = frozenset(
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


def read_saved(saved: object, index: VectorIndex, *, max_batch_size: int) -> dict[str, Any]:
    """The values of a saved session, each checked; a ValueError names the first wrong one. Reads nothing big:
    every size is checked before the value is walked."""
    if not isinstance(saved, Mapping):
        raise ValueError(f"a saved session is a JSON object; got {checks.shown(saved)}")
    missing = sorted(SAVED_FIELDS - saved.keys())
    unknown = sorted(str(k)[:40] for k in saved.keys() - SAVED_FIELDS)
    if missing or unknown:
        raise ValueError(
            "the saved session does not have the expected fields"
            + (f"; missing {missing}" if missing else "")
            + (f"; unknown {unknown[:5]}" if unknown else "")
        )
    if saved["version"] != SAVED_VERSION or isinstance(saved["version"], bool):
        raise ValueError(
            f"the saved session is of version {checks.shown(saved['version'])}; this app reads {SAVED_VERSION}"
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
    labels = saved["labels"]
    if not isinstance(labels, Mapping):
        raise ValueError(f"the saved labels must be a JSON object of id: score; got {checks.shown(labels)}")
    if len(labels) > len(index):
        raise ValueError(f"the saved labels name {len(labels):,} items, but the collection holds {len(index):,}")
    long_ids = [i for i in labels if not isinstance(i, str) or len(i) > _MAX_ID_CHARS]
    if long_ids:
        raise ValueError(f"the saved labels hold an id that is not a collection id: {checks.shown(long_ids[0])}")
    values["labels"] = {i: checks.number(v, f"the saved label of {i!r}", low=-1, high=1) for i, v in labels.items()}
    return values
