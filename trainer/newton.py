"""Damped Newton in label space, and the closed-form leave-one-out at its optimum: the solver under
``trainer/map_fit.py``, which chooses the prior strength and keeps the Gram matrix between rounds.

The problem: minimise over ``g`` in R^n (and, with free directions, ``a`` in R^k)

    sum_i c_i (softplus(z_i) - t_i z_i) + g^T G g / 2 + a^T a / 2,   z = z0 + G g + Q a,

where ``G`` is the labels' Gram matrix scaled by the prior (see ``trainer/map_fit.py``) and the ``k`` columns of ``Q``
are directions along which the prior lets the logits move more freely (``trainer/prior_axes.py``: the collection's
leading axes; without them ``k = 0``). Each Newton step factorises one n x n matrix, ``B = I + sqrt(W) G sqrt(W)``
with ``W = c s (1 - s)`` the curvature (Cholesky). The free directions cost no factorisation of their own: their k
unknowns are eliminated through that factor (a k x k Schur complement, ``I + V^T B^-1 V`` with ``V = sqrt(W) Q``).
That is the same fit as Newton on the Gram matrix ``G + Q Q^T`` (the prior's covariance has the extra ``Q Q^T``),
but it can start where the fit without the free directions ended, ``a = 0``, with the factor that fit left there: at
200 random labels a freer fit at the strength an automatic fit chose takes 3-4 factorisations from there, against 6-8
from its own last round's solution (``map_fit.fit_map_freer`` starts from the latter where the labels keep choosing
the freer prior and the objective is lower there; RESULTS-engine.md, section 13).

The step that finds the optimum reached factorises ``B`` there, which is what the leave-one-out logits need
(:func:`held_out_logits`): leaving label i out moves its logit to ``z_i + H_ii r_i / (1 - W_ii H_ii)`` (``r`` the
residuals, ``H = G (I + W G)^-1``; the usual approximation for regularised GLMs, exact for a quadratic loss).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg.lapack import dposv, dpotrf, dpotrs, dtrtri, dtrtrs

from .logistic import sigmoid

__all__ = ["Optimum", "held_out_logits", "objective", "solve", "tangent_start"]

# Labels fitted closer to certain than this (``s (1 - s)``) are held out from ``diag H`` rather than ``diag B^-1``
# (see held_out_logits): the shortcut's rounding grows as its inverse.
_CLOSE_TO_CERTAIN = 1e-8
# Newton searches its step's length while its decrement is above this share of the objective (see solve): below,
# full steps converge quadratically and a search would only cost time. At most _SEARCH_STEPS tries a step.
_SEARCH_ABOVE = 1e-4
_SEARCH_STEPS = 3
# Where no step along Newton's direction lowers the objective at all while the decrement is already below this share
# of it, the decrement is rounding: Newton stops there as at its optimum. Gram entries of 1e10 (a prompt scaled past
# 1,000 by a narrow top of scores, at a strength near the floor) leave the decrement wandering at 1e-11 to 1e-10 of
# the objective: without this stop Newton ran out of its steps on 21 of 32 such problems at the stopping test of
# 1e-12, 10 at 1e-10, and with it on 3 (RESULTS-engine.md, section 11).
_ROUNDING_FLOOR = 1e-8


@dataclass
class Optimum:
    g: np.ndarray
    value: float  # the objective at (g, free)
    z: np.ndarray  # the logits at (g, free)
    factor: np.ndarray | None  # the lower Cholesky factor of B at z, when the last step computed it there
    free: np.ndarray  # (k,) the free directions' coordinates ``a``; empty without free directions


def solve(
    gram: np.ndarray,
    z0: np.ndarray,
    t: np.ndarray,
    c: np.ndarray,
    start: np.ndarray | Optimum,
    max_iter: int,
    tol: float = 1e-12,
    *,
    free: np.ndarray | None = None,
    a: np.ndarray | None = None,
) -> Optimum:
    """The optimum of the module docstring's problem with ``G = gram`` and ``Q = free`` (n, k) (none: k = 0),
    by damped Newton from ``start``: ``g`` and the free coordinates ``a`` (0 where None), or an :class:`Optimum` of
    the same labels with fewer free directions, whose factor serves the first step (its ``free`` padded with zeros).

    The gradient in ``g`` is ``G (r + g)`` with residuals ``r = c (s - t)``; without free directions the Newton step
    solves ``(I + W G) d = r + g``, which is ``d = v - sqrt(W) B^-1 sqrt(W) G v`` with ``v = r + g``. Far from the
    optimum (:data:`_SEARCH_ABOVE`) the step's length is searched along its line (:func:`_step_length`), at a few
    vectors' cost: there Newton's quadratic model of the logistic loss is too curved, and full steps only cut the
    decrement three- to fivefold each (the ten new labels of a round start at ``g = 0``, often far off)."""
    q = np.empty((len(t), 0)) if free is None else free
    if isinstance(start, Optimum):
        g, a, factor = start.g, np.r_[start.free, np.zeros(q.shape[1] - len(start.free))], start.factor
    else:
        g, a, factor = start, np.zeros(q.shape[1]) if a is None else a, None
    value, z = objective(gram, z0, t, c, g, q, a)
    for _ in range(max_iter):
        s = sigmoid(z)
        r = c * (s - t)
        v = r + g
        root = np.sqrt(c * s * (1 - s))
        gv = gram @ v
        factor = _factor(gram, root) if factor is None else factor
        dg, da, decrement = _step(factor, q, root, v, gv, r, a)
        if decrement / 2 <= tol * (1 + abs(value)):
            return Optimum(g, value, z, factor, a)
        size = 1.0
        if decrement / 2 > _SEARCH_ABOVE * (1 + abs(value)):
            pushed = gram @ dg
            prior = (float(pushed @ g + da @ a), float(pushed @ dg + da @ da))  # the prior term's slope and curvature
            size = _step_length(z, t, c, pushed + q @ da, *prior, decrement)
        while True:  # backtrack until the objective drops enough (Armijo)
            candidate, candidate_a = g - size * dg, a - size * da
            candidate_value, candidate_z = objective(gram, z0, t, c, candidate, q, candidate_a)
            if candidate_value <= value - 1e-4 * size * decrement:
                break
            if size < 1e-8:
                if decrement / 2 <= _ROUNDING_FLOOR * (1 + abs(value)):  # see _ROUNDING_FLOOR: g is the optimum
                    return Optimum(g, value, z, factor, a)
                break
            size /= 2
        g, a, value, z, factor = candidate, candidate_a, candidate_value, candidate_z, None
    return Optimum(g, value, z, None, a)


def objective(
    gram: np.ndarray,
    z0: np.ndarray,
    t: np.ndarray,
    c: np.ndarray,
    g: np.ndarray,
    free: np.ndarray,
    a: np.ndarray,
) -> tuple[float, np.ndarray]:
    """The module docstring's objective at ``g`` and the free directions' coordinates ``a`` (``free`` (n, k), ``a``
    (k,); k may be 0), and the logits there."""
    moved = gram @ g
    z = z0 + moved + free @ a
    return float(c @ (np.logaddexp(0, z) - t * z) + 0.5 * g @ moved + 0.5 * a @ a), z


def _step(
    factor: np.ndarray, q: np.ndarray, root: np.ndarray, v: np.ndarray, gv: np.ndarray, r: np.ndarray, a: np.ndarray
) -> tuple[np.ndarray, np.ndarray, float]:
    """Newton's step in ``g`` and ``a`` and its decrement (the gradient . step), from the factor ``L`` of ``B``;
    ``r`` the residuals, ``v = r + g``, ``gv = G v`` (the gradient in ``g``).

    With free directions, the step in ``a`` solves the Schur complement ``(I + F^T F) da = p - F^T f``, where ``p =
    Q^T r + a`` is the gradient in ``a``, ``F = L^-1 V`` and ``f = L^-1 sqrt(W) G v``; then ``dg = v - sqrt(W) L^-T
    (f + F da)``. Two triangular solves, the first with k + 1 right-hand sides: the factor of ``B`` serves both
    unknowns."""
    if not q.shape[1]:
        step = v - root * _checked(dpotrs(factor, root * gv, lower=1), "dpotrs")
        return step, np.empty(0), float(gv @ step)
    half = _checked(dtrtrs(factor, np.column_stack([root * gv, root[:, None] * q]), lower=1), "dtrtrs")
    f, across = half[:, 0], half[:, 1:]
    schur = across.T @ across
    schur.flat[:: len(schur) + 1] += 1
    pulled = q.T @ r + a
    *_, da, info = dposv(schur, pulled - across.T @ f, lower=1)
    _checked((da, info), "dposv")
    dg = v - root * _checked(dtrtrs(factor, f + across @ da, lower=1, trans=1), "dtrtrs")
    return dg, da, float(gv @ dg + pulled @ da)


def _step_length(
    z: np.ndarray, t: np.ndarray, c: np.ndarray, along: np.ndarray, pulled: float, curved: float, decrement: float
) -> float:
    """Where the objective is lowest along the step, roughly: safeguarded Newton on its length ``a`` from 1, until
    the slope is a tenth of its start's (``-decrement``) or :data:`_SEARCH_STEPS` tries. ``along``: how the logits
    move per unit of ``a`` (``z - a along``); ``pulled``, ``curved``: the prior term's slope at 0 (but for its sign)
    and its curvature.

    Along the line the logits move linearly and the prior term is a parabola, so each try costs a sigmoid of the
    labels, not a product with ``G``. The objective is convex in ``a``: a bracket ``[low, high]`` around its minimum
    catches a Newton try that leaves it (then the bracket is halved, or ``a`` doubled while no upper end is known).
    Measured on real rounds 20 (10k x 512, 200 random labels): 150 Cholesky factorisations in eight rounds instead of
    178; most searched steps come out 1.3-1.8 times Newton's own (RESULTS-engine.md, section 11)."""
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


def tangent_start(gram: np.ndarray, c: np.ndarray, optimum: Optimum, value: float, target: float) -> np.ndarray:
    """A start for the fit at strength ``target`` (no free directions): the optimum at ``value`` followed along its
    tangent in log strength.

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


def held_out_logits(
    gram: np.ndarray,
    t: np.ndarray,
    c: np.ndarray,
    z: np.ndarray,
    factor: np.ndarray | None,
    free: np.ndarray | None = None,
) -> np.ndarray:
    """The labels' logits ``z`` under the fit with ``G = gram`` (and free directions ``free``, as :func:`solve`
    takes them), each moved to the fit without it; ``factor``: B's Cholesky factor at ``z``, when the fit has it.

    The move is ``H_ii r_i / (1 - W_ii H_ii)``. With ``B = I + sqrt(W) G sqrt(W)``, ``W_ii H_ii = 1 - (B^-1)_ii``
    (expand ``H = G - G sqrt(W) B^-1 sqrt(W) G`` with ``sqrt(W) G sqrt(W) = B - I``) and ``r_i / W_ii = (s_i - t_i) /
    (s_i (1 - s_i))``, so the move is ``(1 / (B^-1)_ii - 1) (s_i - t_i) / (s_i (1 - s_i))``: ``diag B^-1`` takes
    one triangular inverse (:func:`_inverse_diagonal`), a third of the arithmetic of the n right-hand sides ``diag H``
    would, and it is the more accurate of the two (checked against 40-digit arithmetic: 1e-12 off where ``diag H``
    was 1e-10). Its rounding (about 1e-16 of ``(B^-1)_ii``) is multiplied by ``1 / (s (1 - s))``, so a label fitted
    within 1e-8 of 0 or 1 is moved from ``H_ii`` itself, one right-hand side each. Free directions add ``V V^T`` to
    ``B`` (``V = sqrt(W) Q``) and ``Q Q^T`` to ``G``; the inverse of ``B + V V^T`` is that of ``B`` less ``B^-1 V (I +
    V^T B^-1 V)^-1 V^T B^-1`` (Woodbury), a few triangular solves with k right-hand sides, no factorisation of n x n
    more."""
    s = sigmoid(z)
    w = c * s * (1 - s)
    root = np.sqrt(w)
    curvature = s * (1 - s)
    close = curvature < _CLOSE_TO_CERTAIN
    factor = _factor(gram, root) if factor is None else factor  # B = L L^T
    b_inverse = _inverse_diagonal(factor)
    woodbury = None
    if free is not None and free.shape[1]:
        across = _checked(dtrtrs(factor, root[:, None] * free, lower=1), "dtrtrs")  # F = L^-1 V
        schur = across.T @ across
        schur.flat[:: len(schur) + 1] += 1
        woodbury = across, _checked(dpotrf(schur, lower=1, clean=1), "dpotrf")  # F, and C with C C^T = I + F^T F
        right = _checked(dtrtrs(factor, across, lower=1, trans=1), "dtrtrs")  # B^-1 V
        half = _checked(dtrtrs(woodbury[1], right.T, lower=1), "dtrtrs")
        b_inverse -= np.einsum("ij,ij->j", half, half)
    move = np.empty(len(z))
    move[~close] = (1 / b_inverse[~close] - 1) * (s - t)[~close] / curvature[~close]
    if close.any():
        # diag H there: G_ii less the squared norm of L^-1 sqrt(W) G e_i (with the free directions, G + Q Q^T, and
        # the norm in B + V V^T's inverse: Woodbury again).
        columns, diagonal = gram[:, close], np.diag(gram)[close]
        if woodbury is not None:
            columns, diagonal = (
                columns + free @ free[close].T,
                diagonal + np.einsum("ij,ij->i", free[close], free[close]),
            )
        half = _checked(dtrtrs(factor, root[:, None] * columns, lower=1), "dtrtrs")
        norms = np.einsum("ij,ij->j", half, half)
        if woodbury is not None:
            inner = _checked(dtrtrs(woodbury[1], woodbury[0].T @ half, lower=1), "dtrtrs")
            norms -= np.einsum("ij,ij->j", inner, inner)
        leverage = diagonal - norms
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
