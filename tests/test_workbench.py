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
