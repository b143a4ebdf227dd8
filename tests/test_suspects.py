"""Suspect labels: the labels a classifier fitted on the others, and their nearest labelled neighbours, most
disagree with."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers.planted import run_rounds
from trainer.classifier import LinearProbe
from trainer.index.local import LocalIndex
from trainer.session import Session
from trainer.suspects import (
    NEIGHBOUR_WEIGHT,
    held_out_logits,
    neighbour_disagreement,
    principal_coordinates,
    suspect_labels,
)
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
    doubt = [s.doubt for s in suspects]
    assert doubt == sorted(doubt, reverse=True) and suspects[0].disagreement > 0.5


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
    other = 1 / (1 + np.exp(np.where(labels > 0, leave_one_out, -leave_one_out)))  # P(the other class)
    doubt = (other + NEIGHBOUR_WEIGHT * neighbour_disagreement(vectors, labels)) / (1 + NEIGHBOUR_WEIGHT)
    expected = np.argsort(-doubt, kind="stable")[:5]
    assert [s.id for s in suspects] == [f"v{i}" for i in expected]
    assert [s.disagreement for s in suspects] == pytest.approx(other[expected].tolist(), abs=1e-5)


def test_neighbours_count_the_nearest_other_labels_of_the_other_class():
    # Two tight groups on the axes, 4 labels each; one label in the first group is turned around.
    rng = np.random.default_rng(0)
    vectors = np.concatenate(
        [np.eye(4)[0] + 0.01 * rng.normal(size=(4, 4)), np.eye(4)[1] + 0.01 * rng.normal(size=(4, 4))]
    )
    labels = np.array([1, 1, 1, -1, -1, -1, -1, -1], dtype=np.float32)
    shares = neighbour_disagreement(vectors, labels, k=3)
    assert shares[3] == 1.0  # its three nearest are the first group's positives
    assert shares[:3].tolist() == pytest.approx([1 / 3] * 3)  # each sees the two others and the turned one
    assert shares[4:].tolist() == [0.0] * 4
    assert neighbour_disagreement(vectors[:1], labels[:1]).tolist() == [0.0]  # a lone label has no neighbours
    assert neighbour_disagreement(vectors[:2], labels[:2], k=5).tolist() == [0.0, 0.0]  # k beyond the others


def test_neighbours_are_found_along_the_labelled_images_leading_axes_not_in_their_noise():
    # The concept lives in a few attribute directions of 256; most of each vector is noise spread over all of them.
    # By cosine in all 256 dimensions a label's nearest labelled images are near by chance (2 of the 8 flipped
    # labels ranked among the 8 most contradicted before the axes, 4 about the mean); along the labelled images'
    # leading principal axes they share its attributes, and the flipped labels' neighbours carry their true class.
    concept = planted_concept(n=3000, dim=256, seed=0, noise=3.0, distractor=0.0)
    rng = np.random.default_rng(0)
    positives = rng.choice(np.flatnonzero(concept.truth), 40, replace=False)
    negatives = rng.choice(np.flatnonzero(~concept.truth), 40, replace=False)
    rows = np.concatenate([positives, negatives])
    labels = np.where(concept.truth[rows], 1.0, -1.0).astype(np.float32)
    flipped = np.arange(0, 80, 10)  # four positives called negative, four negatives called positive
    labels[flipped] *= -1
    shares = neighbour_disagreement(concept.vectors[rows], labels)
    found = np.isin(np.argsort(-shares, kind="stable")[:8], flipped).sum()
    assert found >= 5
    # With as many axes as there are labels nothing is dropped: cosine in all dimensions (about the mean) finds fewer.
    everything = neighbour_disagreement(concept.vectors[rows], labels, axes=80)
    assert np.isin(np.argsort(-everything, kind="stable")[:8], flipped).sum() < found


def test_principal_coordinates_keep_the_leading_axes_about_the_mean():
    rng = np.random.default_rng(0)
    vectors = 5.0 + rng.normal(size=(30, 6)) * np.array([10.0, 3.0, 1.0, 0.1, 0.1, 0.1])
    coordinates = principal_coordinates(vectors, 2)
    assert coordinates.shape == (30, 2)
    assert coordinates.mean(axis=0) == pytest.approx([0.0, 0.0], abs=1e-9)
    centred = vectors - vectors.mean(axis=0)
    # The first two axes are (nearly) the first two dimensions: the largest spreads, up to sign.
    assert np.abs(coordinates[:, 0]) == pytest.approx(np.abs(centred[:, 0]), rel=0.05, abs=0.3)
    assert principal_coordinates(vectors[:3], 8).shape == (3, 3)  # no more axes than the vectors span
    # Pairwise distances survive in full when every axis is kept.
    full = principal_coordinates(vectors, 6)
    assert np.linalg.norm(full[0] - full[1]) == pytest.approx(np.linalg.norm(vectors[0] - vectors[1]))


def test_a_label_its_neighbours_contradict_outranks_one_only_the_classifier_doubts():
    # A prior too strong for the labels to turn, along a direction they do not vary in: the held-out classifier
    # cannot tell the groups apart and doubts every label about equally. The neighbours single out the mistake.
    rng = np.random.default_rng(3)
    positives = np.eye(8)[0] + 0.05 * rng.normal(size=(10, 8))
    negatives = np.eye(8)[1] + 0.05 * rng.normal(size=(10, 8))
    vectors = np.concatenate([positives, negatives]).astype(np.float32)
    labels = np.array([1.0] * 10 + [-1.0] * 10, dtype=np.float32)
    labels[12] = 1.0  # a negative called positive
    probe = LinearProbe.from_prompt(np.eye(8)[2], scale=5.0, bias=0.0, prior_strength=1e5)
    suspects = suspect_labels(probe, [f"v{i}" for i in range(20)], vectors, labels, 3)
    assert suspects[0].id == "v12" and suspects[0].neighbours == 1.0
    # The classifier alone would not have put it first.
    assert max(s.disagreement for s in suspects) > suspects[0].disagreement
