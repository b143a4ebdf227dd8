"""The label-space solver (trainer/newton.py): free directions solved through the factor of ``B`` are the fit on the
Gram matrix with them added, from any start; their leave-one-out logits are that fit's."""

from __future__ import annotations

import numpy as np
import pytest

from trainer import newton
from trainer.classifier import label_targets
from trainer.logistic import sigmoid


def problem(concept, labels: int, seed: int, strength: float = 3.0):
    """(G, z0, t, c, Q): ``labels`` rows of the concept with oracle labels of random confidence, ``G`` at
    ``strength`` as trainer/map_fit.py scales it, and four random free directions of the same size."""
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(concept.ids), labels, replace=False)
    t, c = label_targets((np.where(concept.truth[rows], 1.0, -1.0) * rng.uniform(0.3, 1, labels)).astype(np.float32))
    x, w0 = concept.vectors[rows].astype(np.float64), concept.prompt_vector * 30.0
    gram = (x @ x.T + 100) * float(w0 @ w0) / (2 * strength)
    free = x @ np.linalg.qr(rng.normal(size=(x.shape[1], 4)))[0] * np.sqrt(30 * float(w0 @ w0) / (2 * strength))
    return gram, x @ w0 - 20.0, t.astype(np.float64), c.astype(np.float64), free


def objective(gram, free, z0, t, c, optimum: newton.Optimum) -> float:
    z = z0 + gram @ optimum.g + free @ optimum.free
    return float(c @ (np.logaddexp(0, z) - t * z) + optimum.g @ gram @ optimum.g / 2 + optimum.free @ optimum.free / 2)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_free_directions_are_the_fit_on_the_gram_matrix_with_them_added(concept, seed):
    """The optimum's conditions hold (``g = -r``, as ``G (r + g) = 0`` with ``G`` regular; ``a = -Q^T r``), and its
    logits and value are those of
    Newton on ``G + Q Q^T`` alone, whether it starts from zero or from the optimum without the free directions."""
    gram, z0, t, c, free = problem(concept, 60 + 30 * seed, seed)
    alone = newton.solve(gram + free @ free.T, z0, t, c, np.zeros(len(t)), 50)
    plain = newton.solve(gram, z0, t, c, np.zeros(len(t)), 50)
    for start in (np.zeros(len(t)), plain):
        freer = newton.solve(gram, z0, t, c, start, 50, free=free)
        residual = c * (sigmoid(freer.z) - t)
        assert freer.factor is not None and freer.free.shape == (4,)
        assert np.abs(residual + freer.g).max() < 1e-6 * np.abs(residual).max()
        assert np.abs(free.T @ residual + freer.free).max() < 1e-5 * (1 + np.abs(freer.free).max())
        np.testing.assert_allclose(freer.z, alone.z, rtol=0, atol=1e-4)  # Newton stops within ~1e-5 on flat labels
        assert freer.value == pytest.approx(alone.value, rel=1e-10)
        assert freer.value == pytest.approx(objective(gram, free, z0, t, c, freer), rel=1e-12)
    assert np.abs(plain.z - alone.z).max() > 0.1  # the free directions matter here


def test_a_start_at_the_optimum_with_no_more_freedom_is_the_answer_with_its_own_factor(concept, monkeypatch):
    """From an optimum whose free directions add nothing (zero columns), Newton's first test finds it optimal, with
    the factor it was given: no factorisation at all. That factor serves the first step of a freer fit."""
    gram, z0, t, c, _ = problem(concept, 80, seed=3)
    plain = newton.solve(gram, z0, t, c, np.zeros(len(t)), 50)
    factorisations = []
    real = newton.dpotrf
    monkeypatch.setattr(newton, "dpotrf", lambda *a, **k: factorisations.append(1) or real(*a, **k))
    again = newton.solve(gram, z0, t, c, plain, 50, free=np.zeros((len(t), 3)))
    assert not factorisations
    assert again.factor is plain.factor and np.array_equal(again.free, np.zeros(3))
    np.testing.assert_allclose(again.z, plain.z, rtol=0, atol=1e-12)


@pytest.mark.parametrize("seed", [4, 5])
def test_held_out_logits_with_free_directions_are_those_of_the_gram_matrix_with_them(concept, seed):
    """Woodbury on the factor of ``B`` gives the closed form of ``G + Q Q^T``'s own factorisation, and each held-out
    logit is near the logit of a refit without that label (the closed form is exact for a quadratic loss only)."""
    gram, z0, t, c, free = problem(concept, 50, seed)
    freer = newton.solve(gram, z0, t, c, np.zeros(len(t)), 50, free=free)
    held_out = newton.held_out_logits(gram, t, c, freer.z, freer.factor, free)
    whole = gram + free @ free.T
    np.testing.assert_allclose(held_out, newton.held_out_logits(whole, t, c, freer.z, None), rtol=1e-9, atol=1e-9)
    refits = np.empty(len(t))
    for i in range(len(t)):
        left = np.arange(len(t)) != i
        without = newton.solve(
            gram[np.ix_(left, left)], z0[left], t[left], c[left], np.zeros(len(t) - 1), 50, free=free[left]
        )
        # label i's logit under the fit without it: z0 + G[i, left] g + Q[i] a
        refits[i] = z0[i] + gram[i, left] @ without.g + free[i] @ without.free
    gap = np.abs(held_out - refits)
    assert np.median(gap) < 0.05 and np.abs(held_out - freer.z).max() > 0.1  # the closed form moves them, rightly
