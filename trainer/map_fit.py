"""The balanced recipe's fit in label space, and the prior strength the labels choose by leave-one-out.

The problem (see ``trainer/classifier.py``): minimise over ``w, b``

    sum_i c_i (softplus(z_i) - t_i z_i) + pull_w |w - w0|^2 + pull_b (b - b0)^2,   z = X w + b,

with ``pull_w = strength / |w0|^2`` and ``pull_b = 0.01 pull_w``. Its optimum lies in ``w = w0 + X^T g / (2 pull_w)``,
``b = b0 + sum(g) / (2 pull_b)`` for some ``g`` in R^n (the gradient of the data term is a combination of the rows),
so the fit is a problem in ``n`` unknowns whatever the dimension: with ``G = (K + 100) / (2 pull_w)``, where
``K = X X^T`` is the labels' Gram matrix, ``z = z0 + G g`` and the penalty is ``g^T G g / 2``. Damped Newton on
``g`` (``trainer/newton.py``) converges in a few steps; each step factorises one n x n matrix (Cholesky), so a fit
at 200 labels costs about as much as one at 20 did in weight space. ``K`` only grows by the new labels' rows each
round, and :class:`GramCache` keeps it (and the last solution, a warm start) between fits.

**The strength, chosen by the labels** (``strength=None``): a fixed pull is either too strong for many labels
(they cannot overrule a prompt that points partly the wrong way) or too weak for the first few (ten labels turn the
classifier away from a good prompt in a direction estimated from ten examples, and average precision drops). So the
prior starts as ``PRIOR_LABELS / n`` labels' worth and each fit picks, among that strength and one and two steps of
sqrt(10) weaker, the one that minimises (within a margin that favours the stronger) the *leave-one-out* log loss of
the labels: how well the classifier fitted without each label predicts it. Labels that agree with the prompt keep the
strong end; labels that the prompt does not explain pull it weaker. Where one step weaker is worse by more than that
margin, the second step is not tried: the loss rises on, and a solve is spared (in 2,180 fits of the learning
benchmarks, three in five, and no choice changed; rises smaller than the margin, under 1%, did end in a lower loss at
the weakest, six times). For this model LOO needs no refits: it has a closed form at the optimum, from the Cholesky
factor that Newton's last step computed there (``newton.held_out_logits``). Each candidate's fit starts from the last
one's solution carried along its tangent, and the choice depends only on the labels. Measured against
fixed strengths and other rules (a grid climbed from 10, evidence maximisation, LOO AUC) in
``benchmarks/RESULTS-learning.md``.

**A trust region set by the evidence** (automatic strength only). Ten labels holding one to five positives are a
biased, tiny sample: the fit lowers their loss by turning away from the prompt toward whatever those few positives
share, and the rest of the collection's ranking pays (on the bundle, single concepts lost up to 0.14 average
precision below zero-shot after the first round, with a prior worth 100 labels). A direction estimated from more
positives is worth following (the synthetic kinds' first batches hold 6-9 and gain from turning 0.08-0.17 rad). So
the fitted weights are turned back to within ``max_turn(n, positives)`` of the prompt: 0.04 rad at ten labels,
growing as the square of the labels and as the fourth power of the positives, whichever allows more. It keeps the
direction the labels turned in and the weights' component along the prompt; the strength, bias and loss are the
fit's. A fixed strength is not limited. Measured with the alternatives in RESULTS-learning.md.

The limited weights are no optimum, and the closed form above holds only at one, so the fit keeps its optimum
(``MapFit.optimum``) beside them. The strength is chosen by the optimum's leave-one-out loss (the trust region bounds
the answer after the choice). :func:`leave_one_out_logits` describes the weights that rank: each label's optimum
without it, from the kept optimum in closed form, held within the trust region of the labels left. That is what the
session's "matches are running out" estimate needs, as it calibrates the unseen candidates' logits under those
weights by the labels' held-out ones.

**Freer along given directions** (:func:`fit_map_freer`, for ``trainer/prior_axes.py``): the fit at the strength the
labels chose, with the prior's variance ``1 + freedom`` times larger along a few directions, solved from the chosen
optimum and its factor (``newton.solve``'s free directions), with its leave-one-out logits to compare.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import newton
from .blas import one_blas_thread
from .logistic import sigmoid

__all__ = [
    "PRIOR_LABELS",
    "GramCache",
    "MapFit",
    "candidate_strengths",
    "fit_map",
    "fit_map_freer",
    "leave_one_out_logits",
    "max_turn",
    "within_angle",
]

# The automatic prior is worth PRIOR_LABELS / n labels at n labels: 100 at the first round of ten, 10 at a hundred.
PRIOR_LABELS = 1000.0
# How far below that the labels may pull it: one and two steps of sqrt(10).
_WEAKER_STEPS = (1.0, 10**-0.5, 0.1)
# A weaker candidate must beat the stronger ones' leave-one-out loss by more than this share: the estimate is noisy
# with few labels, and a needless turn away from the prompt costs more than a missed one (measured: without it, one
# of the bundle's size concepts lost 0.008 AP by round 8).
_MARGIN = 0.02
# Strengths outside this range are no different in practice (and keep the arithmetic finite).
_STRENGTH_RANGE = (0.01, 1e4)
_BIAS_FREEDOM = 100.0  # pull_b = pull_w / 100: the bias must move freely when all labels are of one class
# The trust region of an automatic fit (see the module docstring): at most _TURN_AT_TEN radians from the prompt at
# ten labels, growing as (labels / 10)^2, or faster as (positives / 5)^_POSITIVES_POWER when the labels hold more
# positives. Chosen side by side on the bundle and the synthetic kinds (benchmarks/RESULTS-learning.md).
_TURN_AT_TEN = 0.04
_POSITIVES_POWER = 4
# How far from its optimum's condition (in a label's weight) a fit may be and still count as the fit of the labels
# given, for leave-one-out. Newton stops within about 3e-4 of it (measured on the bundle: 1e-4 refused 19 fits of 360
# of their own labels); a label it lacks moves the condition by its residual, so one it predicts to within 1e-3
# changes no held-out logit that the closed form resolves.
_FIT_TOLERANCE = 1e-3


@dataclass(frozen=True)
class MapFit:
    weight: np.ndarray  # (D,) float64: what ranks, the optimum held within the trust region when one applies
    bias: float
    loss: float  # the objective at the optimum (before an automatic fit's turn is limited: see max_turn)
    strength: float  # the prior strength used (the chosen one, when it was chosen)
    loo_loss: float | None  # the leave-one-out log loss at that strength, when the strength was chosen (or freed)
    optimum: np.ndarray  # (D,) float64: the weights at the optimum, ``weight`` before its turn is limited
    trust_region: bool  # whether ``weight`` is held within ``max_turn`` of the prompt (an automatic strength)
    # The labels' closed-form leave-one-out logits at ``strength`` (the optimum's, no trust region), where the fit
    # computed them: an automatic choice scores each candidate by them, a freer fit is compared by them, and a fit at a
    # given strength computes them when asked (``fit_map``'s ``leave_one_out``), so :func:`leave_one_out_logits` of the
    # same rows hands them back instead of a second factorisation (``same_rows``). None where the fit did not compute
    # them.
    held_out: np.ndarray | None = None
    # The candidate strengths an automatic choice solved, strongest first, each with its leave-one-out log loss (the
    # chosen one among them); () for a given strength.
    tried: tuple[tuple[float, float], ...] = ()


class GramCache:
    """``X X^T`` of the last fit's rows and its solution (and the last freer fit's, :func:`fit_map_freer`), so that a
    fit on the same rows plus new ones computes only the new rows' products and starts where the last one ended. Rows
    are matched by value, as a leading run: a relabelled or removed row ends it. Its arrays are replaced, never
    written in place, so a shallow copy is a cache of its own."""

    def __init__(self) -> None:
        self.rows = np.empty((0, 0))
        self.gram = np.empty((0, 0))
        self.solution = np.empty(0)
        # The last freer fit's ``g / strength`` and its free directions' weights (``a`` times their scale): a start
        # that keeps its logits at another strength.
        self.free_solution: tuple[np.ndarray, np.ndarray] | None = None

    def gram_of(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(``x x^T``, a warm start: the last ``g / strength`` on the rows kept, 0 on the new ones)."""
        n, kept = len(x), 0
        if self.rows.shape[1:] == x.shape[1:]:
            limit = min(len(self.rows), n)
            same = np.all(self.rows[:limit] == x[:limit], axis=1)
            kept = limit if same.all() else int(np.argmin(same))
        gram = np.empty((n, n))
        gram[:kept, :kept] = self.gram[:kept, :kept]
        if kept < n:
            fresh = x[kept:] @ x.T  # (n - kept, n)
            gram[kept:, :] = fresh
            gram[:, kept:] = fresh.T
        start = np.zeros(n)
        start[:kept] = self.solution[:kept]
        self.rows, self.gram = x, gram
        if self.free_solution is not None and kept < len(self.free_solution[0]):  # its rows beyond no longer hold
            self.free_solution = (self.free_solution[0][:kept], self.free_solution[1])
        return gram, start

    def remember(self, solution: np.ndarray) -> None:
        self.solution = solution

    def free_start(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The last freer fit's solution on the rows every ``gram_of`` since has kept (0 on the others), if any."""
        if self.free_solution is None:
            return None
        solution, weights = self.free_solution
        return np.r_[solution, np.zeros(len(self.rows) - len(solution))], weights


def fit_map(
    x: np.ndarray,
    t: np.ndarray,
    c: np.ndarray,
    w0: np.ndarray,
    b0: float,
    strength: float | None,
    *,
    cache: GramCache | None = None,
    max_iter: int = 50,
    leave_one_out: bool = False,
) -> MapFit:
    """The MAP fit of ``x`` (n, D) with targets ``t`` and weights ``c``, at ``strength`` or (None) at the strength
    the labels choose by leave-one-out; float64 throughout. ``cache`` carries the Gram matrix between fits.
    ``leave_one_out``: at a given strength, also the labels' held-out logits (``MapFit.held_out``), from the
    factorisation Newton's last step left at the optimum; None there if Newton ran out of steps short of it (an
    automatic strength always has them)."""
    return _fit((np.asarray(x, dtype=np.float64), t, c, w0, b0), strength, cache, max_iter, leave_one_out)[0]


def fit_map_freer(
    x: np.ndarray,
    t: np.ndarray,
    c: np.ndarray,
    w0: np.ndarray,
    b0: float,
    axes: np.ndarray,
    freedom: float,
    *,
    cache: GramCache | None = None,
    max_iter: int = 50,
) -> tuple[MapFit, MapFit | None]:
    """The automatic fit (:func:`fit_map` with ``strength=None``), and the fit at the strength it chose with the
    prior's variance ``1 + freedom`` times larger along the orthonormal columns of ``axes`` (D, k): its weights, and
    its labels' held-out logits and their loss (``loo_loss``) to compare; None where Newton ran out of steps.

    In label space the freer prior adds ``freedom / (2 pull_w) P P^T`` to ``G`` (``P = X axes``): ``newton.solve``
    takes ``P`` scaled as its free directions. It starts from the chosen optimum, whose factorisation serves its first
    step, or where ``cache``'s last freer fit ended, where the objective is lower there (as where the labels took the
    freer prior last round, and its optimum is far from the plain one's)."""
    x = np.asarray(x, dtype=np.float64)
    plain, found, gram, z0 = _fit((x, t, c, w0, b0), None, cache, max_iter, False)
    norm2 = float(w0 @ w0) or 1.0
    spread = np.sqrt(freedom * norm2 / (2 * plain.strength))  # the free directions' scale
    with one_blas_thread():
        free = (x @ axes) * spread
        start, free_start, last = found, None, cache.free_start() if cache is not None else None
        if last is not None and len(last[1]) == axes.shape[1]:
            g, a = last[0] * plain.strength, last[1] / spread
            if newton.objective(gram, z0, t, c, g, free, a)[0] < found.value:  # found.value: the objective at a = 0
                start, free_start = g, a
        optimum = newton.solve(gram, z0, t, c, start, max_iter, free=free, a=free_start)
        if cache is not None:
            cache.free_solution = (optimum.g / plain.strength, optimum.free * spread)
        if optimum.factor is None:  # Newton ran out of steps short of the optimum: no closed form to compare by
            return plain, None
        held_out = newton.held_out_logits(gram, t, c, optimum.z, optimum.factor, free)
        weight, bias = _weights(x, optimum.g, w0, b0, norm2, plain.strength)
        weight += axes @ (spread * optimum.free)
    return plain, MapFit(
        weight, bias, optimum.value, plain.strength, _log_loss(held_out, t, c), weight, False, held_out
    )


def _fit(
    problem: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float],
    strength: float | None,
    cache: GramCache | None,
    max_iter: int,
    leave_one_out: bool,
) -> tuple[MapFit, newton.Optimum, np.ndarray, np.ndarray]:
    """:func:`fit_map` of ``problem``, ``(x, t, c, w0, b0)`` with float64 rows ``x``; with the optimum behind it,
    ``G`` at its strength and ``z0``."""
    x, t, c, w0, b0 = problem
    norm2 = float(w0 @ w0) or 1.0
    # One BLAS thread: these matrices are far too small to gain from threads, and on a busy 2-core machine
    # OpenBLAS's threads spin-wait on each other: measured 128 ms for one 200 x 200 solve, against 1.3 ms limited.
    with one_blas_thread():
        gram, start = (cache or GramCache()).gram_of(x)
        base = gram + _BIAS_FREEDOM  # G at pull_w = 1/2
        z0 = x @ w0 + b0

        def solve(value: float, warm: np.ndarray) -> _Solved:
            """The optimum at strength ``value`` from ``warm`` and G there; the labels' held-out logits and their log
            loss (an automatic strength, or where asked)."""
            gram = base * (norm2 / (2 * value))  # G at this strength: 1 / (2 pull_w) = |w0|^2 / (2 strength)
            found = newton.solve(gram, z0, t, c, warm, max_iter)
            if strength is not None and not (leave_one_out and found.factor is not None):
                return _Solved(value, found, gram, None, 0.0)
            held_out = newton.held_out_logits(gram, t, c, found.z, found.factor)
            return _Solved(value, found, gram, held_out, _log_loss(held_out, t, c))

        # The cache keeps g / strength, which fixes the logits whatever the strength (G scales as 1 / strength).
        tried: tuple[tuple[float, float], ...] = ()
        if strength is not None:
            chosen = solve(strength, start * strength)
        else:
            chosen, tried = _choose(solve, start, len(t), c)
        if cache is not None:
            cache.remember(chosen.optimum.g / chosen.strength)
        weight, bias = _weights(x, chosen.optimum.g, w0, b0, norm2, chosen.strength)
    optimum = weight
    if strength is None:
        weight = within_angle(optimum, w0 / np.sqrt(norm2), max_turn(len(t), int(np.count_nonzero(t > 0.5))))
    loo, value = (None if strength is not None else chosen.loo), chosen.optimum.value
    fit = MapFit(weight, bias, value, chosen.strength, loo, optimum, strength is None, chosen.held_out, tried)
    return fit, chosen.optimum, chosen.gram, z0


@dataclass(frozen=True)
class _Solved:
    """One strength's fit: its optimum, ``G`` there, and (where computed) the held-out logits and their log loss."""

    strength: float
    optimum: newton.Optimum
    gram: np.ndarray
    held_out: np.ndarray | None
    loo: float


def _log_loss(logits: np.ndarray, t: np.ndarray, c: np.ndarray) -> float:
    """The labels' weighted log loss at ``logits``: of the held-out ones, what the strength and the freer prior are
    chosen by."""
    return float(c @ (np.logaddexp(0, logits) - t * logits))


def _weights(
    x: np.ndarray, g: np.ndarray, w0: np.ndarray, b0: float, norm2: float, strength: float
) -> tuple[np.ndarray, float]:
    """The weights and bias of the label-space solution ``g`` at ``strength`` (the module docstring)."""
    scale = norm2 / (2 * strength)
    return w0 + scale * (x.T @ g), b0 + scale * _BIAS_FREEDOM * float(g.sum())


def candidate_strengths(labels: int) -> tuple[float, ...]:
    """The strengths an automatic fit on ``labels`` labels chooses from, strongest first."""
    top = PRIOR_LABELS / max(labels, 1)
    return tuple(float(np.clip(top * step, *_STRENGTH_RANGE)) for step in _WEAKER_STEPS)


def max_turn(labels: int, positives: int) -> float:
    """The widest angle (radians) an automatic fit on ``labels`` labels, ``positives`` of them positive, may turn
    from the prompt: ``0.04 max((labels / 10)^2, (positives / 5)^4)``. 0.04 at ten labels with at most five
    positives, 0.16 at twenty; 0.08 with six positives of ten, 0.26 with eight; no limit from 13 positives or 63
    labels (past a right angle)."""
    return _TURN_AT_TEN * max((labels / 10) ** 2, (positives / 5) ** _POSITIVES_POWER)


def within_angle(weight: np.ndarray, unit: np.ndarray, limit: float) -> np.ndarray:
    """``weight`` turned back toward the unit vector ``unit`` until at most ``limit`` radians from it, keeping its
    component along ``unit`` (its length when that is not positive) and the direction it turned in."""
    on = float(weight @ unit)
    across = weight - on * unit
    off = float(np.linalg.norm(across))
    if off == 0 or limit >= np.pi / 2 or np.arctan2(off, on) <= limit:
        return weight
    length = on / np.cos(limit) if on > 0 else float(np.linalg.norm(weight))
    return length * (np.cos(limit) * unit + np.sin(limit) * across / off)


def _choose(solve, start: np.ndarray, labels: int, c: np.ndarray) -> tuple[_Solved, tuple[tuple[float, float], ...]]:
    """The strongest candidate whose leave-one-out loss is within ``_MARGIN`` of the lowest, and the (strength,
    loss) of each candidate solved. A candidate whose loss is above the stronger one's by more than the margin ends
    the search (see the module docstring). The first fit starts from ``start`` (``g / strength`` of the last fit),
    each next one from the previous optimum carried along its tangent (``newton.tangent_start``): two Newton steps
    fewer than from the previous optimum itself (measured: 13 Cholesky factorisations a fit instead of 17, at 10-300
    labels)."""
    fits: list[_Solved] = []
    values = candidate_strengths(labels)
    warm = start * values[0]
    for value, following in zip(values, (*values[1:], None), strict=True):
        fits.append(solve(value, warm))
        if len(fits) > 1 and fits[-1].loo > fits[-2].loo + _MARGIN * abs(fits[-2].loo):
            break
        if following is not None:
            warm = newton.tangent_start(fits[-1].gram, c, fits[-1].optimum, value, following)
    lowest = min(fit.loo for fit in fits)
    chosen = next(fit for fit in fits if fit.loo <= lowest + _MARGIN * abs(lowest))
    return chosen, tuple((fit.strength, fit.loo) for fit in fits)


def leave_one_out_logits(
    x: np.ndarray,
    t: np.ndarray,
    c: np.ndarray,
    fit: MapFit,
    w0: np.ndarray,
    b0: float,
    *,
    cache: GramCache | None = None,
    same_rows: bool = False,
) -> np.ndarray | None:
    """Each label's logit under ``fit`` made without it, as ``fit`` ranks: the optimum without the label (closed
    form, see the module docstring: no refit, one n x n factorisation), held within the trust region of one label
    fewer where ``fit`` has one. ``cache`` lends the Gram matrix. ``same_rows``: the caller knows that ``x``, ``t``,
    ``c``, ``w0`` and ``b0`` are exactly what ``fit`` was made of, so where no trust region binds, the held-out logits
    the fit computed (``MapFit.held_out``) are the answer; they differ from a recomputation only by rounding (the
    optimum's logits as Newton left them, not ``x . optimum + b``), and spare the second factorisation and solve:
    0.5 ms of a 200-label round.

    None unless ``fit`` is the fit of ``x``, ``t``, ``c`` under the prior ``w0, b0``: its optimum's condition ``w =
    w0 - X^T r / (2 pull_w)``, ``b = b0 - sum(r) / (2 pull_b)`` (``r`` the residuals) must hold to within
    ``_FIT_TOLERANCE`` of a label's weight. A fit on other labels, or under another prior, would give wrong logits.
    """
    x = np.asarray(x, dtype=np.float64)
    optimum, w0 = np.asarray(fit.optimum, dtype=np.float64), np.asarray(w0, dtype=np.float64)
    norm2 = float(w0 @ w0) or 1.0
    scale = norm2 / (2 * fit.strength)  # 1 / (2 pull_w)
    with one_blas_thread():
        z = x @ optimum + fit.bias
        # In units of the residuals (a label's weight): how far the optimum is from the fit's own condition.
        residual = c * (sigmoid(z) - t)
        bias_scale = scale * _BIAS_FREEDOM
        gap = np.linalg.norm((optimum - w0) / scale + x.T @ residual) + abs(
            (fit.bias - b0) / bias_scale + float(residual.sum())
        )
        if gap > _FIT_TOLERANCE:
            return None
        positives = int(np.count_nonzero(t > 0.5))
        # No label's absence would bring the trust region in:
        unbound = not fit.trust_region or max_turn(len(t) - 1, positives - 1) >= np.pi / 2
        if unbound and same_rows and fit.held_out is not None:
            return fit.held_out.copy()
        gram = ((cache or GramCache()).gram_of(x)[0] + _BIAS_FREEDOM) * scale
        if unbound:
            return newton.held_out_logits(gram, t, c, z, None)
        return _loo_logits_within(x, t, c, z, gram, fit, w0 / np.sqrt(norm2), scale)


def _loo_logits_within(
    x: np.ndarray,
    t: np.ndarray,
    c: np.ndarray,
    z: np.ndarray,
    gram: np.ndarray,
    fit: MapFit,
    unit: np.ndarray,
    scale: float,
) -> np.ndarray:
    """The labels' logits, each under the optimum without it held within the trust region of the labels left.

    Leaving label i out moves the optimum's ``g`` by ``r_i M e_i / M_ii`` with ``M = (I + W G)^-1`` (the step whose
    logit is the closed form's: ``G M = H`` and ``M_ii = 1 - W_ii H_ii``), so the weights by ``scale X^T`` of that
    and the bias by ``scale * 100 * sum`` of it. The trust region bounds the weights after the optimum is found, so
    each label's weights are turned back as the fit of the others would be, within the region of one label fewer.
    Used below 64 labels only (beyond, no trust region binds), so the n weight vectors cost little."""
    s = sigmoid(z)
    w = c * s * (1 - s)
    m = np.linalg.inv(np.eye(len(t)) + w[:, None] * gram)  # I + W G has B's eigenvalues, all >= 1
    moves = m * (c * (s - t) / np.maximum(np.diag(m), 1e-12))[None, :]  # column i: how g moves without label i
    weights = fit.optimum[None, :] + scale * (x.T @ moves).T  # (n, D): row i, the optimum without label i
    biases = fit.bias + scale * _BIAS_FREEDOM * moves.sum(axis=0)
    positives = int(np.count_nonzero(t > 0.5))
    held_out = np.empty(len(t))
    for i, (weight, target) in enumerate(zip(weights, t, strict=True)):
        limit = max_turn(len(t) - 1, positives - int(target > 0.5))
        held_out[i] = within_angle(weight, unit, limit) @ x[i] + biases[i]
    return held_out
