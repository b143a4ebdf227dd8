"""The balanced recipe's fit in label space, and the prior strength the labels choose by leave-one-out.

The problem (see ``trainer/classifier.py``): minimise over ``w, b``

    sum_i c_i (softplus(z_i) - t_i z_i) + pull_w |w - w0|^2 + pull_b (b - b0)^2,   z = X w + b,

with ``pull_w = strength / |w0|^2`` and ``pull_b = 0.01 pull_w``. Its optimum lies in ``w = w0 + X^T g / (2 pull_w)``,
``b = b0 + sum(g) / (2 pull_b)`` for some ``g`` in R^n (the gradient of the data term is a combination of the rows),
so the fit is a problem in ``n`` unknowns whatever the dimension: with ``G = (K + 100) / (2 pull_w)``, where
``K = X X^T`` is the labels' Gram matrix, ``z = z0 + G g`` and the penalty is ``g^T G g / 2``. Damped Newton on
``g`` converges in a few steps; each step factorises one n x n matrix (Cholesky), so a fit at 200 labels
costs about as much as one at 20 did in weight space. ``K`` only grows by the new labels' rows each round, and
:class:`GramCache` keeps it (and the last solution, a warm start) between fits.

**The strength, chosen by the labels** (``strength=None``): a fixed pull is either too strong for many labels
(they cannot overrule a prompt that points partly the wrong way) or too weak for the first few (ten labels turn the
classifier away from a good prompt in a direction estimated from ten examples, and average precision drops). So the
prior starts as ``PRIOR_LABELS / n`` labels' worth and each fit picks, among that strength and one and two steps of
sqrt(10) weaker, the one that minimises (within a margin that favours the stronger) the *leave-one-out* log loss of
the labels: how well the classifier fitted without each label predicts it. Labels that agree with the prompt keep the
strong end; labels that the prompt does not explain pull it weaker. Where one step weaker is worse by more than that
margin, the second step is not tried: the loss rises on, and a solve is spared (in 2,180 fits of the learning
benchmarks, three in five, and no choice changed; rises smaller than the margin, under 1%, did end in a lower loss at
the weakest, six times). For this model LOO needs no refits: with ``W`` the curvature at the optimum and
``H = G (I + W G)^-1``, leaving label i out moves its logit to ``z_i + H_ii r_i / (1 - W_ii H_ii)`` (``r`` the
residuals; the usual approximation for regularised GLMs, exact for a quadratic loss); it takes the diagonal of
``(I + sqrt(W) G sqrt(W))^-1``, one triangular inverse of the Cholesky factor that Newton's last step computed at
the optimum (see ``_loo_logits``). Each candidate's fit starts from
the last one's solution carried along its tangent, and the choice depends only on the labels. Measured against
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
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg.lapack import dpotrf, dpotrs, dtrtri, dtrtrs

from .blas import one_blas_thread
from .logistic import sigmoid

__all__ = [
    "PRIOR_LABELS",
    "GramCache",
    "MapFit",
    "candidate_strengths",
    "fit_map",
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
# Labels fitted closer to certain than this (``s (1 - s)``) are held out from ``diag H`` rather than ``diag B^-1``
# (see _loo_logits): the shortcut's rounding grows as its inverse.
_CLOSE_TO_CERTAIN = 1e-8
# Newton searches its step's length while its decrement is above this share of the objective (see _newton): below,
# full steps converge quadratically and a search would only cost time. At most _SEARCH_STEPS tries a step.
_SEARCH_ABOVE = 1e-4
_SEARCH_STEPS = 3
# Where no step along Newton's direction lowers the objective at all while the decrement is already below this share
# of it, the decrement is rounding: Newton stops there as at its optimum. Gram entries of 1e10 (a prompt scaled past
# 1,000 by a narrow top of scores, at a strength near the floor) leave the decrement wandering at 1e-11 to 1e-10 of
# the objective: without this stop Newton ran out of its steps on 21 of 32 such problems at the stopping test of
# 1e-12, 10 at 1e-10, and with it on 3 (RESULTS-engine.md, section 11).
_ROUNDING_FLOOR = 1e-8


@dataclass(frozen=True)
class MapFit:
    weight: np.ndarray  # (D,) float64: what ranks, the optimum held within the trust region when one applies
    bias: float
    loss: float  # the objective at the optimum (before an automatic fit's turn is limited: see max_turn)
    strength: float  # the prior strength used (the chosen one, when it was chosen)
    loo_loss: float | None  # the leave-one-out log loss at that strength, when the strength was chosen
    optimum: np.ndarray  # (D,) float64: the weights at the optimum, ``weight`` before its turn is limited
    trust_region: bool  # whether ``weight`` is held within ``max_turn`` of the prompt (an automatic strength)
    # The labels' closed-form leave-one-out logits at ``strength`` (the optimum's, no trust region), where the fit
    # computed them: an automatic choice scores each candidate by them, and a fit at a given strength computes them
    # when asked (``fit_map``'s ``leave_one_out``: the stretched prior's check), so :func:`leave_one_out_logits` of the
    # same rows hands them back instead of a second factorisation (``same_rows``). None where the fit did not compute
    # them.
    held_out: np.ndarray | None = None
    # The candidate strengths an automatic choice solved, strongest first, each with its leave-one-out log loss (the
    # chosen one among them); () for a given strength.
    tried: tuple[tuple[float, float], ...] = ()


class GramCache:
    """``X X^T`` of the last fit's rows and its solution, so that a fit on the same rows plus new ones computes only
    the new rows' products. Rows are matched by value, as a leading run: a relabelled or removed row ends it. Its
    arrays are replaced, never written in place, so a shallow copy is a cache of its own."""

    def __init__(self) -> None:
        self.rows = np.empty((0, 0))
        self.gram = np.empty((0, 0))
        self.solution = np.empty(0)

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
        return gram, start

    def remember(self, solution: np.ndarray) -> None:
        self.solution = solution


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
    x = np.asarray(x, dtype=np.float64)
    norm2 = float(w0 @ w0) or 1.0
    # One BLAS thread: these matrices are far too small to gain from threads, and on a busy 2-core machine
    # OpenBLAS's threads spin-wait on each other: measured 128 ms for one 200 x 200 solve, against 1.3 ms limited.
    with one_blas_thread():
        gram, start = (cache or GramCache()).gram_of(x)
        base = gram + _BIAS_FREEDOM  # G at pull_w = 1/2
        z0 = x @ w0 + b0

        def solve(value: float, warm: np.ndarray) -> tuple[_Optimum, np.ndarray, np.ndarray | None, float]:
            """The optimum at strength ``value`` from ``warm``, G there, and (automatic strength only) the labels'
            held-out logits and their log loss."""
            gram = base * (norm2 / (2 * value))  # G at this strength: 1 / (2 pull_w) = |w0|^2 / (2 strength)
            found = _newton(gram, z0, t, c, warm, max_iter)
            if strength is not None:
                wanted = leave_one_out and found.factor is not None
                return found, gram, _loo_logits(gram, t, c, found.z, found.factor) if wanted else None, 0.0
            held_out = _loo_logits(gram, t, c, found.z, found.factor)
            return found, gram, held_out, float(c @ (np.logaddexp(0, held_out) - t * held_out))

        # The cache keeps g / strength, which fixes the logits whatever the strength (G scales as 1 / strength).
        tried: tuple[tuple[float, float], ...] = ()
        if strength is not None:
            found, _, held_out, _ = solve(strength, start * strength)
            chosen, loo, g, loss = strength, None, found.g, found.value
        else:
            (chosen, loo, g, loss, held_out), tried = _choose(solve, start, len(t), c)
        if cache is not None:
            cache.remember(g / chosen)
        scale = norm2 / (2 * chosen)
        weight = w0 + scale * (x.T @ g)
        bias = b0 + scale * _BIAS_FREEDOM * float(g.sum())
    optimum = weight
    if strength is None:
        weight = within_angle(optimum, w0 / np.sqrt(norm2), max_turn(len(t), int(np.count_nonzero(t > 0.5))))
    return MapFit(weight, bias, loss, chosen, loo, optimum, strength is None, held_out, tried)


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


def _choose(
    solve, start: np.ndarray, labels: int, c: np.ndarray
) -> tuple[tuple[float, float, np.ndarray, float, np.ndarray], tuple[tuple[float, float], ...]]:
    """The strongest candidate whose leave-one-out loss is within ``_MARGIN`` of the lowest: (strength, its
    leave-one-out loss, g, the objective, the held-out logits the loss is of), and the (strength, loss) of each
    candidate solved. A candidate whose loss is above the stronger one's by more than the margin ends the search
    (see the module docstring). The first fit starts from ``start`` (``g / strength`` of the last fit), each next one
    from the previous optimum carried along its tangent (:func:`_extrapolated`): two Newton steps fewer than from the
    previous optimum itself (measured: 13 Cholesky factorisations a fit instead of 17, at 10-300 labels)."""
    fits: list[tuple[float, float, np.ndarray, float, np.ndarray]] = []
    values = candidate_strengths(labels)
    warm = start * values[0]
    for value, following in zip(values, (*values[1:], None), strict=True):
        found, gram, held_out, loo = solve(value, warm)
        fits.append((value, loo, found.g, found.value, held_out))
        if len(fits) > 1 and loo > fits[-2][1] + _MARGIN * abs(fits[-2][1]):
            break
        if following is not None:
            warm = _extrapolated(gram, c, found, value, following)
    lowest = min(fit[1] for fit in fits)
    chosen = next(fit for fit in fits if fit[1] <= lowest + _MARGIN * abs(lowest))
    return chosen, tuple((fit[0], fit[1]) for fit in fits)


def _extrapolated(gram: np.ndarray, c: np.ndarray, optimum: _Optimum, value: float, target: float) -> np.ndarray:
    """A start for the fit at strength ``target``: the optimum at ``value`` followed along its tangent in log strength.

    With ``u = g / strength`` (which fixes the logits) the optimum solves ``r(z0 + strength G u) + strength u = 0``
    (``G`` at strength 1); differentiating, ``du / dlog(strength) = -(I + W G)^-1 u`` with ``G`` at ``value``, which
    is Newton's step formula applied to ``u``, with the factor of ``B`` that Newton left at the optimum."""
    u = optimum.g / value
    if optimum.factor is None:  # Newton ran out of steps: no factor at the optimum, so no tangent
        return u * target
    s = sigmoid(optimum.z)
    root = np.sqrt(c * s * (1 - s))
    slope = root * _checked(dpotrs(optimum.factor, root * (gram @ u), lower=1), "dpotrs") - u
    return (u + slope * np.log(target / value)) * target


@dataclass
class _Optimum:
    g: np.ndarray
    value: float  # the objective at g
    z: np.ndarray  # the logits at g
    factor: np.ndarray | None  # the lower Cholesky factor of B at g, when the last step computed it there


def _newton(
    gram: np.ndarray, z0: np.ndarray, t: np.ndarray, c: np.ndarray, g: np.ndarray, max_iter: int, tol: float = 1e-12
) -> _Optimum:
    """Minimise ``sum c (softplus(z) - t z) + g^T G g / 2`` with ``z = z0 + G g``; damped Newton from ``g``.

    The gradient is ``G (r + g)`` with residuals ``r = c (s - t)``; the Newton step solves ``(I + W G) d = r + g``
    (W = c s (1 - s)), which is ``d = v - sqrt(W) B^-1 sqrt(W) G v`` with ``v = r + g`` and the symmetric positive
    definite ``B = I + sqrt(W) G sqrt(W)``: one Cholesky factorisation a step. The step that finds the optimum
    reached factorises ``B`` there, which is what the leave-one-out loss needs: it is handed on.

    Far from the optimum (:data:`_SEARCH_ABOVE`) the step's length is searched along its line (:func:`_step_length`),
    at a few vectors' cost: there Newton's quadratic model of the logistic loss is too curved, and full steps only
    cut the decrement three- to fivefold each (the ten new labels of a round start at ``g = 0``, often far off)."""

    def objective(candidate: np.ndarray) -> tuple[float, np.ndarray]:
        moved = gram @ candidate
        z = z0 + moved
        return float(c @ (np.logaddexp(0, z) - t * z) + 0.5 * candidate @ moved), z

    value, z = objective(g)
    for _ in range(max_iter):
        s = sigmoid(z)
        v = c * (s - t) + g
        root = np.sqrt(c * s * (1 - s))
        gv = gram @ v
        factor = _factor(gram, root)
        step = v - root * _checked(dpotrs(factor, root * gv, lower=1), "dpotrs")
        decrement = float(gv @ step)  # gradient . step
        if decrement / 2 <= tol * (1 + abs(value)):
            return _Optimum(g, value, z, factor)
        size = 1.0
        if decrement / 2 > _SEARCH_ABOVE * (1 + abs(value)):
            size = _step_length(gram, z, t, c, g, step, decrement)
        while True:  # backtrack until the objective drops enough (Armijo)
            candidate = g - size * step
            candidate_value, candidate_z = objective(candidate)
            if candidate_value <= value - 1e-4 * size * decrement:
                break
            if size < 1e-8:
                if decrement / 2 <= _ROUNDING_FLOOR * (1 + abs(value)):  # see _ROUNDING_FLOOR: g is the optimum
                    return _Optimum(g, value, z, factor)
                break
            size /= 2
        g, value, z = candidate, candidate_value, candidate_z
    return _Optimum(g, value, z, None)


def _step_length(
    gram: np.ndarray, z: np.ndarray, t: np.ndarray, c: np.ndarray, g: np.ndarray, step: np.ndarray, decrement: float
) -> float:
    """Where the objective is lowest along ``g - a step``, roughly: safeguarded Newton on ``a`` from 1, until the
    slope is a tenth of its start's (``-decrement``) or :data:`_SEARCH_STEPS` tries.

    Along the line the logits move linearly (``z - a G step``) and the prior term is a parabola, so each try costs a
    sigmoid of the labels, not a product with ``G``. The objective is convex in ``a``: a bracket ``[low, high]``
    around its minimum catches a Newton try that leaves it (then the bracket is halved, or ``a`` doubled while no
    upper end is known). Measured on real rounds 20 (10k x 512, 200 random labels): 150 Cholesky factorisations in
    eight rounds instead of 178; most searched steps come out 1.3-1.8 times Newton's own (RESULTS-engine.md, section
    11)."""
    along = gram @ step  # d z / d a = -along
    pulled, curved = float(along @ g), float(along @ step)  # the prior term's slope at 0, and its curvature
    size, low, high = 1.0, 0.0, np.inf
    for _ in range(_SEARCH_STEPS):
        s = sigmoid(z - size * along)
        slope = curved * size - pulled - float((c * (s - t)) @ along)
        if abs(slope) <= 0.1 * decrement:
            break
        low, high = (low, size) if slope > 0 else (size, high)
        curvature = curved + float((c * s * (1 - s)) @ (along * along))  # > 0 but for rounding: then no guess
        guess = size - slope / curvature if curvature > 0 else np.nan
        size = guess if low < guess < high else (2 * size if high == np.inf else (low + high) / 2)
    return size


def _factor(gram: np.ndarray, root: np.ndarray) -> np.ndarray:
    """The lower Cholesky factor of ``B = I + sqrt(W) G sqrt(W)`` (``root`` = sqrt(W)); B's eigenvalues are >= 1."""
    b = gram * root[:, None]  # one temporary, scaled in place: a quarter of a factorisation's time at 200 labels
    b *= root[None, :]
    b.flat[:: len(root) + 1] += 1
    # b is symmetric, so its transpose is the same matrix in the column order LAPACK wants: no copy. ``clean`` zeroes
    # the upper triangle, which _inverse_diagonal's products read.
    return _checked(dpotrf(b.T, lower=1, clean=1, overwrite_a=1), "dpotrf")


def _checked(result: tuple[np.ndarray, int], routine: str) -> np.ndarray:
    """A LAPACK routine's answer, or an error where it failed (``info`` != 0: never, for a finite ``B``)."""
    answer, info = result
    if info != 0:
        raise np.linalg.LinAlgError(f"{routine} failed (info {info}) in the label-space fit: non-finite inputs?")
    return answer


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
            return _loo_logits(gram, t, c, z, None)
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


def _loo_logits(gram: np.ndarray, t: np.ndarray, c: np.ndarray, z: np.ndarray, factor: np.ndarray | None) -> np.ndarray:
    """The labels' logits ``z`` under the fit with ``G = gram``, each moved to the fit without it; ``factor``: B's
    Cholesky factor at ``z``, when the fit has it.

    The move is ``H_ii r_i / (1 - W_ii H_ii)``. With ``B = I + sqrt(W) G sqrt(W)``, ``W_ii H_ii = 1 - (B^-1)_ii``
    (expand ``H = G - G sqrt(W) B^-1 sqrt(W) G`` with ``sqrt(W) G sqrt(W) = B - I``) and ``r_i / W_ii = (s_i - t_i) /
    (s_i (1 - s_i))``, so the move is ``(1 / (B^-1)_ii - 1) (s_i - t_i) / (s_i (1 - s_i))``: ``diag B^-1`` takes
    one triangular inverse (:func:`_inverse_diagonal`), a third of the arithmetic of the n right-hand sides ``diag H``
    would, and it is the more accurate of the two (checked against 40-digit arithmetic: 1e-12 off where ``diag H``
    was 1e-10). Its rounding (about 1e-16 of ``(B^-1)_ii``) is multiplied by ``1 / (s (1 - s))``, so a label fitted
    within 1e-8 of 0 or 1 is moved from ``H_ii`` itself, one right-hand side each."""
    s = sigmoid(z)
    w = c * s * (1 - s)
    root = np.sqrt(w)
    factor = _factor(gram, root) if factor is None else factor  # B = L L^T
    b_inverse = _inverse_diagonal(factor)
    curvature = s * (1 - s)
    close = curvature < _CLOSE_TO_CERTAIN
    move = np.empty(len(z))
    move[~close] = (1 / b_inverse[~close] - 1) * (s - t)[~close] / curvature[~close]
    if close.any():
        # diag H there: G_ii less the squared norm of L^-1 sqrt(W) G e_i.
        half = _checked(dtrtrs(factor, root[:, None] * gram[:, close], lower=1), "dtrtrs")
        leverage = np.diag(gram)[close] - np.einsum("ij,ij->j", half, half)
        move[close] = leverage * c[close] * (s - t)[close] / np.maximum(1 - w[close] * leverage, 1e-12)
    return z + move


def _inverse_diagonal(factor: np.ndarray) -> np.ndarray:
    """``diag B^-1`` from B's lower Cholesky factor ``L`` (upper triangle zero): the columns' squared norms of
    ``L^-1``, inverted by halves, ``[[A, 0], [C, D]]^-1 = [[A^-1, 0], [-D^-1 C A^-1, D^-1]]``: two triangular
    inverses of half the size and two products. OpenBLAS inverts small triangles unblocked: at 200 labels this takes
    0.21 ms against 0.34 for ``dtrtri`` of the whole (and 0.48 for the n right-hand sides of ``diag H``)."""
    half = len(factor) // 2
    if half == 0:  # one label (LAPACK refuses an empty triangle)
        return np.diag(factor) ** -2.0
    upper = _checked(dtrtri(factor[:half, :half], lower=1), "dtrtri")  # A^-1
    lower = _checked(dtrtri(factor[half:, half:], lower=1), "dtrtri")  # D^-1
    across = lower @ (factor[half:, :half] @ upper)  # D^-1 C A^-1, the block below A^-1 but for its sign
    squares = np.einsum("ij,ij->j", upper, upper)
    squares += np.einsum("ij,ij->j", across, across)
    return np.concatenate([squares, np.einsum("ij,ij->j", lower, lower)])
