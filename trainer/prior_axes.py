"""A prior that lets the labels move the weights more freely along the collection's leading axes, when they ask to.

The automatic fit (``trainer/map_fit.py``) pulls the weights toward the prompt's equally in every direction. With a
few hundred labels in 512 dimensions, the part of the correction the labels can estimate well lies where the
collection itself varies most: the concept's attributes are among its leading axes, while most other directions hold
only noise, in which an isotropic pull lets the labels' noise in as freely as their signal. This prior's variance is
``1 + FREEDOM`` times larger along the collection's leading principal axes (the suspects' ``leading_axes``)
than elsewhere, less the prompt's own direction. In label space
that is the same fit on stretched rows (``Stretch``): with ``S = I + s U U^T`` (``U`` the axes, ``(1 + s)^2 = 1 +
FREEDOM``), fitting ``v`` on rows ``x S`` toward ``S^-1 w0`` and ranking by ``w = S v`` is the MAP fit under the
prior covariance ``S^2``; the n x n Newton, the strength the labels choose and the closed-form leave-one-out all
carry over unchanged. Its Gram matrix is the plain one plus ``FREEDOM (x U)(x U)^T``, so it is solved as the plain
fit with k free directions (``map_fit.fit_map_freer``), from where the plain fit ended and with the factorisation it
left there: 3-4 factorisations where Newton on the stretched rows from their last round's solution took 6-8
(benchmarks/RESULTS-engine.md, section 13).

Whether it applies is the labels' choice: from ``FROM_LABELS`` labels on, an automatic fit is made both ways, and
the stretched one replaces the plain one only when its leave-one-out log loss is lower by more than ``MARGIN``. On
the synthetic kinds (benchmarks/RESULTS-learning.md, issue 13) the labels choose it and `hard` needs a median of 100
labels to AP 0.9 instead of 180 (15 seeds: mean 109 against 197); on the offline bundle's real CLIP embeddings they
never did between 100 and 150 labels (every concept's AP as without it). Below ``FROM_LABELS`` the leave-one-out
choice is too noisy: offered from 50 labels, it took the stretched prior on a few bundle concepts and sank them up
to 0.49 AP below zero-shot. Nor while either class holds fewer than ``MIN_CLASS`` labels: the choice then rests on
those few, weighted up to half of the data by the balanced recipe. A `top` session on the synthetic `default` kind
shows 340 matches, then a batch with its first 3 non-matches; the stretched fit took them, turned the classifier 56
degrees, and AP fell from 0.83 to 0.17 for that round; every one of 15 seeds fell 0.50-0.59 below zero-shot
(benchmarks/RESULTS-learning.md).

The axes are the session's collection axes (``QualityChecks.collection_axes``: ``suspects.leading_axes`` of the one
sample of the collection a session draws, which the suspect labels' third witness uses too); a session without that
sample (an index that can neither sample nor list its ids, or a draw Pinecone refused) fits the plain ones.
The prompt's own direction is taken out of them: freed along it too, a careless labeller's 100 labels on the digits
(whose prompt lies mostly along the leading axes) turned one classifier upside down (AP 0.92 -> 0.07).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from . import blas, map_fit

__all__ = ["FREEDOM", "FROM_LABELS", "MARGIN", "MIN_CLASS", "Stretch", "fit"]

# How much freer (the prior's variance along the axes is 1 + FREEDOM times that across them). On `hard`, x 30 reached
# AP 0.9 in 100 labels (median, 5 seeds) and x 10 in 100 too, but with a smaller margin over the plain fit
# (RESULTS-learning.md).
FREEDOM = 30.0
# From how many labels an automatic fit may take the stretched prior; below, its leave-one-out choice misleads (the
# module docstring). The bundle (8 rounds of 10) never reaches it.
FROM_LABELS = 100
# The stretched fit must beat the plain one's leave-one-out log loss by more than this share (as map_fit's _MARGIN).
MARGIN = 0.02
# ... and each class must hold at least this many labels. The smallest count that removed every collapse of `top` on
# `default` (15 seeds, 1-3 non-matches among hundreds of matches); 6 and 10 cost `random` on `noisy` (4-10 matches
# in its first 100-200 labels, where the stretch helps) 20-100 labels, and `top` on `misaligned` 30-70.
MIN_CLASS = 4


@dataclass(frozen=True)
class Stretch:
    """``S = I + factor U U^T`` for orthonormal axes ``U`` (D, k): the change of variables of the module docstring."""

    axes: np.ndarray  # (D, k) float64, orthonormal columns
    factor: float

    @property
    def freedom(self) -> float:
        """How much freer the prior is along the axes: ``S^2 = I + freedom U U^T``."""
        return (1 + self.factor) ** 2 - 1

    @classmethod
    def along(cls, basis: np.ndarray, prompt: np.ndarray, freedom: float = FREEDOM) -> Stretch:
        """The stretch along the orthonormal columns of ``basis`` (D, k), the collection's leading axes (the
        suspects' ``leading_axes``, drawn once a session), each less its part along ``prompt``: the pull on the
        prompt's own direction stays as it was."""
        with blas.one_blas_thread():
            unit = np.asarray(prompt, dtype=np.float64) / np.linalg.norm(prompt)
            axes = np.asarray(basis, dtype=np.float64)
            axes = np.linalg.qr(axes - np.outer(unit, unit @ axes))[0]
        return cls(np.ascontiguousarray(axes), float(np.sqrt(1 + freedom) - 1))

    def rows(self, x: np.ndarray) -> np.ndarray:
        """``x S`` (S is symmetric): the rows the stretched fit sees."""
        return x + self.factor * (x @ self.axes) @ self.axes.T

    def weights(self, v: np.ndarray) -> np.ndarray:
        """``S v``: the weights that rank, from the stretched fit's."""
        return v + self.factor * self.axes @ (self.axes.T @ v)

    def prior(self, w0: np.ndarray) -> np.ndarray:
        """``S^-1 w0``: the prompt's weights in the stretched fit's variables."""
        return w0 - self.factor / (1 + self.factor) * self.axes @ (self.axes.T @ w0)


def fit(
    x: np.ndarray,
    t: np.ndarray,
    c: np.ndarray,
    w0: np.ndarray,
    b0: float,
    stretch: Stretch | None,
    *,
    cache: map_fit.GramCache,
    max_iter: int = 50,
) -> tuple[map_fit.MapFit, Stretch | None]:
    """The automatic fit of ``x`` (n, D) (``map_fit.fit_map`` with ``strength=None``), and the stretch it was made
    under: ``stretch`` where the labels chose it (the fit's weights are then in its variables: rank by
    ``stretch.weights(fit.weight)``), else None."""
    positives = int(np.count_nonzero(t > 0.5))
    if stretch is None or len(t) < FROM_LABELS or min(positives, len(t) - positives) < MIN_CLASS:
        return map_fit.fit_map(x, t, c, w0, b0, None, cache=cache, max_iter=max_iter), None
    # At the strength the plain fit chose, from its optimum: one Newton solve of a few steps and one leave-one-out
    # more, not three solves.
    plain, freer = map_fit.fit_map_freer(x, t, c, w0, b0, stretch.axes, stretch.freedom, cache=cache, max_iter=max_iter)
    if freer is None or freer.loo_loss >= float(plain.loo_loss) * (1 - MARGIN):  # type: ignore[operator]
        return plain, None
    with blas.one_blas_thread():
        weight = stretch.prior(freer.weight)  # S^-1 w: in the stretch's variables, as its rows' leave-one-out takes it
    return dataclasses.replace(freer, weight=weight, optimum=weight), stretch
