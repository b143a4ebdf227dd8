"""Labelling a planted concept as a careful person would: the loop the engine tests and benchmarks share."""

from __future__ import annotations

from trainer.session import Session
from trainer.synthetic import PlantedConcept, average_precision


def run_rounds(session: Session, concept: PlantedConcept, rounds: int) -> list[float]:
    """Label each batch with the truth; return AP over the whole collection before and after each round."""
    aps = [average_precision(session.scores(concept.vectors), concept.truth)]
    for _ in range(rounds):
        session.label(concept.oracle([h.id for h in session.batch()]))
        session.train_and_requery()
        aps.append(average_precision(session.scores(concept.vectors), concept.truth))
    return aps
