"""Session: one person's labelling loop on synthetic embeddings with a planted concept."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.helpers.planted import run_rounds
from trainer.index.local import LocalIndex
from trainer.session import Session
from trainer.strategies import get_strategy
from trainer.synthetic import planted_concept


def test_an_unknown_strategy_lists_the_valid_ones(concept_index, concept):
    with pytest.raises(ValueError, match="choose one of top, boundary, mixed, random"):
        get_strategy("greedy")
    with pytest.raises(ValueError, match="top, boundary, mixed, random, original"):
        Session(concept_index, concept.prompt_vector, strategy="greedy")


def test_labels_make_the_classifier_better_than_zero_shot(concept_index, concept):
    aps = run_rounds(Session(concept_index, concept.prompt_vector, seed=0), concept, rounds=5)
    assert aps[-1] > aps[0] + 0.1
    assert min(aps[1:]) >= aps[0] - 1e-6  # the default never does worse than the prompt alone


def test_our_recipe_beats_the_original_article(concept_index, concept):
    ours = run_rounds(Session(concept_index, concept.prompt_vector, seed=0), concept, rounds=5)
    original = run_rounds(Session(concept_index, concept.prompt_vector, strategy="original", seed=0), concept, rounds=5)
    assert ours[-1] > original[-1] + 0.05


def test_a_session_never_shows_an_item_twice(concept_index, concept):
    session = Session(concept_index, concept.prompt_vector, strategy="random", batch_size=25, seed=3)
    shown: list[str] = []
    for _ in range(6):
        batch = session.batch()
        shown += [h.id for h in batch]
        session.label({batch[0].id: 1.0})
        session.train_and_requery()
    assert len(shown) == len(set(shown)) == 150


def test_sessions_are_deterministic_for_a_seed(concept_index, concept):
    def ids(seed):
        session = Session(concept_index, concept.prompt_vector, strategy="random", seed=seed)
        run_rounds(session, concept, rounds=2)
        return [h.id for h in session.batch()]

    assert ids(7) == ids(7)
    assert ids(7) != ids(8)


def test_undo_restores_the_exact_previous_state(concept_index, concept):
    session = Session(concept_index, concept.prompt_vector, seed=0)
    run_rounds(session, concept, rounds=2)
    batch = session.batch()
    session.label({batch[0].id: 1.0, batch[1].id: -1.0})
    before = (session.batch(), session.labels, session.history, session.seen, session.classifier.weight)
    next_batch = session.train_and_requery()
    assert [h.id for h in next_batch] != [h.id for h in batch]
    assert session.undo() == before[0]
    after = (session.batch(), session.labels, session.history, session.seen, session.classifier.weight)
    assert after[:4] == before[:4]
    np.testing.assert_array_equal(after[4], before[4])
    assert session.train_and_requery() == next_batch  # the same seed state: the same next batch again


def test_undo_with_nothing_to_undo_says_so(concept_index, concept):
    with pytest.raises(ValueError, match="nothing to undo"):
        Session(concept_index, concept.prompt_vector).undo()


def test_two_sessions_on_one_index_never_see_each_others_labels(concept_index, concept):
    alice = Session(concept_index, concept.prompt_vector, seed=0)
    bob = Session(concept_index, concept.prompt_vector, seed=0)
    assert [h.id for h in alice.batch()] == [h.id for h in bob.batch()]
    alice.label({h.id: 1.0 for h in alice.batch()})
    alice.train_and_requery()
    assert bob.labels == {} and bob.round == 1
    assert [h.id for h in bob.train_and_requery()] != [h.id for h in alice.batch()]  # bob's own, untrained, path
    assert not alice.seen & {"never"} and len(concept_index) == len(concept.ids)


@pytest.mark.parametrize("value", [1.0, -1.0])
def test_all_positive_or_all_negative_labels_train_without_error(concept_index, concept, value):
    session = Session(concept_index, concept.prompt_vector, seed=0)
    for _ in range(3):
        session.label({h.id: value for h in session.batch()})
        session.train_and_requery()
    probs = session.scores(concept.vectors)
    assert np.isfinite(probs).all()
    assert session.history[-1].positives == (30 if value > 0 else 0)


def test_a_tiny_collection_exhausts_cleanly():
    concept = planted_concept(n=23, dim=8, seed=2)
    session = Session(LocalIndex.from_vectors(concept.ids, concept.vectors), concept.prompt_vector, batch_size=10)
    sizes = [len(session.batch())]
    while not session.exhausted:
        session.label(concept.oracle([h.id for h in session.batch()]))
        sizes.append(len(session.train_and_requery()))
    assert sizes == [10, 10, 3, 0]
    assert session.batch() == []
    assert session.train_and_requery() == []  # asking again is harmless


def test_labels_for_items_never_shown_or_out_of_range_are_refused_and_change_nothing(concept_index, concept):
    session = Session(concept_index, concept.prompt_vector, seed=0)
    shown = session.batch()[0].id
    unshown = next(i for i in concept.ids if i not in session.seen)
    for bad, message in [({unshown: 1.0}, "never shown"), ({shown: 2.0}, r"\[-1, 1\]"), ({shown: "yes"}, "number")]:
        with pytest.raises(ValueError, match=message):
            session.label({shown: 0.5, **bad})
        assert session.labels == {}


def test_a_failed_round_keeps_every_label(concept_index, concept, monkeypatch):
    session = Session(concept_index, concept.prompt_vector, seed=0)
    session.label(concept.oracle([h.id for h in session.batch()]))
    before = (session.labels, session.batch(), session.round)

    def unreachable(*args, **kwargs):
        raise ConnectionError("concept_index unreachable")

    monkeypatch.setattr(concept_index, "query", unreachable)
    with pytest.raises(ConnectionError):
        session.train_and_requery()
    assert (session.labels, session.batch(), session.round) == before


def test_history_counts_labels_and_positives_per_round(concept_index, concept):
    session = Session(concept_index, concept.prompt_vector, seed=0)
    run_rounds(session, concept, rounds=3)
    history = session.history
    assert [h.round for h in history] == [1, 2, 3]
    assert [h.shown for h in history] == [10, 20, 30]
    assert all(h.positives + h.negatives == h.labelled for h in history)
    assert history[-1].positives == sum(v > 0 for v in session.labels.values())


def test_bad_prompt_vectors_and_batch_sizes_are_refused(concept_index):
    with pytest.raises(ValueError, match="32 finite numbers"):
        Session(concept_index, np.zeros(16, np.float32))
    with pytest.raises(ValueError, match="batch_size"):
        Session(concept_index, np.ones(32, np.float32), batch_size=0)


def test_label_rounds_record_when_each_label_was_given_and_follow_undo(concept_index, concept):
    session = Session(concept_index, concept.prompt_vector, seed=0)
    first = [h.id for h in session.batch()]
    session.label(concept.oracle(first))
    second = [h.id for h in session.train_and_requery()]
    session.label({**concept.oracle(second), first[0]: 0.0})  # a relabel counts in the round it happened
    assert session.label_rounds == {**dict.fromkeys(first[1:], 1), **dict.fromkeys([*second, first[0]], 2)}
    assert session.label_rounds.keys() == session.labels.keys()
    before_training = session.label_rounds
    third = [h.id for h in session.train_and_requery()]
    session.label(concept.oracle(third))
    assert set(session.label_rounds.values()) == {1, 2, 3}
    session.undo()  # back to before round 2 was trained: the round-3 labels go with it
    assert session.label_rounds == before_training


def test_resume_takes_over_labels_and_trains_the_same_classifier(concept_index, concept):
    first = Session(concept_index, concept.prompt_vector, seed=0)
    run_rounds(first, concept, rounds=3)
    again = Session(concept_index, concept.prompt_vector, seed=0)  # e.g. after the app restarted
    batch = again.resume(first.labels)
    assert again.labels == first.labels and set(first.labels) <= again.seen
    assert not {h.id for h in batch} & set(first.labels)
    np.testing.assert_allclose(again.classifier.weight, first.classifier.weight, atol=1e-4)
    assert again.undo() and again.labels == {}


def test_a_session_trained_round_by_round_equals_one_fitted_once_on_its_labels(concept_index, concept):
    """Each round's fit reuses the last one's (the labels' Gram matrix, warm starts); a resumed session fits its
    labels from nothing. Twenty rounds on, they hold the same classifier and choose the same next batch."""
    first = Session(concept_index, concept.prompt_vector, seed=3)
    run_rounds(first, concept, rounds=20)
    again = Session(concept_index, concept.prompt_vector, seed=3)
    batch = again.resume(first.labels)
    assert len(first.labels) == 200 and again.classifier.last_strength == first.classifier.last_strength
    size = np.abs(first.classifier.weight).max()
    np.testing.assert_allclose(again.classifier.weight, first.classifier.weight, rtol=0, atol=1e-5 * size)
    assert [h.id for h in batch] == [h.id for h in first.batch()]


def test_resume_refuses_unknown_ids_and_bad_scores_and_changes_nothing(concept_index, concept):
    session = Session(concept_index, concept.prompt_vector, seed=0)
    before = (session.batch(), session.labels, session.seen)
    for bad, message in [({"not-an-item": 1.0}, "not in this collection"), ({concept.ids[0]: 3.0}, r"\[-1, 1\]")]:
        with pytest.raises(ValueError, match=message):
            session.resume(bad)
        assert (session.batch(), session.labels, session.seen) == before


def test_the_original_recipe_with_no_labels_leaves_the_classifier_alone(concept_index, concept):
    session = Session(concept_index, concept.prompt_vector, strategy="original")
    before = session.classifier.weight
    session.train_and_requery()
    np.testing.assert_array_equal(session.classifier.weight, before)
    assert session.history[-1].fit.loss == 0.0


# ------------------------------------------------------------------------------------------------ mid-session changes
def label_batch(session: Session, concept) -> None:
    session.label(concept.oracle([h.id for h in session.batch()]))


def test_settings_changed_mid_session_apply_from_the_next_round_and_are_reported(concept_index, concept):
    session = Session(concept_index, concept.prompt_vector, batch_size=10, seed=0)
    label_batch(session, concept)
    labels = session.labels
    changes = session.configure(strategy="top", batch_size=15, prior_strength=3.0)
    assert changes == {"strategy": ("mixed", "top"), "batch_size": (10, 15), "prior_strength": (None, 3.0)}
    assert len(session.batch()) == 10 and session.labels == labels  # the batch on screen and its labels stay
    batch = session.train_and_requery()
    assert len(batch) == 15 and session.classifier.prior_strength == 3.0
    scores = [h.score for h in batch]
    assert scores == sorted(scores, reverse=True)  # "top": the best first
    assert session.configure(strategy="top", batch_size=15, prior_strength=3.0) == {}
    assert session.configure(prior_strength=None) == {"prior_strength": (3.0, None)}  # back to automatic
    assert session.classifier.prior_strength is None


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"strategy": "greedy"}, "unknown strategy 'greedy'"),
        ({"strategy": "original"}, "start a new session"),
        ({"batch_size": 0}, "positive integer"),
        ({"prior_strength": float("nan")}, "positive number"),
        ({"prompt_vector": np.zeros(32, np.float32)}, "not all 0"),
    ],
    ids=["unknown strategy", "to the original recipe", "batch size 0", "NaN strength", "zero prompt"],
)
def test_a_bad_setting_changes_nothing(concept_index, concept, options, message):
    session = Session(concept_index, concept.prompt_vector, seed=0)
    with pytest.raises(ValueError, match=message):
        session.configure(**{"prior_strength": 2.0, **options})
    assert (session.strategy, session.batch_size, session.classifier.prior_strength) == ("mixed", 10, None)


def test_a_new_negative_prompt_turns_the_prior_and_keeps_its_scale(concept_index, concept):
    session = Session(concept_index, concept.prompt_vector, seed=0)
    scale = float(session.classifier.prior_weight.norm())
    turned = concept.prompt_vector - 0.5 * concept.vectors[0]
    assert set(session.configure(prompt_vector=turned, negative_prompt="stripes")) == {"prompt", "negative_prompt"}
    assert session.classifier.negative_prompt == "stripes"
    prior = session.classifier.prior_weight.numpy()
    np.testing.assert_allclose(prior, turned / np.linalg.norm(turned) * scale, rtol=1e-5)
    session.train_and_requery()
    np.testing.assert_allclose(session.classifier.weight, prior, rtol=1e-5)  # no labels: the classifier is the prior


def test_more_like_this_fills_half_the_next_batch_with_the_nearest_unseen_items(concept_index, concept):
    session = Session(concept_index, concept.prompt_vector, batch_size=10, seed=0)
    shown = {h.id for h in session.batch()}
    chosen = session.batch()[3].id
    session.label({chosen: 1.0})
    vector = concept_index.fetch([chosen])[0]
    nearest = [h.id for h in concept_index.query(vector, 30, exclude=shown)][:5]
    batch = session.train_and_requery(more_like=[chosen])
    assert [h.id for h in batch[:5]] == nearest and len(batch) == 10
    assert len({h.id for h in batch}) == 10 and not {h.id for h in batch} & shown
    np.testing.assert_allclose([h.score for h in batch[:5]], session.scores(concept_index.fetch(nearest)), rtol=1e-5)


def test_more_like_an_item_never_shown_is_refused_before_anything_changes(concept_index, concept):
    session = Session(concept_index, concept.prompt_vector, seed=0)
    before = (session.batch(), session.round, session.seen)
    with pytest.raises(ValueError, match="never shown"):
        session.train_and_requery(more_like=["no-such-item"])
    assert (session.batch(), session.round, session.seen) == before and not session.can_undo


def test_an_item_picked_from_the_collection_joins_the_batch_and_can_be_labelled(concept_index, concept):
    session = Session(concept_index, concept.prompt_vector, batch_size=5, seed=0)
    picked = next(i for i in reversed(concept.ids) if i not in session.seen)
    batch = session.add_to_batch([picked, picked])
    assert [h.id for h in batch][-1] == picked and len(batch) == 6
    assert batch[-1].score == pytest.approx(float(session.scores(concept_index.fetch([picked]))[0]))
    session.label({picked: 1.0})
    assert picked not in {h.id for h in session.train_and_requery()} and session.labels[picked] == 1.0
    with pytest.raises(KeyError):
        session.add_to_batch(["no-such-item"])


def test_a_resume_that_is_not_undoable_is_where_undo_stops(concept_index, concept):
    earlier = Session(concept_index, concept.prompt_vector, seed=0)
    label_batch(earlier, concept)
    session = Session(concept_index, concept.prompt_vector, seed=0)
    session.resume(earlier.labels, undoable=False)
    assert session.labels == earlier.labels and not session.can_undo
    label_batch(session, concept)
    session.train_and_requery()
    session.undo()
    assert session.labels.keys() >= earlier.labels.keys() and not session.can_undo


# ------------------------------------------------------------------------------------------------- bad arguments
class NoQueries(LocalIndex):
    """An index that fails any search: proves a refused Session did no work before refusing."""

    def query(self, *args, **kwargs):
        raise AssertionError("the session searched before checking its arguments")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"prior_strength": 0}, "greater than 0; got 0"),
        ({"prior_strength": -10}, "greater than 0; got -10"),
        ({"prior_strength": float("nan")}, "finite number; got nan"),
        ({"prior_strength": float("inf")}, "finite number; got inf"),
        ({"prior_strength": "ten"}, "must be a number; got 'ten'"),
        ({"prior_strength": 1e300}, r"within \[-inf, 1e\+06\]"),
        ({"batch_size": True}, "batch_size must be a whole number from 1 to 1,000; got True"),
        ({"batch_size": 10.0}, "batch_size must be a whole number"),
        ({"batch_size": 0}, "batch_size must be from 1 to 1,000; got 0"),
        ({"batch_size": 10**9}, "got 1,000,000,000"),
        ({"prompt_vector": np.zeros(32, np.float32)}, "prompt vector is zero"),
        ({"prompt_vector": np.full(32, 1e-9, np.float32)}, "prompt vector is zero"),
        ({"strategy": ["top"]}, r"unknown strategy \['top'\]"),
    ],
    ids=lambda v: str(v)[:40],
)
def test_a_session_refuses_bad_arguments_before_any_work(concept, options, message):
    index = NoQueries.from_vectors(concept.ids, concept.vectors)
    with pytest.raises(ValueError, match=message):
        Session(index, **{"prompt_vector": concept.prompt_vector, **options})


def test_a_session_keeps_its_own_unit_prompt_vector_and_negative_prompt(concept_index, concept):
    session = Session(concept_index, 3 * concept.prompt_vector, prompt="it", negative_prompt="not that")
    np.testing.assert_allclose(session.prompt_vector, concept.prompt_vector / np.linalg.norm(concept.prompt_vector))
    assert (session.prompt, session.negative_prompt) == ("it", "not that")
    assert not session.prompt_vector.flags.writeable


# ------------------------------------------------------------------------------------------------- saved sessions
@pytest.fixture
def labelled(concept_index, concept) -> Session:
    """Two rounds in, with a negative prompt and non-default settings: what a browser would have saved."""
    session = Session(
        concept_index,
        concept.prompt_vector,
        strategy="boundary",
        batch_size=7,
        prior_strength=4.5,
        prompt="the concept",
        negative_prompt="not this",
        base_model="some/clip",
        collection="planted (train)",
    )
    run_rounds(session, concept, rounds=2)
    return session


def saved_json(session: Session) -> dict:
    return json.loads(json.dumps(session.to_saved()))  # exactly what comes back from the browser


def test_a_saved_session_comes_back_the_same_through_json(labelled, concept_index):
    again = Session.from_saved(
        concept_index, saved_json(labelled), base_model="some/clip", collection="planted (train)"
    )
    assert again.labels == labelled.labels and again.label_rounds == labelled.label_rounds == {
        **dict.fromkeys([i for i, r in labelled.label_rounds.items() if r == 1], 1),
        **dict.fromkeys([i for i, r in labelled.label_rounds.items() if r == 2], 2),
    }
    assert again.round == labelled.round == 3 and not again.can_undo  # the round count carries on; Undo stops here
    assert set(labelled.labels) <= again.seen
    assert (again.strategy, again.batch_size, again.prompt, again.negative_prompt) == (
        "boundary",
        7,
        "the concept",
        "not this",
    )
    assert again.classifier.prior_strength == 4.5 and again.classifier.base_model == "some/clip"
    np.testing.assert_allclose(again.prompt_vector, labelled.prompt_vector, atol=1e-7)
    np.testing.assert_allclose(again.classifier.weight, labelled.classifier.weight, atol=1e-4)
    assert again.to_saved()["labels"] == labelled.to_saved()["labels"]


def test_a_saved_session_keeps_its_quality_checks_held_out_and_its_estimate(labelled, concept, concept_index):
    checked = [h.id for h in labelled.audit(20)]
    labelled.label(concept.oracle(checked))
    pending = [h.id for h in labelled.audit(5)]  # a second check drawn, not labelled yet, when the app restarted
    again = Session.from_saved(concept_index, saved_json(labelled), base_model="some/clip")
    assert again.audit_labels == labelled.audit_labels and again.audit_weights == labelled.audit_weights
    assert [h.id for h in again.pending_audit()] == pending  # the check on screen comes back as a check
    assert not set(again.labels) & set(again.audit_labels)
    before, after = labelled.quality(), again.quality()
    assert after.method == "audit" and (after.audited, after.trained_on) == (before.audited, before.trained_on) == (
        20,
        len(labelled.labels),
    )
    for metric in ("ap", "precision", "recall", "prevalence"):  # the same classifier, to within its refit
        assert getattr(after, metric) == pytest.approx(getattr(before, metric), abs=0.02), metric
    again.label(concept.oracle(pending))
    assert set(again.audit_labels) == set(checked + pending) and not set(pending) & set(again.labels)
    for _ in range(3):  # held out still: never shown for training, never trained on
        assert not set(again.audit_weights) & {h.id for h in again.batch()}
        again.label(concept.oracle([h.id for h in again.batch()]))
        again.train_and_requery()
    assert again.history[-1].fit.labels_used == sum(v != 0 for v in again.labels.values())


def test_a_saved_session_with_only_a_check_shows_no_checked_item_for_training(concept_index, concept):
    session = Session(concept_index, concept.prompt_vector, prompt="p")
    audited = [h.id for h in session.audit(20)]
    session.label(concept.oracle(audited))
    again = Session.from_saved(concept_index, saved_json(session))
    assert again.labels == {} and again.audit_labels == session.audit_labels and again.round == 1
    assert len(again.batch()) == session.batch_size and not set(audited) & {h.id for h in again.batch()}


def test_a_saved_session_of_version_1_is_still_read(labelled, concept_index):
    new_fields = ("rounds", "label_rounds", "audit", "audit_labels")
    old = {k: v for k, v in saved_json(labelled).items() if k not in new_fields}
    again = Session.from_saved(concept_index, {**old, "version": 1}, base_model="some/clip")
    assert again.labels == labelled.labels and set(again.label_rounds.values()) == {0}  # rounds unknown then
    assert again.round == 1 and again.audit_labels == {} and again.strategy == "boundary"


def test_labels_given_on_screen_before_saving_are_trained_on_and_the_next_round_follows(labelled, concept_index):
    on_screen = [h.id for h in labelled.batch()]
    labelled.label(dict.fromkeys(on_screen, -1.0))  # round 3, not trained yet: the saved copy has them
    again = Session.from_saved(concept_index, saved_json(labelled), base_model="some/clip")
    assert {again.label_rounds[i] for i in on_screen} == {3}
    assert again.round == 4 and again.rounds_trained == 3  # taking over trained on them: round 3 is done


def test_a_saved_session_without_labels_starts_fresh(concept_index, concept):
    fresh = Session(concept_index, concept.prompt_vector, prompt="p")
    again = Session.from_saved(concept_index, saved_json(fresh))
    assert again.labels == {} and [h.id for h in again.batch()] == [h.id for h in fresh.batch()]


def _with(**changes):
    return lambda saved: {**saved, **changes}


def _without(key):
    return lambda saved: {k: v for k, v in saved.items() if k != key}


def _labels(change):
    return lambda saved: {**saved, "labels": change(saved["labels"])}


SAVED_REFUSALS = {
    "a list, not an object": (lambda saved: [saved], "a saved session is a JSON object"),
    "a field missing": (_without("prompt_vector"), r"missing \['prompt_vector'\]"),
    "an unknown field": (_with(extra=1), r"unknown \['extra'\]"),
    "another version": (_with(version=3), "version 3; this app reads 1 and 2"),
    "a version as text": (_with(version="2"), "version '2'; this app reads 1 and 2"),
    "a version as a list": (_with(version=[2]), r"version \[2\]; this app reads"),
    "version 1 with version 2's fields": (
        _with(version=1),
        r"version 1\) does not .* unknown \['audit', 'audit_labels'",
    ),
    "batch size 10^9": (_with(batch_size=10**9), "batch size must be from 1 to 20; got 1,000,000,000"),
    "batch size as text": (_with(batch_size="10"), "batch size must be a whole number from 1 to 20; got '10'"),
    "batch size true": (_with(batch_size=True), "got True"),
    "prior strength NaN": (_with(prior_strength=float("nan")), "finite number; got nan"),
    "prior strength 0": (_with(prior_strength=0), "greater than 0"),
    "prior strength 'ten'": (_with(prior_strength="ten"), "must be a number; got 'ten'"),
    "prompt vector too short": (
        lambda saved: {**saved, "prompt_vector": saved["prompt_vector"][:5]},
        "list of 32 numbers; got 5 values",
    ),
    "prompt vector of text": (_with(prompt_vector=["1"] * 32), "prompt vector value 0 must be a number"),
    "prompt vector of zeros": (_with(prompt_vector=[0.0] * 32), "prompt vector is zero"),
    "prompt vector as text": (_with(prompt_vector="0.1," * 32), "list of 32 numbers; got '0.1,0.1,"),
    "a NUL in the prompt": (_with(prompt="dogs\x00"), r"control character \(U\+0000\)"),
    "a 10 MB prompt": (_with(prompt="x" * 10_000_000), "10,000,000 characters long"),
    "an unknown strategy": (_with(strategy="smartest"), "unknown strategy 'smartest'"),
    "labels as a list": (lambda saved: {**saved, "labels": list(saved["labels"])}, "labels must be a JSON object"),
    "a label of 3": (_labels(lambda labels: {**labels, next(iter(labels)): 3}), r"within \[-1, 1\]; got 3"),
    "a label as text": (_labels(lambda labels: {**labels, next(iter(labels)): "yes"}), "must be a number; got 'yes'"),
    "a label for an unknown id": (
        lambda saved: {
            **saved,
            "labels": {**saved["labels"], "no-such-item": 1.0},
            "label_rounds": {**saved["label_rounds"], "no-such-item": 1},
        },
        "not in this collection",
    ),
    "more labels than items": (
        _labels(lambda labels: {f"x{i}": 1.0 for i in range(3001)}),
        "name 3,001 items, but the collection holds 3,000",
    ),
    "an id of 2,000 characters": (_labels(lambda labels: {"x" * 2000: 1.0}), "an id that is not a collection id"),
    "rounds as text": (_with(rounds="2"), "number of rounds must be a whole number"),
    "rounds of 10^9": (_with(rounds=10**9), "number of rounds must be from 0 to 1,000,000"),
    "label rounds for other items": (
        lambda saved: {**saved, "label_rounds": {}},
        "label rounds must name exactly the labelled items",
    ),
    "a label round beyond the rounds": (
        lambda saved: {**saved, "label_rounds": dict.fromkeys(saved["label_rounds"], 9)},
        "must be from 0 to 3; got 9",
    ),
    "audit as a list": (_with(audit=["item-002999"]), "audit must be a JSON object of id: weight"),
    "an audit weight of 0": (_with(audit={"item-002999": 0}), "audit weight of 'item-002999' must be greater than 0"),
    "an audit weight beyond the collection": (_with(audit={"item-002999": 1e9}), r"within \[-inf, 3000\]"),
    "an audit of an unknown item": (_with(audit={"no-such-item": 5.0}), "not in this collection"),
    "an audit label of 2": (
        _with(audit={"item-002999": 5.0}, audit_labels={"item-002999": 2}),
        r"audit label of 'item-002999' must be within \[-1, 1\]",
    ),
    "an audit label for an item never audited": (
        _with(audit={}, audit_labels={"item-002999": 1.0}),
        "audit labels name items that were never audited",
    ),
    "an audited item trained on": (
        lambda saved: {**saved, "audit": {next(iter(saved["labels"])): 5.0}},
        "trains on audited items, which must stay held out",
    ),
    "another model": (_with(base_model="other/clip"), "for base_model 'other/clip', but this app runs 'some/clip'"),
    "another collection": (_with(collection="cats (train)"), "for collection 'cats \\(train\\)'"),
}


@pytest.mark.parametrize("case", list(SAVED_REFUSALS))
def test_a_bad_saved_session_is_refused_naming_what_is_wrong(labelled, concept, case):
    change, message = SAVED_REFUSALS[case]
    index = NoQueries.from_vectors(concept.ids, concept.vectors)
    bad = change(saved_json(labelled))
    with pytest.raises(ValueError, match=message):
        Session.from_saved(index, bad, base_model="some/clip", collection="planted (train)", max_batch_size=20)
