"""One person's desk: the session they are labelling, and the sessions a new start replaced.

Nothing labelled is lost by one click: Undo takes back the last round (or resume) of the current session and, when
there is none, brings back the session that a Start over, a new search or a loaded classifier replaced. Pure Python,
no UI: the app keeps one Workbench per browser tab, an API client one per connection.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np

from .session import Session

__all__ = ["NOTHING_TO_UNDO", "Workbench"]

NOTHING_TO_UNDO = "nothing to undo: no round has been trained yet"
# How many replaced sessions a desk keeps for Undo. Each is a few hundred KB at most (labels, vectors, a classifier).
_KEEP_REPLACED = 5


class Workbench:
    """The current :class:`Session` (or None before the first search), what replaced sessions Undo can bring
    back, and a lock so that one person's requests change it one at a time."""

    def __init__(self) -> None:
        self.session: Session | None = None
        # What the current session was started from (a prompt, or an image's embedding), so that a new negative
        # prompt can turn its prior; None when unknown (a loaded classifier).
        self.query: str | np.ndarray | None = None
        self._replaced: list[tuple[Session, str | np.ndarray | None]] = []
        self.serial = 0  # counts the sessions this desk has shown: tells a client when a different one is current
        self.lock = threading.Lock()

    def start(self, session: Session, query: str | np.ndarray | None = None) -> None:
        """Make ``session`` (started from ``query``) the current one; the one it replaces is kept for Undo if it
        holds any work."""
        if self.session is not None and (self.session.labels or self.session.audit_labels or self.session.can_undo):
            self._replaced = [*self._replaced, (self.session, self.query)][-_KEEP_REPLACED:]
        self.session, self.query = session, query
        self.serial += 1

    def configure(
        self,
        prior_for: Callable[[str | np.ndarray, str], np.ndarray],
        *,
        negative_prompt: str,
        strategy: str,
        batch_size: int,
        prior_strength: float | None,
    ) -> dict[str, tuple[object, object]]:
        """Apply settings to the current session from its next round (see ``Session.configure``): returns what
        changed. A new negative prompt turns the prior: ``prior_for(query, negative)`` makes it from what the
        session was started from (``Workspace.prior_for``); a ``prior_strength`` of None is automatic. ValueError
        if there is no session, or a bad value (nothing then changes); a session that continues a loaded classifier
        keeps its negative prompt."""
        session = self.session
        if session is None:
            raise ValueError("no session to configure: start one first")
        negative = negative_prompt.strip()
        vector = None
        if negative != (session.classifier.negative_prompt or ""):
            if self.query is None:
                raise ValueError(
                    "this session continues a loaded classifier, so its negative prompt cannot change: "
                    "Start over from a prompt to use one"
                )
            vector = prior_for(self.query, negative)
        return session.configure(
            strategy=strategy,
            batch_size=batch_size,
            prior_strength=prior_strength,
            prompt_vector=vector,
            negative_prompt=negative if vector is not None else None,
        )

    @property
    def undo_kind(self) -> str | None:
        """What Undo would take back: "round" (of the current session), "start" (a new session) or None."""
        if self.session is not None and self.session.can_undo:
            return "round"
        return "start" if self._replaced else None

    def undo(self) -> str:
        """Take back the last step and say which kind it was (see :attr:`undo_kind`); ValueError if none."""
        kind = self.undo_kind
        if kind == "round":
            self.session.undo()  # type: ignore[union-attr]
        elif kind == "start":
            self.session, self.query = self._replaced.pop()
            self.serial += 1
        else:
            raise ValueError(NOTHING_TO_UNDO)
        return kind
