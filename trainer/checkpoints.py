"""Undo checkpoints that cost what a round changed, not what the session holds.

A session checkpoints its state before every round (``Session._refit_and_query``). Kept whole, each checkpoint copies
every label and every seen id, so a scripted session's checkpoints grew as the square of its rounds: 10,000 items
labelled 50 a round held 182 MB after 200 rounds (benchmarks/RESULTS-engine.md, section 9). Here only the newest
checkpoint is whole; each older one is kept as the entries that turn the checkpoint after it back into it: for the
dicts and sets named ``incremental``, the keys that differ (a round's labels, its shown items); every other entry
(the classifier's few tensors, the batch, the random state) whole, as before.

A dict comes back in its old key order, which the fit's rows follow, so a session after Undo is the one before to the
bit. That holds for a dict that only grew at its end between two checkpoints (the labels: added at the end, relabelled
in place); one that did not (the newest labels, emptied every round) is kept whole.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import islice
from typing import Any

__all__ = ["Checkpoints"]


class Checkpoints:
    """A stack of state dicts; ``push`` takes ownership of the dict it is given, ``pop`` hands it (or one rebuilt
    equal to it) back for the caller to keep and change."""

    def __init__(self, incremental: Iterable[str]) -> None:
        self._incremental = frozenset(incremental)
        self._newest: dict[str, Any] | None = None
        self._older: list[dict[str, Any]] = []  # each: how to turn the checkpoint above it back into it

    def __len__(self) -> int:
        return len(self._older) + (self._newest is not None)

    def push(self, state: dict[str, Any]) -> None:
        if self._newest is not None:
            self._older.append(self._back(state, self._newest))
        self._newest = state

    def pop(self) -> dict[str, Any]:
        if self._newest is None:
            raise IndexError("no checkpoint to return to")
        state = self._newest
        self._newest = self._apply(state, self._older.pop()) if self._older else None
        return state

    def _back(self, new: dict[str, Any], old: dict[str, Any]) -> dict[str, Any]:
        """What turns ``new`` back into ``old``."""
        back: dict[str, Any] = {}
        for name, before in old.items():
            if name not in self._incremental:
                back[name] = before
            elif isinstance(before, dict):
                after = new[name]
                if list(islice(after, len(before))) != list(before):
                    back[name] = before  # not grown at its end (a round's newest labels): whole, to keep its order
                    continue
                # ``after`` is ``before`` with keys added at its end: drop those, put back the values that changed.
                changed = {k: v for k, v in before.items() if after[k] != v}
                back[name] = (changed, list(islice(after, len(before), None)))
            else:  # a set
                back[name] = (before - new[name], new[name] - before)
        return back

    def _apply(self, state: dict[str, Any], back: dict[str, Any]) -> dict[str, Any]:
        """A new state: ``state`` (left as it is, its caller keeps it) turned back by ``back``."""
        older: dict[str, Any] = {}
        for name, entry in back.items():
            if name not in self._incremental or isinstance(entry, dict):  # kept whole
                older[name] = entry
                continue
            restore, drop = entry
            value = state[name].copy()
            if isinstance(value, dict):
                for key in drop:
                    del value[key]
                value.update(restore)
            else:
                value -= drop
                value |= restore
            older[name] = value
        return older
