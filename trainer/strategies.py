"""How the next batch is chosen: plain functions with one signature, in the spirit of modAL.

Every strategy receives the candidate pool as the vector search returned it (best first) with the classifier's
probability for each candidate, and returns the positions of the ``k`` candidates to show next:

    strategy(proba: np.ndarray (M,), k: int, rng: np.random.Generator) -> np.ndarray of k distinct positions

The pool never contains an item the session has shown before, so no strategy has to think about that.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["STRATEGIES", "Strategy", "boundary", "get_strategy", "mixed", "random", "top"]

Strategy = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]


def top(proba: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """The highest-ranked candidates: what the original article showed. Finds positives fast, learns little."""
    return np.arange(min(k, len(proba)))


def boundary(proba: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """The candidates the classifier is least sure about (probability nearest 0.5): uncertainty sampling."""
    k = min(k, len(proba))
    return np.argsort(np.abs(np.asarray(proba) - 0.5), kind="stable")[:k]


def mixed(proba: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Half top, half boundary: a person keeps seeing positives while the classifier learns its edges."""
    k = min(k, len(proba))
    chosen = list(top(proba, (k + 1) // 2, rng))
    for position in boundary(proba, len(proba), rng):
        if len(chosen) == k:
            break
        if position not in chosen:
            chosen.append(int(position))
    return np.asarray(chosen, dtype=np.int64)


def random(proba: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Uniform over the pool: the baseline every other strategy has to beat."""
    return rng.choice(len(proba), size=min(k, len(proba)), replace=False)


STRATEGIES: dict[str, Strategy] = {"top": top, "boundary": boundary, "mixed": mixed, "random": random}


def get_strategy(name: str) -> Strategy:
    try:
        return STRATEGIES[name]
    except KeyError:
        raise ValueError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}") from None
