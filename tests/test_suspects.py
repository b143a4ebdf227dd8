"""Suspect labels: the labels a classifier fitted on the others, and their nearest labelled neighbours, most
disagree with."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers.fake_pinecone import FakePinecone, connect
from tests.helpers.planted import run_rounds
from trainer.classifier import LinearProbe
from trainer.index.local import LocalIndex
from trainer.prior_axes import FROM_LABELS, Stretch
from trainer.session import Session
from trainer.suspects import (
    NEIGHBOUR_WEIGHT,
    Suspect,
    held_out_logits,
    leading_axes,
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


def test_the_collections_leading_axes_are_its_principal_axes_and_the_same_for_the_same_vectors():
    rng = np.random.default_rng(0)
    spread = np.array([9.0, 7.0, 5.0, 4.0, 3.0] + [0.3] * 27)
    vectors = 2.0 + rng.normal(size=(600, 32)) * spread @ np.linalg.qr(rng.normal(size=(32, 32)))[0]
    axes = leading_axes(vectors, 5)
    assert axes.mean == pytest.approx(vectors.mean(axis=0))
    assert axes.basis.shape == (32, 5) and axes.basis.T @ axes.basis == pytest.approx(np.eye(5), abs=1e-9)
    exact = np.linalg.svd(vectors - vectors.mean(axis=0), full_matrices=False)[2][:5]
    # The same subspace as an exact decomposition's, axis by axis (up to sign).
    assert np.abs(np.sum(exact.T * axes.basis, axis=0)) == pytest.approx(np.ones(5), abs=1e-6)
    again = leading_axes(vectors.copy(), 5)
    assert np.array_equal(again.basis, axes.basis) and np.array_equal(again.mean, axes.mean)
    assert leading_axes(vectors[:3], 8).basis.shape == (32, 3)  # no more axes than the vectors span


def test_neighbours_along_the_collections_axes_find_mistakes_the_labels_own_axes_miss():
    # Much noise on every image: 60 labels' own leading axes are partly noise, a 1,000-image sample's are the
    # concept's attributes. Over six collections the flipped labels among the 10 most contradicted: 19 along the
    # labels' axes, 31 along the collection's (no collection worse).
    found = {"labels": 0, "collection": 0}
    for seed in range(6):
        concept = planted_concept(n=3000, dim=128, seed=seed, noise=5.0, distractor=0.0)
        rng = np.random.default_rng(seed)
        positives = rng.choice(np.flatnonzero(concept.truth), 30, replace=False)
        negatives = rng.choice(np.flatnonzero(~concept.truth), 30, replace=False)
        rows = np.concatenate([positives, negatives])
        labels = np.where(concept.truth[rows], 1.0, -1.0).astype(np.float32)
        flipped = np.arange(0, 60, 6)
        labels[flipped] *= -1
        collection = leading_axes(concept.vectors[rng.choice(3000, 1000, replace=False)])
        for name, along in (("labels", None), ("collection", collection)):
            shares = neighbour_disagreement(concept.vectors[rows], labels, along=along)
            found[name] += int(np.isin(np.argsort(-shares, kind="stable")[:10], flipped).sum())
    assert found["collection"] >= found["labels"] + 8


def test_doubt_counts_each_neighbour_witness_at_the_neighbour_weight():
    assert Suspect("a", 1.0, 0.2, 0.6).doubt == pytest.approx((0.2 + NEIGHBOUR_WEIGHT * 0.6) / (1 + NEIGHBOUR_WEIGHT))
    both = (0.2 + NEIGHBOUR_WEIGHT * (0.6 + 1.0)) / (1 + 2 * NEIGHBOUR_WEIGHT)
    assert Suspect("a", 1.0, 0.2, 0.6, 1.0).doubt == pytest.approx(both)
    assert Suspect("a", 1.0, 1.0, 1.0, 1.0).doubt == pytest.approx(1.0)


def careless_session(index, concept, seed: int = 0) -> Session:
    """Three rounds of a labeller who gets every fifth answer wrong."""
    session = Session(index, concept.prompt_vector, seed=seed, prompt="a planted concept")
    for _ in range(3):
        truth = concept.oracle([h.id for h in session.batch()])
        session.label({i: -v if n % 5 == 0 else v for n, (i, v) in enumerate(truth.items())})
        session.train_and_requery()
    return session


def test_a_session_asks_the_collections_axes_where_its_index_gives_a_sample_and_the_labels_alone_where_not(concept):
    local = careless_session(LocalIndex.from_vectors(concept.ids, concept.vectors), concept)
    suspects = local.suspect_labels(10)
    assert len(suspects) == 10 and all(s.collection_neighbours is not None for s in suspects)

    # Pinecone cannot sample (one query a round) but lists its ids: its session has the third witness too.
    def remote_index(client: FakePinecone):
        index = connect(client, concept.vectors.shape[1])
        index.add(concept.ids, concept.vectors)
        return index

    drawn = careless_session(remote_index(FakePinecone()), concept).suspect_labels(10)
    assert all(s.collection_neighbours is not None for s in drawn)
    # Where its draw fails, the same labels are judged by the two other witnesses alone, exactly as suspect_labels
    # ranks them without the collection's axes, and the session says why.
    client = FakePinecone()
    remote = careless_session(remote_index(client), concept)
    client.store("ct-test").fail("fetch", 503, times=5)  # every retry of the draw's first fetch
    assert remote.labels == local.labels
    fallback = remote.suspect_labels(10)
    assert all(s.collection_neighbours is None for s in fallback)
    assert remote.collection_sample() is None and remote.collection_axes() is None and remote.collection_note
    given = {i: v for i, v in remote.labels.items() if v != 0}
    vectors = np.stack([concept.vectors[concept.ids.index(i)] for i in given])
    labels = np.asarray(list(given.values()), dtype=np.float32)
    seed = [remote.seed, len(given)]
    assert fallback == suspect_labels(remote.classifier, list(given), vectors, labels, 10, seed=seed)
    # The held-out classifier is the same witness on both.
    every = len(given)
    local_disagreement = {s.id: s.disagreement for s in local.suspect_labels(every)}
    assert {s.id: s.disagreement for s in remote.suspect_labels(every)} == pytest.approx(local_disagreement)


def test_the_collections_sample_is_the_sessions_seeds_and_moves_no_batch(concept_index, concept):
    asked, quiet = careless_session(concept_index, concept), careless_session(concept_index, concept)
    first = asked.suspect_labels(10)
    assert asked.suspect_labels(10) == first  # drawn once, kept
    assert careless_session(concept_index, concept).suspect_labels(10) == first  # the same seed: the same sample
    other_seed = careless_session(concept_index, concept, seed=1)
    assert other_seed.suspect_labels(len(other_seed.labels)) != first  # another seed, another session and sample
    # Asking for suspects draws from a stream of its own: the next batches are those of a session never asked.
    for session in (asked, quiet):
        session.label(concept.oracle([h.id for h in session.batch()]))
        session.train_and_requery()
    assert [h.id for h in asked.batch()] == [h.id for h in quiet.batch()]


def test_suspects_survive_a_saved_copy_and_an_undo(concept_index, concept):
    session = careless_session(concept_index, concept)
    before = session.suspect_labels(10)
    rebuilt = Session.from_saved(concept_index, session.to_saved(), seed=session.seed)
    assert rebuilt.suspect_labels(10) == before
    session.label(concept.oracle([h.id for h in session.batch()]))
    labelled = session.suspect_labels(10)
    assert labelled != before
    session.train_and_requery()
    session.undo()  # back to just before that round's training: its labels given, not trained on
    undone = session.suspect_labels(10)
    # The same suspects and witnesses; the held-out fits start from the restored classifier (equal to ~1e-9).
    assert [(s.id, s.label, s.neighbours, s.collection_neighbours) for s in undone] == [
        (s.id, s.label, s.neighbours, s.collection_neighbours) for s in labelled
    ]
    assert [s.disagreement for s in undone] == pytest.approx([s.disagreement for s in labelled], abs=1e-6)


class CountingSamples(LocalIndex):
    """A local index that counts its ``sample`` calls: with ``strategy="top"`` (which never explores) every call is
    a session drawing its sample of the collection."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.draws: list[int] = []

    def sample(self, k, rng, exclude=None):
        self.draws.append(k)
        return super().sample(k, rng, exclude)


def test_a_session_draws_one_sample_of_the_collection_for_its_suspects_and_its_fit(concept):
    """One draw and one set of axes a session, for the suspects' third witness and the prior freer along the
    collection's axes alike, whichever asks first; undo draws nothing again, and a saved copy rebuilt with the seed
    draws the same once, so its suspects and weights are the saved session's."""
    index = CountingSamples.from_vectors(concept.ids, concept.vectors)
    session = Session(index, concept.prompt_vector, strategy="top", seed=0, prompt="a planted concept")
    assert index.draws == [] and session.suspect_labels(10) == []  # nothing asked, nothing drawn
    while len(session.labels) < FROM_LABELS:
        session.label(concept.oracle([h.id for h in session.batch()]))
        session.train_and_requery()
        session.suspect_labels(10)  # the suspects ask from the first round; the fit from FROM_LABELS labels
    assert len(index.draws) == 1
    axes = session.collection_axes()
    drawn = leading_axes(index.fetch(session.collection_sample()))
    np.testing.assert_array_equal(axes.basis, drawn.basis)
    np.testing.assert_array_equal(axes.mean, drawn.mean)
    assert session.classifier.stretch is not None  # the fit's stretch is along the same axes
    np.testing.assert_array_equal(
        session.classifier.stretch.axes, Stretch.along(axes.basis, session.prompt_vector).axes
    )

    session.label(concept.oracle([h.id for h in session.batch()]))
    before = session.classifier.weight.copy()
    session.train_and_requery()
    after, later = session.classifier.weight.copy(), session.suspect_labels(10)
    session.undo()
    np.testing.assert_array_equal(session.classifier.weight, before)
    session.train_and_requery()
    np.testing.assert_allclose(session.classifier.weight, after, atol=1e-6)
    assert [s.id for s in session.suspect_labels(10)] == [s.id for s in later]
    assert len(index.draws) == 1

    rebuilt_index = CountingSamples.from_vectors(concept.ids, concept.vectors)
    rebuilt = Session.from_saved(rebuilt_index, session.to_saved(), seed=0)
    # One fit of every label, where the session warm-started each round's: equal to Newton's tolerance.
    np.testing.assert_allclose(rebuilt.classifier.weight, session.classifier.weight, rtol=1e-4, atol=1e-4)
    assert [(s.id, s.neighbours, s.collection_neighbours) for s in rebuilt.suspect_labels(10)] == [
        (s.id, s.neighbours, s.collection_neighbours) for s in session.suspect_labels(10)
    ]
    assert rebuilt.collection_sample() == session.collection_sample() and len(rebuilt_index.draws) == 1
