"""SessionRecord: what a session hands to the sharing layer, a frozen snapshot that later rounds leave alone."""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import pytest

from tests.helpers.planted import run_rounds
from trainer.classifier import LinearProbe
from trainer.export import export_classifier
from trainer.record import SessionRecord, Shareable
from trainer.session import Session

CLIP = "openai/clip-vit-base-patch32"


@pytest.fixture
def session(concept_index, concept):
    session = Session(
        concept_index, concept.prompt_vector, prompt="red circles", negative_prompt="squares", base_model=CLIP
    )
    run_rounds(session, concept, rounds=2)
    batch = [h.id for h in session.batch()]
    session.label({batch[0]: 1.0})  # given in round 3, not trained on yet
    return session


def test_a_record_carries_the_sessions_shareable_facts(session):
    record = session.record()
    assert isinstance(session, Shareable)
    assert record.labels == session.labels and record.label_rounds == session.label_rounds
    assert list(record.history) == session.history and [h.round for h in record.history] == [1, 2]
    assert record.strategy == "mixed" and record.audit_labels == {}
    assert record.trained_rounds == 2  # round 3 is on screen, with one label not trained on yet
    assert record.quality is not None and record.quality.optimistic  # no audit yet: cross-validated
    assert (record.classifier.prompt, record.classifier.negative_prompt) == ("red circles", "squares")
    assert np.array_equal(record.classifier.weight, session.classifier.weight)


def test_a_record_is_a_snapshot_that_later_rounds_leave_alone(session, concept):
    record = session.record()
    labels, weight = dict(record.labels), record.classifier.weight.copy()
    run_rounds(session, concept, rounds=1)
    assert len(session.labels) > len(labels) and not np.array_equal(session.classifier.weight, weight)
    assert dict(record.labels) == labels and len(record.history) == 2
    assert np.array_equal(record.classifier.weight, weight)
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.strategy = "top"  # type: ignore[misc]


def test_exporting_a_session_or_its_record_writes_the_same_files(session, tmp_path):
    def digest(folder):
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}

    assert digest(export_classifier(session, tmp_path / "a")) == digest(
        export_classifier(session.record(), tmp_path / "b")
    )
    with pytest.raises(TypeError, match="labels come from the Session"):
        export_classifier(session.record(), tmp_path / "c", labels={"x": 1.0})


def test_a_bare_probe_becomes_a_record_of_what_is_known(concept):
    probe = LinearProbe.from_prompt(concept.prompt_vector, scale=5.0, bias=-1.0, base_model=CLIP)
    record = SessionRecord.of_probe(probe, labels={"a": 1.0}, strategy="top")
    assert (dict(record.labels), dict(record.label_rounds), record.history, record.quality) == (
        {"a": 1.0},
        {},
        (),
        None,
    )
    assert record.strategy == "top" and record.classifier is not probe and record.trained_rounds == 0
    assert np.array_equal(record.classifier.weight, probe.weight)
