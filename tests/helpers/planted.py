"""Labelling a planted concept as a careful person would: the loop the engine tests and benchmarks share; and an
index that refuses any search, for checks that a refusal did no work."""

from __future__ import annotations

from trainer.index.local import LocalIndex
from trainer.session import Session
from trainer.synthetic import PlantedConcept, average_precision


class NoQueries(LocalIndex):
    """An index that fails any search: proves a refused Session did no work before refusing."""

    def query(self, *args, **kwargs):
        raise AssertionError("the session searched before checking its arguments")


def run_rounds(session: Session, concept: PlantedConcept, rounds: int) -> list[float]:
    """Label each batch with the truth; return AP over the whole collection before and after each round."""
    aps = [average_precision(session.scores(concept.vectors), concept.truth)]
    for _ in range(rounds):
        session.label(concept.oracle([h.id for h in session.batch()]))
        session.train_and_requery()
        aps.append(average_precision(session.scores(concept.vectors), concept.truth))
    return aps
