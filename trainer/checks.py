"""Checks for values that come from outside: a visitor, a saved browser state, a config.json from the Hub.

Each function takes the value and the name it goes by in a message, and returns it cleaned or raises ``ValueError``
naming the value and what would be right. They run before any work, so a refusal costs nothing and changes nothing.
"""

from __future__ import annotations

import math
import numbers
import reprlib
import unicodedata
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = [
    "EMPTY_PROMPT_MESSAGE",
    "MAX_PROMPT_CHARS",
    "integer",
    "label_scores",
    "number",
    "prompt_text",
    "shown",
    "text",
    "unit_vector",
]

# Whitespace a person may paste into a one-line field: read as a plain space, not refused.
_SPACES = {"\t": " ", "\n": " ", "\r": " ", "\f": " ", "\v": " "}
_AS_SPACES = str.maketrans(_SPACES)


def number(
    value: Any, name: str, *, low: float | None = None, high: float | None = None, above: float | None = None
) -> float:
    """A finite real number (not a bool, not text) within ``[low, high]`` and ``> above``, as a float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number; got {shown(value)}")
    result = float(value)
    if not math.isfinite(result):
        raise ValueError(f"{name} must be a finite number; got {result}")
    if above is not None and not result > above:
        raise ValueError(f"{name} must be greater than {above:g}; got {result:g}")
    if (low is not None and result < low) or (high is not None and result > high):
        raise ValueError(f"{name} must be within [{_bound(low, '-inf')}, {_bound(high, 'inf')}]; got {result:g}")
    return result


def integer(value: Any, name: str, *, low: int, high: int) -> int:
    """A whole number (an int, not a bool or a float) within ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be a whole number from {low:,} to {high:,}; got {shown(value)}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be from {low:,} to {high:,}; got {int(value):,}")
    return int(value)


def text(value: Any, name: str, *, max_chars: int) -> str:
    """One line of text a person could have typed: at most ``max_chars`` characters (counted before any other
    work, so a huge value costs nothing), no control characters (NUL included) and no lone surrogates (text that is
    not valid Unicode). Tabs and line breaks become spaces; surrounding spaces are removed."""
    if not isinstance(value, str):
        raise ValueError(f"{name} must be text; got {shown(value)}")
    if len(value) > max_chars:
        raise ValueError(f"{name} is {len(value):,} characters long; the limit is {max_chars:,}. Shorten it.")
    for position, char in enumerate(value):
        if char in _SPACES:
            continue
        category = unicodedata.category(char)
        if category == "Cc":
            raise ValueError(
                f"{name} contains a control character (U+{ord(char):04X}) at position {position + 1}; "
                "remove it and type the text again"
            )
        if category == "Cs":
            raise ValueError(
                f"{name} contains a lone surrogate (U+{ord(char):04X}) at position {position + 1}, which is not valid "
                "Unicode; remove it and type the text again"
            )
    return value.translate(_AS_SPACES).strip()


def shown(value: Any) -> str:
    """A value for a message, as a short repr: reprlib cuts long text and big or deep containers short before
    building the whole repr, so a huge value costs nothing here."""
    return _SHORT.repr(value)


def _bound(value: float | None, unbounded: str) -> str:
    return unbounded if value is None else f"{value:g}"


_SHORT = reprlib.Repr()  # Python 3.11 takes no keyword arguments here
_SHORT.maxlevel, _SHORT.maxstring, _SHORT.maxother, _SHORT.maxlist, _SHORT.maxdict = 2, 40, 40, 4, 4


# A prompt longer than this is refused before it is tokenized. CLIP reads 77 tokens (about 50-70 English words,
# 300-400 characters), so no real description comes near it; a 9 MB prompt used to take 35 s to tokenize.
MAX_PROMPT_CHARS = 1_000
EMPTY_PROMPT_MESSAGE = "Describe the concept in a few words, e.g. 'dogs in the snow'"


def prompt_text(value: Any, name: str = "The prompt", *, allow_empty: bool = False) -> str:
    """A prompt as :func:`text` checks it, at most ``MAX_PROMPT_CHARS`` characters; empty only if allowed."""
    cleaned = text(value, name, max_chars=MAX_PROMPT_CHARS)
    if not cleaned and not allow_empty:
        raise ValueError(f"{EMPTY_PROMPT_MESSAGE} ({name.lower()} was empty)")
    return cleaned


def unit_vector(vector: object, dim: int) -> np.ndarray:
    """``vector`` as a read-only (dim,) float32 unit vector, or a ValueError saying what is wrong with it."""
    array = np.asarray(vector, dtype=np.float32).reshape(-1)
    if array.shape[0] != dim or not np.isfinite(array).all():
        raise ValueError(f"prompt vector must be {dim} finite numbers to match the index; got shape {array.shape}")
    norm = float(np.linalg.norm(array))
    if not norm > 1e-6:  # a zero vector ranks nothing: every item would score the same
        raise ValueError("prompt vector is zero (or nearly): it points nowhere, so it cannot rank anything")
    unit = array / norm
    unit.flags.writeable = False
    return unit


def label_scores(scores: Mapping[str, float]) -> dict[str, float]:
    """Scores as floats in [-1, 1], or a ValueError naming the first bad one. A boolean is refused: ``false`` would
    read as 0, "seen, no opinion", where whoever sent it meant "not it"."""
    clean: dict[str, float] = {}
    for id_, value in scores.items():
        if isinstance(value, (bool, np.bool_)):
            raise ValueError(
                f"label for {id_!r} must be a number in [-1, 1] (1 it, -1 not it, 0 no opinion), not {value!r}: "
                "false would mean no opinion"
            )
        try:
            score = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"label for {id_!r} must be a number in [-1, 1]; got {value!r}") from None
        if not np.isfinite(score) or abs(score) > 1:
            raise ValueError(f"label for {id_!r} must be within [-1, 1]; got {value!r}")
        clean[id_] = score
    return clean
