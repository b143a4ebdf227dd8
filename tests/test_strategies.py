"""Selection strategies: plain functions from the pool's probabilities to the positions shown next."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.strategies import STRATEGIES, get_strategy, mixed, top_slots


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_every_strategy_returns_k_distinct_positions_within_the_pool(name):
    proba = np.linspace(0.99, 0.01, 50)
    chosen = get_strategy(name)(proba, 10, np.random.default_rng(0))
    assert len(chosen) == 10 and len(set(chosen.tolist())) == 10
    assert all(0 <= p < 50 for p in chosen)
    assert len(get_strategy(name)(proba[:3], 10, np.random.default_rng(0))) == 3


def test_boundary_picks_the_least_certain_and_top_the_best():
    proba = np.array([0.99, 0.9, 0.52, 0.3, 0.49, 0.01])
    assert sorted(get_strategy("boundary")(proba, 2, np.random.default_rng(0)).tolist()) == [2, 4]
    assert get_strategy("top")(proba, 2, np.random.default_rng(0)).tolist() == [0, 1]
    # mixed: the best one, then the least certain one (0.49 is nearer 0.5 than 0.52)
    assert sorted(get_strategy("mixed")(proba, 2, np.random.default_rng(0)).tolist()) == [0, 4]


def test_mixed_gives_the_top_as_many_slots_as_asked_and_the_rest_to_the_boundary():
    proba = np.array([0.99, 0.98, 0.97, 0.6, 0.52, 0.49, 0.45, 0.2, 0.1, 0.01])
    rng = np.random.default_rng(0)
    assert sorted(mixed(proba, 4, rng).tolist()) == [0, 1, 4, 5]  # half: the two best, the two nearest 0.5
    assert sorted(mixed(proba, 4, rng, top_count=1).tolist()) == [0, 4, 5, 6]
    assert sorted(mixed(proba, 4, rng, top_count=0).tolist()) == [3, 4, 5, 6]
    assert sorted(mixed(proba, 3, rng, top_count=9).tolist()) == [0, 1, 2]  # never more than k


def test_top_slots_keep_half_until_every_recent_top_pick_was_a_match():
    assert top_slots(10, []) == 5  # nothing labelled yet: half
    assert top_slots(9, []) == 5 and top_slots(8, []) == 4
    assert top_slots(10, [True] * 5) == 1  # all matches: one slot keeps the best candidate
    assert top_slots(10, [True, True, False, True]) == 5  # one top pick that was not a match: half again
    assert top_slots(10, [False] * 5) == 5
    assert top_slots(1, [True]) == 1 and top_slots(0, [True]) == 0
