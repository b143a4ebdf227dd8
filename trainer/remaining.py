"""Are the positives running out? An estimate of how many matches are left among the unseen candidates.

When every image of a rare concept has been found ("a large red heart": 18 in 2,500, all found within 50 labels),
the next batches hold no match, and without a word the classifier looks broken. This module says so beforehand.

The classifier's own probabilities cannot be summed: the fit weighs both classes equally (and pulls toward the
prompt), so they say far more matches than there are. They are recalibrated instead. Each training label's
*held-out* logit (under the classifier fitted on the other labels, as the unseen images' logits come from a classifier
that never saw them: the session takes the fit's leave-one-out logits in closed form,
``LinearProbe.leave_one_out_logits``, or refits on folds, ``trainer/suspects.py``) is paired with its class, and a
logistic curve ``P(match) = sigmoid(a z + b)`` is fitted to the pairs (Platt scaling, with a weak prior toward
``a = 1, b = 0`` so a few labels give no cliff). The curve, applied to the unseen candidates' current logits, gives
each one's chance of being a match; their sum is the estimate. The labels were chosen by the classifier, not at
random, but chosen by their score: what the curve models, the match rate at a given score, is what that choice leaves
intact.

Only the candidates a round's search returned are counted (the best ``pool_size`` unseen images, the ones the next
batches come from), so the estimate costs no pass over the collection and works the same on Pinecone.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .logistic import sigmoid

__all__ = ["RUNNING_OUT", "Remaining", "calibrate", "positives_left"]

# "Running out" below this many matches expected in the next batch's best candidates. Measured on the bundle's
# size + colour + shape concepts (benchmarks/RESULTS-learning.md): at 1.0 the flag came with matches still to find
# (3-7 of them in the next three rounds) on 4 concepts of 25, at 0.5 on 1; every concept was flagged either way.
RUNNING_OUT = 0.5
# The prior's weight, in labels' worth, on the curve's slope and offset: enough to keep 10 labels from giving a
# cliff, little against a hundred.
PRIOR_LABELS = 2.0


class Remaining(NamedTuple):
    expected: float  # matches expected among the unseen candidates
    candidates: int  # how many unseen candidates were counted
    next_batch: float  # matches expected among the best ``batch_size`` of them: the top of the next batch
    running_out: bool  # matches were found, and fewer than RUNNING_OUT are expected in the best batch left


def calibrate(held_out: np.ndarray, truth: np.ndarray, *, prior_labels: float = PRIOR_LABELS) -> tuple[float, float]:
    """``(a, b)`` of the curve ``P(match | logit z) = sigmoid(a z + b)``, fitted to held-out logits and classes.

    MAP by Newton's method on two parameters, with a Gaussian pull of ``prior_labels`` toward ``(1, 0)``: the
    classifier's own curve. Neither class needs to be present; with no labels the curve is the classifier's. The
    slope is never negative: where the fit says so, the curve is flat at the labels' match rate.
    """
    z = np.asarray(held_out, dtype=np.float64)
    t = np.asarray(truth, dtype=np.float64)
    features = np.stack([z, np.ones_like(z)], axis=1)  # (n, 2)
    centre = np.array([1.0, 0.0])
    prior = np.full(2, prior_labels / 4)  # a label at p = 0.5 carries Fisher information 1/4

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        """The objective at ``theta``, and the curve's logits there (the next step's, once ``theta`` is taken)."""
        u = features @ theta
        return float((np.logaddexp(0, u) - t * u).sum() + 0.5 * prior @ (theta - centre) ** 2), u

    theta = centre.copy()
    value, u = loss(theta)
    for _ in range(100):  # damped Newton: convex, two parameters, converges in a handful of steps
        # Each point is evaluated once: the step taken is the last one tried (a third of the time, 0.2 ms a round).
        p = sigmoid(u)
        gradient = features.T @ (p - t) + prior * (theta - centre)
        hessian = (features * (p * (1 - p))[:, None]).T @ features + np.diag(prior)
        step = np.linalg.solve(hessian, gradient)
        size = 1.0
        value_there, u_there = loss(theta - size * step)
        while value_there > value and size > 1e-6:
            size /= 2
            value_there, u_there = loss(theta - size * step)
        theta, value, u = theta - size * step, value_there, u_there
        if np.abs(size * step).max() < 1e-9:
            break
    if theta[0] < 0:
        # Matches rarer among the higher scores: the labels contradict the ranking (a careless start, or the
        # classifier not yet learned). A curve falling with the score would send the estimate to the bottom of the
        # ranking; the flat curve at the labels' (smoothed) match rate says only what the labels support.
        return 0.0, float(np.log((t.sum() + 0.5) / (len(t) - t.sum() + 0.5)))
    return float(theta[0]), float(theta[1])


def positives_left(
    candidate_logits: np.ndarray,
    held_out: np.ndarray,
    truth: np.ndarray,
    batch_size: int,
) -> Remaining:
    """How many matches the unseen candidates still hold, from their current logits (any order) and the
    training labels' held-out logits and classes (``truth``: True for a match).

    ``running_out`` once at least one match has been labelled and the best ``batch_size`` candidates are expected
    to hold fewer than ``RUNNING_OUT`` (half a match): before the first match, an empty top says "the prompt
    misses", not "all found".
    """
    truth = np.asarray(truth, dtype=bool)
    a, b = calibrate(held_out, truth)
    z = np.sort(np.asarray(candidate_logits, dtype=np.float64))[::-1]
    chance = sigmoid(a * z + b)
    next_batch = float(chance[:batch_size].sum())
    return Remaining(float(chance.sum()), len(z), next_batch, bool(truth.any()) and next_batch < RUNNING_OUT)
