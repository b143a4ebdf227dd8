"""Undo's checkpoints: every state comes back exactly, and the older ones cost only what changed."""

from __future__ import annotations

import tracemalloc

import pytest

from trainer.checkpoints import Checkpoints


def _states(rounds: int, per_round: int = 50):
    """States shaped like a session's: labels that grow at their end and are sometimes relabelled, the newest labels
    (emptied every round), the seen items (a set) and a value kept whole."""
    labels: dict[str, float] = {}
    seen: set[str] = set()
    for r in range(rounds):
        newest = {f"item{r * per_round + i}": (-1.0) ** i for i in range(per_round)}
        if r:
            newest["item0"] = float(r % 2)  # a relabel: the value changes, its place in the dict does not
        labels.update(newest)
        seen.update(newest)
        yield {"labels": dict(labels), "newest": newest, "seen": set(seen), "round": [r]}


def test_every_checkpoint_comes_back_exactly_newest_first_with_its_key_order():
    checkpoints = Checkpoints(incremental=("labels", "newest", "seen"))
    states = list(_states(12))
    for state in states:
        checkpoints.push({k: v.copy() for k, v in state.items()})
    assert len(checkpoints) == 12
    for want in reversed(states):
        got = checkpoints.pop()
        assert got == want
        assert list(got["labels"]) == list(want["labels"]) and list(got["newest"]) == list(want["newest"])
    assert len(checkpoints) == 0
    with pytest.raises(IndexError, match="no checkpoint"):
        checkpoints.pop()


def test_a_state_handed_back_can_be_changed_without_touching_the_older_ones():
    checkpoints = Checkpoints(incremental=("labels", "seen"))
    checkpoints.push({"labels": {"a": 1.0}, "seen": {"a"}})
    checkpoints.push({"labels": {"a": 1.0, "b": -1.0}, "seen": {"a", "b"}})
    live = checkpoints.pop()
    live["labels"].update(a=-1.0, c=1.0)  # the session goes on from the state undo gave back
    live["seen"].add("c")
    checkpoints.push({"labels": dict(live["labels"]), "seen": set(live["seen"])})
    assert checkpoints.pop() == {"labels": {"a": -1.0, "b": -1.0, "c": 1.0}, "seen": {"a", "b", "c"}}
    assert checkpoints.pop() == {"labels": {"a": 1.0}, "seen": {"a"}}


def test_older_checkpoints_hold_what_each_round_changed_not_the_whole_state():
    """60 rounds of 50 labels: whole checkpoints would hold 30 times the last state; these hold about two."""
    states = list(_states(60))
    tracemalloc.start()
    try:
        checkpoints = Checkpoints(incremental=("labels", "newest", "seen"))
        for state in states:
            checkpoints.push({k: v.copy() for k, v in state.items()})
        held, _ = tracemalloc.get_traced_memory()
        last = {k: v.copy() for k, v in states[-1].items()}
        one, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert last == states[-1]
    state = one - held
    assert held < 4 * state, f"the checkpoints hold {held / state:.1f} states"  # 2.3 here; whole copies: 30
