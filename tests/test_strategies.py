"""Selection strategies: plain functions from the pool's probabilities to the positions shown next."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.index.local import LocalIndex
from trainer.session import Session
from trainer.strategies import POOL_MAX, POOL_MIN, POOL_SHARE, STRATEGIES, get_strategy, mixed, pool_size_for, top_slots


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


def test_the_default_pool_is_an_eighth_of_the_collection_within_its_bounds():
    assert [pool_size_for(n) for n in (500, 8_000, 16_000, 40_000, 1_000_000)] == [1_000, 1_000, 2_000, 5_000, 5_000]
    assert (POOL_MIN, POOL_SHARE, POOL_MAX) == (1_000, 8, 5_000)


class CountingIndex(LocalIndex):
    """A local index that remembers the ``top_k`` of every search."""

    asked: list[int]

    def query(self, vector, top_k, exclude=None):
        self.asked.append(top_k)
        return super().query(vector, top_k, exclude=exclude)


def test_a_session_searches_a_pool_sized_to_its_collection_unless_told_otherwise():
    # Before: always 1,000, which on the clustered concept at 40,000 items (one concept cluster 2,700 items) held
    # nothing but matches, and mixed needed 221 labels to AP 0.9 instead of 114 (benchmarks/RESULTS-learning.md).
    vectors = np.random.default_rng(0).normal(size=(16_000, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = [f"item-{i:05d}" for i in range(len(vectors))]
    for pool_size, expected in ((None, 2_000), (1_000, 1_000)):
        index = CountingIndex.from_vectors(ids, vectors)
        index.asked = []
        session = Session(index, vectors[0], seed=0, pool_size=pool_size)
        session.label({h.id: 1.0 for h in session.batch()})
        session.train_and_requery()
        assert session.pool_size == expected
        assert index.asked == [expected, expected]
