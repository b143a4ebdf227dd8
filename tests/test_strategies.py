"""Selection strategies: plain functions from the pool's probabilities to the positions shown next."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.strategies import STRATEGIES, get_strategy


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
