"""What a person sees besides the batch: counts per round, the collection ranked, the 2-D map."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.session import Session
from trainer.views import labels_per_round, map_view, rank, summary


def labelled_session(concept_index, concept, rounds: int = 2) -> Session:
    session = Session(concept_index, concept.prompt_vector, batch_size=6, seed=0)
    for _ in range(rounds):
        session.label(concept.oracle([h.id for h in session.batch()]))
        session.train_and_requery()
    return session


def test_labels_per_round_counts_each_rounds_it_and_not_it(concept_index, concept):
    session = labelled_session(concept_index, concept)
    counts = labels_per_round(session)
    assert [c.round for c in counts] == [1, 2]
    assert sum(c.positives + c.negatives for c in counts) == 12
    truth = dict(zip(concept.ids, concept.truth, strict=True))
    assert sum(c.positives for c in counts) == sum(bool(truth[i]) for i in session.labels)


def test_labels_taken_over_without_their_rounds_count_as_round_zero(concept_index, concept):
    earlier = labelled_session(concept_index, concept)
    session = Session(concept_index, concept.prompt_vector, seed=0)
    session.resume(earlier.labels)
    assert [c.round for c in labels_per_round(session)] == [0]
    assert labels_per_round(Session(concept_index, concept.prompt_vector)) == []


def test_rank_counts_items_over_the_threshold_and_lists_the_best_first(concept_index, concept):
    session = labelled_session(concept_index, concept)
    ranking = rank(session, concept.ids, concept.vectors, threshold=0.5, top_k=7)
    proba = session.scores(concept.vectors)
    assert ranking.total == len(concept.ids) and ranking.above == int((proba >= 0.5).sum())
    expected = [concept.ids[i] for i in np.argsort(-proba, kind="stable")[: min(7, ranking.above)]]
    assert [h.id for h in ranking.top] == expected
    assert rank(session, concept.ids, concept.vectors, threshold=1.0, top_k=7).top == []
    with pytest.raises(ValueError, match="threshold"):
        rank(session, concept.ids, concept.vectors, threshold=float("nan"), top_k=3)


def test_summary_names_the_counts_the_stats_line_shows(concept_index, concept):
    session = labelled_session(concept_index, concept)
    stats = summary(session)
    assert stats["round"] == 3 and stats["labels"] == 12 and stats["seen"] == 18
    assert stats["positives"] + stats["negatives"] == stats["labels"]


def test_the_map_marks_labelled_and_current_items_and_predicts_the_sample(bundle_workspace):
    ws = bundle_workspace.wait(timeout=600)
    session = ws.new_session("a large red heart", batch_size=5)
    first = [h.id for h in session.batch()]
    session.label({first[0]: 1.0, first[1]: -1.0})
    session.train_and_requery()
    view = map_view(ws, session)
    assert view.xy.shape == (len(ws.map_rows), 2) and view.predicted.shape == (len(ws.map_rows),)
    kinds = {id_: kind for id_, _, _, kind in view.marked}
    assert kinds[first[0]] == "it" and kinds[first[1]] == "not it"
    assert sum(kind == "batch" for kind in kinds.values()) == 5
    assert map_view(ws, None).marked == [] and not map_view(ws, None).predicted.any()
