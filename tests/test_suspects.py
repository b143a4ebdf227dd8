"""Suspect labels: the labels a classifier fitted on the others most disagrees with."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers.planted import run_rounds
from trainer.classifier import LinearProbe
from trainer.index.local import LocalIndex
from trainer.session import Session
from trainer.suspects import held_out_logits, suspect_labels
from trainer.synthetic import planted_concept


def test_planted_flipped_labels_come_first():
    # A concept a linear classifier can learn exactly: then only the flipped labels contradict the rest. A fixed,
    # weak-enough prior lets the fit learn it from 60 labels (the automatic one stays nearer the prompt there).
    concept = planted_concept(n=2000, dim=32, seed=1, noise=0.5, distractor=0.0)
    index = LocalIndex.from_vectors(concept.ids, concept.vectors)
    session = Session(index, concept.prompt_vector, seed=0, prior_strength=10.0)
    run_rounds(session, concept, rounds=6)
    labels = session.labels
    ids = list(labels)
    logits = session.classifier.logits(index.fetch(ids))
    order = np.argsort(logits)
    # Clear mistakes: the three positives and the one negative the classifier is surest of, turned around.
    wrong = [ids[i] for i in order[-3:]] + [ids[order[0]]]
    assert [labels[i] for i in wrong] == [1.0, 1.0, 1.0, -1.0]
    session.label({i: -labels[i] for i in wrong})
    session.train_and_requery()
    suspects = session.suspect_labels(6)
    assert {s.id for s in suspects[:4]} == set(wrong)
    assert all(s.label == -labels[s.id] for s in suspects[:4])
    disagreement = [s.disagreement for s in suspects]
    assert disagreement == sorted(disagreement, reverse=True) and disagreement[0] > 0.5


def test_no_labels_no_suspects_and_a_bad_k_is_refused(concept_index, concept):
    session = Session(concept_index, concept.prompt_vector, seed=0)
    assert session.suspect_labels() == []
    with pytest.raises(ValueError, match="positive whole number"):
        session.suspect_labels(0)


def test_labels_of_zero_are_never_suspects_and_k_bounds_the_list(concept_index, concept):
    session = Session(concept_index, concept.prompt_vector, seed=0)
    batch = [h.id for h in session.batch()]
    session.label({i: 0.0 for i in batch[:4]} | {i: 1.0 for i in batch[4:]})
    suspects = session.suspect_labels(3)
    assert len(suspects) == 3 and not {s.id for s in suspects} & set(batch[:4])
    assert len(session.suspect_labels(50)) == len(batch) - 4


def test_each_label_is_judged_by_a_fit_that_never_saw_it():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(40, 8)).astype(np.float32)
    labels = np.where(vectors[:, 0] > 0, 1.0, -1.0).astype(np.float32)
    probe = LinearProbe.from_prompt(np.eye(8)[1], scale=1.0, bias=0.0, prior_strength=1.0)
    leave_one_out = held_out_logits(probe, vectors, labels, folds=40, seed=0)
    for i in (0, 17, 39):
        alone = LinearProbe.from_prompt(np.eye(8)[1], scale=1.0, bias=0.0, prior_strength=1.0)
        alone.fit(np.delete(vectors, i, axis=0), np.delete(labels, i))
        assert leave_one_out[i] == pytest.approx(float(alone.logits(vectors[i : i + 1])[0]), abs=1e-4)
    with pytest.raises(ValueError, match="no class"):
        held_out_logits(probe, vectors, np.zeros(40, np.float32))
    suspects = suspect_labels(probe, [f"v{i}" for i in range(40)], vectors, labels, 5, folds=40)
    expected = np.argsort(-np.where(labels > 0, -leave_one_out, leave_one_out), kind="stable")[:5]
    assert [s.id for s in suspects] == [f"v{i}" for i in expected]
