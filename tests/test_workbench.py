"""Workbench: one person's desk, where Undo takes back a round and then the start that replaced a session."""

from __future__ import annotations

import pytest

from trainer.session import Session
from trainer.workbench import Workbench


@pytest.fixture
def new_session(concept_index, concept):
    return lambda: Session(concept_index, concept.prompt_vector, batch_size=5, seed=0)


def trained(session: Session, concept) -> Session:
    session.label(concept.oracle([h.id for h in session.batch()]))
    session.train_and_requery()
    return session


def test_undo_takes_back_the_rounds_then_the_start_that_replaced_a_session(new_session, concept):
    bench = Workbench()
    first = trained(new_session(), concept)
    bench.start(first)
    labels = first.labels
    second = new_session()
    bench.start(second, query="a red circle")
    assert bench.session is second and bench.undo_kind == "start"
    trained(second, concept)
    assert bench.undo() == "round" and bench.session is second
    assert bench.undo() == "start" and bench.session is first and bench.session.labels == labels
    assert bench.query is None  # the first was started without saying from what
    assert bench.undo() == "round"  # first's own round
    with pytest.raises(ValueError, match="nothing to undo"):
        bench.undo()


def test_a_session_without_any_work_is_not_kept_for_undo(new_session):
    bench = Workbench()
    bench.start(new_session())
    bench.start(new_session())
    assert bench.undo_kind is None


def test_a_session_with_only_quality_check_labels_is_kept_and_its_checks_come_back(new_session, concept):
    bench = Workbench()
    checked = new_session()
    checked.label(concept.oracle([h.id for h in checked.audit(20)]))  # checked before any training
    bench.start(checked)
    bench.start(new_session())  # Start over: a new session, with no checks of its own
    assert bench.session.audit_labels == {} and bench.undo_kind == "start"
    assert bench.undo() == "start" and bench.session is checked and len(bench.session.audit_labels) == 20
    assert bench.session.quality().method == "audit"


def test_the_serial_moves_whenever_a_different_session_is_current(new_session, concept):
    bench = Workbench()
    bench.start(trained(new_session(), concept))
    serials = [bench.serial]
    bench.start(new_session())
    serials.append(bench.serial)
    bench.undo()
    serials.append(bench.serial)
    assert serials == sorted(set(serials))


def test_only_the_last_few_replaced_sessions_are_kept(new_session, concept):
    bench = Workbench()
    for _ in range(8):
        bench.start(trained(new_session(), concept))
    undone = 0
    while bench.undo_kind is not None:
        undone += bench.undo() == "start"
    assert undone == 5


def test_settings_apply_to_the_current_session_and_a_new_negative_prompt_turns_its_prior(new_session, concept):
    bench = Workbench()
    asked: list[tuple[object, str]] = []

    def prior_for(query, negative):
        asked.append((query, negative))
        return -concept.prompt_vector  # any other direction: the prior turns to it

    with pytest.raises(ValueError, match="no session"):
        bench.configure(prior_for, negative_prompt="", strategy="mixed", batch_size=5, prior_strength=10.0)
    bench.start(trained(new_session(), concept), "a concept")
    labels = dict(bench.session.labels)
    changes = bench.configure(
        prior_for, negative_prompt=" not this ", strategy="top", batch_size=7, prior_strength=10.0
    )
    assert changes["strategy"] == ("mixed", "top") and changes["batch_size"] == (5, 7)
    assert changes["negative_prompt"] == ("", "not this") and asked == [("a concept", "not this")]
    assert bench.session.labels == labels  # nothing labelled is lost
    assert (
        bench.configure(prior_for, negative_prompt="not this", strategy="top", batch_size=7, prior_strength=10.0) == {}
    )
    bench.start(trained(new_session(), concept), None)  # a loaded classifier: what it started from is unknown
    with pytest.raises(ValueError, match="negative prompt cannot change"):
        bench.configure(prior_for, negative_prompt="other", strategy="top", batch_size=5, prior_strength=10.0)
    assert bench.session.strategy == "mixed"  # a refused change changes nothing
