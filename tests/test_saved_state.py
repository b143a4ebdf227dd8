"""A session's saved copy (trainer/saved_state.py): written as plain JSON, read back as untrusted input, rebuilt."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.helpers.planted import NoQueries, run_rounds
from trainer.session import Session


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
