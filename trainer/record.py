"""What a labelling session carries when its classifier is shared: a frozen record, handed to the sharing layer as data.

A Session returns one (``Session.record()``); ``trainer.export`` writes it into an export folder and its model card,
and ``trainer.hub`` pushes it. The sharing layer imports this module and never the session, so sharing depends on
neither the session nor, through it, the index (ARCHITECTURE.md, rule 4). A bare classifier with labels gathered
elsewhere becomes a record through ``SessionRecord.of_probe``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from .classifier import FitReport, LinearProbe
from .quality import Quality

__all__ = ["RoundStats", "SessionRecord", "Shareable"]


@dataclass(frozen=True)
class RoundStats:
    round: int  # the round whose batch was just labelled, 1-based
    strategy: str
    shown: int  # items shown so far, all rounds
    labelled: int  # items with a non-zero score so far
    positives: int  # items scored > 0 so far: the "positives found"
    negatives: int
    fit: FitReport


@dataclass(frozen=True)
class SessionRecord:
    """A snapshot of one session's shareable facts; later rounds of the session leave it as it was.

    ``label_rounds`` gives, for each labelled id, the 1-based round it was labelled in (0: carried over from an
    earlier session); ``audit_labels`` are held-out labels, never trained on, that ``quality`` was measured with.
    """

    classifier: LinearProbe  # a copy, with its prompt and negative prompt: the weights when the record was made
    labels: Mapping[str, float] = field(default_factory=dict)
    label_rounds: Mapping[str, int] = field(default_factory=dict)
    history: tuple[RoundStats, ...] = ()
    strategy: str | None = None
    quality: Quality | None = None  # from an audit, or cross-validated over the training labels (optimistic)
    audit_labels: Mapping[str, float] = field(default_factory=dict)
    # Rounds trained, those before a session was rebuilt from a saved copy included (``history`` lacks them);
    # None: as many as ``history`` holds.
    rounds_trained: int | None = None

    @property
    def trained_rounds(self) -> int:
        return len(self.history) if self.rounds_trained is None else self.rounds_trained

    @classmethod
    def of_probe(
        cls,
        probe: LinearProbe,
        *,
        labels: Mapping[str, float] | None = None,
        label_rounds: Mapping[str, int] | None = None,
        history: Sequence[RoundStats] | None = None,
        strategy: str | None = None,
        quality: Quality | None = None,
    ) -> SessionRecord:
        """A record for a classifier trained elsewhere: whatever is not given is reported as unknown."""
        return cls(
            classifier=copy.deepcopy(probe),
            labels=dict(labels or {}),
            label_rounds=dict(label_rounds or {}),
            history=tuple(history or ()),
            strategy=strategy,
            quality=quality,
        )


@runtime_checkable
class Shareable(Protocol):
    """Anything that can hand over its shareable record, such as a Session."""

    def record(self) -> SessionRecord: ...
