"""The logistic function and its inverse (trainer/logistic.py): exact where it matters, no overflow at the extremes."""

from __future__ import annotations

import numpy as np

from trainer.logistic import logit, sigmoid


def test_sigmoid_matches_the_definition_and_never_overflows():
    z = np.array([-1e4, -50.0, -3.0, 0.0, 2.5, 50.0, 1e4])
    with np.errstate(over="raise"):
        p = sigmoid(z)
    # The tanh form is exact to float64's absolute precision; far in the negative tail it rounds to 0, which is
    # what a probability of 1e-22 is worth here.
    assert np.allclose(p[1:-1], 1 / (1 + np.exp(-z[1:-1])), rtol=0, atol=1e-15)
    assert p[0] == 0.0 and p[-1] == 1.0 and p[3] == 0.5


def test_sigmoid_keeps_float32_as_float32():
    assert sigmoid(np.zeros(3, dtype=np.float32)).dtype == np.float32
    assert sigmoid(np.zeros(3)).dtype == np.float64


def test_logit_inverts_sigmoid_and_is_infinite_at_the_ends():
    z = np.linspace(-20, 20, 41)
    assert np.allclose(logit(sigmoid(z)), z, atol=1e-8)
    assert logit(0.0) == -np.inf and logit(1.0) == np.inf and logit(0.5) == 0.0
