"""The label-space MAP fit: its optimum, its leave-one-out loss and its reuse of earlier fits, each checked against
the definitions written out directly (dense inverses, no factorisation reused), so that a faster solver cannot
change what a fit returns."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from trainer import map_fit
from trainer.classifier import label_targets

BIAS_FREEDOM = 100.0  # pull_b = pull_w / 100, as in trainer/map_fit.py's module docstring


def problem(concept, labels: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
    """(x, t, c, w0, b0): ``labels`` rows of the concept with oracle labels of random confidence, and its prompt."""
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(concept.ids), labels, replace=False)
    scores = np.where(concept.truth[rows], 1.0, -1.0) * rng.uniform(0.3, 1, labels)
    t, c = label_targets(scores.astype(np.float32))
    return (
        concept.vectors[rows].astype(np.float64),
        t.astype(np.float64),
        c.astype(np.float64),
        concept.prompt_vector * 30.0,
        -20.0,
    )


def kernel(x: np.ndarray, w0: np.ndarray, strength: float) -> np.ndarray:
    """``G``: the logits move by ``G g`` (see trainer/map_fit.py)."""
    return (x @ x.T + BIAS_FREEDOM) * float(w0 @ w0) / (2 * strength)


@pytest.mark.parametrize("strength", [None, 0.3, 10.0, 300.0])
def test_the_fit_is_where_the_objective_is_flat(concept, strength):
    x, t, c, w0, b0 = problem(concept, 120, seed=1)
    fit = map_fit.fit_map(x, t, c, w0, b0, strength)
    pull_w = fit.strength / float(w0 @ w0)
    residual = c * (1 / (1 + np.exp(-(x @ fit.optimum + fit.bias))) - t)
    grad_w = residual @ x + 2 * pull_w * (fit.optimum - w0)
    grad_b = residual.sum() + 2 * pull_w / BIAS_FREEDOM * (fit.bias - b0)
    assert np.abs(grad_w).max() < 1e-6 * (1 + np.abs(residual @ x).max())
    assert abs(grad_b) < 1e-6 * (1 + np.abs(residual).sum())


@pytest.mark.parametrize("seed", [2, 3, 4])
def test_the_leave_one_out_loss_is_the_one_its_definition_gives(concept, seed):
    """``H = G (I + W G)^-1`` by a dense inverse; a label's logit without it is ``z + H_ii r_i / (1 - W_ii H_ii)``."""
    x, t, c, w0, b0 = problem(concept, 15 * seed, seed)
    fit = map_fit.fit_map(x, t, c, w0, b0, None)
    assert fit.strength in map_fit.candidate_strengths(len(t))
    z_out = held_out_by_definition(x, t, c, w0, fit)
    assert fit.loo_loss == pytest.approx(float(c @ (np.logaddexp(0, z_out) - t * z_out)), rel=1e-7)


MARGIN = 0.02  # a weaker candidate must beat the stronger ones' leave-one-out loss by this share (map_fit's margin)


@pytest.mark.parametrize(
    "labels, seed, solved",
    [(10, 0, 2), (80, 4, 2), (10, 1, 3), (40, 4, 3), (20, 4, 3)],  # (20, 4): the second's loss rises, by under 2%
)
def test_the_search_stops_where_a_weaker_strength_is_worse_by_more_than_the_margin(concept, labels, seed, solved):
    """Each candidate's leave-one-out loss is that of a fit at its strength alone. One step weaker and worse by more
    than the margin, the second step is not solved; the choice is the strongest within the margin of the lowest."""
    x, t, c, w0, b0 = problem(concept, labels, seed)
    fit = map_fit.fit_map(x, t, c, w0, b0, None)
    strengths = map_fit.candidate_strengths(len(t))
    losses = []
    for value in strengths:
        held_out = map_fit.fit_map(x, t, c, w0, b0, value, leave_one_out=True).held_out
        losses.append(float(c @ (np.logaddexp(0, held_out) - t * held_out)))
    rose = losses[1] > losses[0] * (1 + MARGIN)
    assert len(fit.tried) == solved == (2 if rose else 3)
    assert [value for value, _ in fit.tried] == list(strengths[:solved])
    # Each solve stops within 1e-12 of its optimum in objective, so within about 1e-6 in g: the losses agree to 1e-5.
    np.testing.assert_allclose([loss for _, loss in fit.tried], losses[:solved], rtol=1e-5)
    lowest = min(losses[:solved])
    assert fit.strength == next(value for value, loss in fit.tried if loss <= lowest + MARGIN * lowest)
    assert map_fit.fit_map(x, t, c, w0, b0, 10.0).tried == ()  # a given strength tries nothing


def held_out_by_definition(x, t, c, w0, fit) -> np.ndarray:
    """Each label's logit at ``fit``'s optimum moved to the fit without it, ``z + H_ii r_i / (1 - W_ii H_ii)``, with
    ``H = G (I + W G)^-1`` by a dense inverse."""
    gram = kernel(x, w0, fit.strength)
    z = x @ fit.optimum + fit.bias  # the optimum's: the trust region bounds the weights after the choice
    s = 1 / (1 + np.exp(-z))
    w = c * s * (1 - s)
    leverage = np.diag(gram @ np.linalg.inv(np.eye(len(t)) + w[:, None] * gram))
    return z + leverage * c * (s - t) / (1 - w * leverage)


@pytest.mark.parametrize("labels", [1, 2, 3, 11])
def test_held_out_logits_of_a_few_labels_are_the_definitions(concept, labels):
    """The held-out logits' diagonal is inverted by halves: one label (no halves) and odd counts too."""
    x, t, c, w0, b0 = problem(concept, labels, seed=8)
    fit = map_fit.fit_map(x, t, c, w0, b0, None)
    np.testing.assert_allclose(fit.held_out, held_out_by_definition(x, t, c, w0, fit), rtol=0, atol=1e-6)


@pytest.mark.parametrize("strength", [0.3, 10.0, 300.0])
def test_a_fit_at_a_given_strength_hands_back_held_out_logits_when_asked(concept, strength):
    """``leave_one_out=True`` at a given strength computes the held-out logits from Newton's last factorisation: the
    definition's, and only when asked."""
    x, t, c, w0, b0 = problem(concept, 90, seed=5)
    fit = map_fit.fit_map(x, t, c, w0, b0, strength, leave_one_out=True)
    np.testing.assert_allclose(fit.held_out, held_out_by_definition(x, t, c, w0, fit), rtol=0, atol=1e-6)
    assert fit.loo_loss is None  # no strength was chosen
    assert map_fit.fit_map(x, t, c, w0, b0, strength).held_out is None


def test_held_out_logits_of_labels_fitted_to_certainty_are_the_definitions(concept):
    """The held-out move goes through ``diag B^-1`` (a third of the arithmetic of ``diag H``), whose rounding is
    multiplied by ``1 / (s (1 - s))``; labels fitted within 1e-8 of certain, right or wrong, take ``diag H`` instead.
    A prompt ten times sharper than the others here, held by a strong prior, fits labels to logits past +-40 (where
    ``s (1 - s)`` is 0 in float64) and flips three against it: every held-out logit is the definition's."""
    x, t, c, w0, b0 = problem(concept, 60, seed=7)
    w0 = w0 * 10
    t = np.where((x @ w0 + b0) > 0, 1.0, 0.0)
    t[:3] = 1 - t[:3]  # three labels the prompt is certain are wrong
    fit = map_fit.fit_map(x, t, c, w0, b0, 1e4, leave_one_out=True)
    z = x @ fit.optimum + fit.bias
    curvature = 1 / (1 + np.exp(-z)) * (1 - 1 / (1 + np.exp(-z)))
    wrong_and_certain = ((z > 0) != (t > 0.5)) & (curvature < 1e-8)
    assert wrong_and_certain.sum() >= 2 and (curvature == 0).any()  # the cases are there
    expected = held_out_by_definition(x, t, c, w0, fit)
    np.testing.assert_allclose(fit.held_out, expected, rtol=1e-9, atol=1e-6)
    assert (np.abs(fit.held_out - z)[wrong_and_certain] > 1).all()  # they move, as the definition says


def random_labels(seed: int, *, dim: int, norm: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x, t, c, w0): 200 random unit rows of ``dim`` with random +-1 labels (balanced weights), and a random prompt
    of length ``norm``: what a session's fit sees when its labels follow nothing the prompt knows."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((200, dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    w0 = rng.standard_normal(dim)
    w0 *= norm / np.linalg.norm(w0)
    t, c = (a.astype(np.float64) for a in label_targets(rng.choice([-1.0, 1.0], 200).astype(np.float32)))
    return x, t, c, w0


@pytest.mark.parametrize("seed", [0, 2, 3])
def test_a_round_with_ten_new_labels_converges_in_nine_newton_steps(seed):
    """A session's round refits from the last round's solution with its ten new labels at zero; far from their
    optimum, Newton searches its step's length along its line. Full steps took 10-12 factorisations on these rounds
    (random +-1 labels on random unit vectors, the prompt's scale and bias a session calibrates for them), the
    searched ones 7-8: ``max_iter`` counts them, and a fit out of steps has no held-out logits."""
    x, t, c, w0 = random_labels(seed, dim=512, norm=117.5)
    cache = map_fit.GramCache()
    map_fit.fit_map(x[:190], t[:190], c[:190], w0, -12.0, 5.0, cache=cache)
    fit = map_fit.fit_map(x, t, c, w0, -12.0, 5.0, cache=cache, max_iter=9, leave_one_out=True)
    assert fit.held_out is not None
    fresh = map_fit.fit_map(x, t, c, w0, -12.0, 5.0)
    np.testing.assert_allclose(fit.weight, fresh.weight, rtol=0, atol=1e-5 * np.abs(fresh.weight).max())


@pytest.mark.parametrize(("norm", "seed"), [(3e3, 0), (3e3, 1), (1e4, 2), (1e4, 3)])
def test_a_fit_whose_decrement_is_down_to_rounding_stops_at_its_optimum(norm, seed):
    """A prompt scaled past 1,000 (a narrow top of scores calibrates it so) at a strength near the floor puts Gram
    entries near 1e10: the decrement then wanders at 1e-11 to 1e-10 of the objective and no step lowers it. Newton
    stops there with the factor it has (held-out logits present) instead of running out of steps, as it did on each of
    these at a stopping test of 1e-12 (and on two of them at 1e-10). The gradient is flat to 1e-4 of the terms that
    cancel in it (1e-6 to 2e-5 here), as flat as 50 steps without this stop made it."""
    x, t, c, w0 = random_labels(seed, dim=64, norm=norm)
    fit = map_fit.fit_map(x, t, c, w0, 0.0, 0.05, leave_one_out=True)
    assert fit.held_out is not None and np.isfinite(fit.held_out).all()
    residual = c * (1 / (1 + np.exp(-(x @ fit.optimum + fit.bias))) - t)
    grad_w = residual @ x + 2 * 0.05 / float(w0 @ w0) * (fit.optimum - w0)
    assert np.abs(grad_w).max() < 1e-4 * (np.abs(residual) @ np.abs(x)).max()


@pytest.mark.parametrize("strength", [None, 10.0])
def test_fits_that_reuse_earlier_rounds_equal_fresh_fits_round_after_round(concept, strength):
    """The cache carries the Gram matrix and the last solutions from round to round (as a session's classifier
    does); every round's fit must be the one a fit from nothing gives: same strength, weights within 1e-5 of their
    size (Newton stops once a step would change the objective by under 1e-12 of it, wherever it started)."""
    x, t, c, w0, b0 = problem(concept, 200, seed=5)
    cache = map_fit.GramCache()
    for n in range(10, 201, 10):
        kept = map_fit.fit_map(x[:n], t[:n], c[:n], w0, b0, strength, cache=cache)
        fresh = map_fit.fit_map(x[:n], t[:n], c[:n], w0, b0, strength)
        assert kept.strength == fresh.strength
        size = np.abs(fresh.weight).max()
        np.testing.assert_allclose(kept.weight, fresh.weight, rtol=0, atol=1e-5 * size)
        assert kept.bias == pytest.approx(fresh.bias, abs=1e-5 * max(size, abs(fresh.bias)))
        assert kept.loss == pytest.approx(fresh.loss, rel=1e-9)


def contradicted(concept, positives: int, labels: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
    """(x, t, c, w0, b0): ``positives`` of the concept's images and ``labels - positives`` others, labelled by the
    truth, under a prompt that points away from the concept: labels that pull the fit far from the prompt."""
    rng = np.random.default_rng(positives)
    rows = np.concatenate(
        [
            rng.choice(np.flatnonzero(concept.truth), positives, replace=False),
            rng.choice(np.flatnonzero(~concept.truth), labels - positives, replace=False),
        ]
    )
    t, c = label_targets(np.where(concept.truth[rows], 1.0, -1.0).astype(np.float32))
    return (
        concept.vectors[rows].astype(np.float64),
        t.astype(np.float64),
        c.astype(np.float64),
        -30.0 * concept.prompt_vector,
        5.0,
    )


def turn(weight: np.ndarray, w0: np.ndarray) -> float:
    """The angle between ``weight`` and the prompt ``w0`` (by arctan2: arccos loses digits near 0)."""
    on = weight @ w0 / np.linalg.norm(w0)
    return float(np.arctan2(np.linalg.norm(weight - on * w0 / np.linalg.norm(w0)), on))


@pytest.mark.parametrize("positives", [1, 3, 5, 7])
def test_an_automatic_fit_on_few_positives_turns_from_the_prompt_at_most_its_trust_region(concept, positives):
    """A direction estimated from a handful of positives is mostly noise: the automatic fit stops at ``max_turn``,
    where the same fit at a fixed strength (the one it chose, which keeps its meaning) turns further."""
    x, t, c, w0, b0 = contradicted(concept, positives, 10)
    fit = map_fit.fit_map(x, t, c, w0, b0, None)
    free = map_fit.fit_map(x, t, c, w0, b0, fit.strength)
    limit = map_fit.max_turn(10, positives)
    assert turn(free.weight, w0) > limit + 0.05
    assert turn(fit.weight, w0) == pytest.approx(limit, abs=1e-7)
    np.testing.assert_allclose(fit.optimum, free.weight, rtol=0, atol=1e-5 * np.abs(free.weight).max())  # kept
    # The same fit otherwise (Newton started elsewhere: equal within its tolerance)
    assert fit.bias == pytest.approx(free.bias, rel=1e-5) and fit.strength == free.strength


def test_an_automatic_fit_on_many_positives_is_not_limited(concept):
    x, t, c, w0, b0 = contradicted(concept, 15, 20)
    fit = map_fit.fit_map(x, t, c, w0, b0, None)
    free = map_fit.fit_map(x, t, c, w0, b0, fit.strength)
    assert turn(fit.weight, w0) > 0.5
    np.testing.assert_allclose(fit.weight, free.weight, rtol=0, atol=1e-5 * np.abs(free.weight).max())


@pytest.mark.parametrize("positives", [5, 7])
def test_leave_one_out_logits_of_a_limited_fit_are_refits_without_each_label_held_within_its_trust_region(
    concept, positives
):
    """What ranks is the optimum held within the trust region, so a label's held-out logit is the fit without it
    (at the same strength, the other labels' weights unchanged) held within the trust region of the labels left. The
    closed form gets there from the optimum the fit kept; the limited weights themselves are no optimum."""
    x, t, c, w0, b0 = contradicted(concept, positives, 10)
    fit = map_fit.fit_map(x, t, c, w0, b0, None)
    assert fit.trust_region and turn(fit.optimum, w0) > turn(fit.weight, w0) + 0.05  # the trust region binds
    unit = w0 / np.linalg.norm(w0)
    refits, free = np.empty(len(t)), np.empty(len(t))
    for i in range(len(t)):
        left = np.arange(len(t)) != i
        without = map_fit.fit_map(x[left], t[left], c[left], w0, b0, fit.strength)
        limit = map_fit.max_turn(len(t) - 1, int(np.count_nonzero(t[left] > 0.5)))
        refits[i] = map_fit.within_angle(without.weight, unit, limit) @ x[i] + without.bias
        free[i] = without.weight @ x[i] + without.bias
    held_out = map_fit.leave_one_out_logits(x, t, c, fit, w0, b0)
    gap = np.abs(held_out - refits)
    assert np.median(gap) < 0.03 and gap.max() < 0.3
    assert np.abs(free - refits).max() > 2  # held within the trust region, not the optimum's own held-out logits
    assert np.abs(x @ fit.weight + fit.bias - refits).max() > 2  # what the closed form corrects
    other = map_fit.fit_map(x[1:], t[1:], c[1:], w0, b0, None)  # a fit on other labels gives no answer
    assert map_fit.leave_one_out_logits(x, t, c, other, w0, b0) is None


def condition_gap(x, t, c, w0, b0, strength: float, weight: np.ndarray, bias: float) -> float:
    """How far ``weight, bias`` are from the optimum's condition at ``strength``, in a label's weight: the gradient
    of the objective over ``2 pull_w`` (the bias's over ``2 pull_b``)."""
    scale = float(w0 @ w0) / (2 * strength)
    residual = c * (1 / (1 + np.exp(-(x @ weight + bias))) - t)
    return float(
        np.linalg.norm((weight - w0) / scale + residual @ x)
        + abs((bias - b0) / (scale * BIAS_FREEDOM) + residual.sum())
    )


def test_leave_one_out_takes_a_fit_as_near_its_optimum_as_newton_leaves_one(concept):
    """Newton stops within about 3e-4 of a label's weight of the optimum's condition (measured on the bundle's
    sessions), and such a fit is the fit of its labels: its held-out logits are given, within 0.01 of the
    exact optimum's (the closed form itself is 0.01-0.3 off refits). One off by a hundredth of a label's weight is
    refused."""
    x, t, c, w0, b0 = problem(concept, 80, seed=6)
    fit = map_fit.fit_map(x, t, c, w0, b0, 10.0)
    per_unit = condition_gap(x, t, c, w0, b0, fit.strength, fit.optimum, fit.bias + 1e-4) / 1e-4
    near = dataclasses.replace(fit, bias=fit.bias + 3e-4 / per_unit)
    far = dataclasses.replace(fit, bias=fit.bias + 1e-2 / per_unit)
    assert 2e-4 < condition_gap(x, t, c, w0, b0, near.strength, near.optimum, near.bias) < 4e-4
    exact = map_fit.leave_one_out_logits(x, t, c, fit, w0, b0)
    np.testing.assert_allclose(map_fit.leave_one_out_logits(x, t, c, near, w0, b0), exact, rtol=0, atol=0.01)
    assert map_fit.leave_one_out_logits(x, t, c, far, w0, b0) is None


@pytest.mark.parametrize("labels", [80, 160])
def test_an_automatic_fit_keeps_the_held_out_logits_its_choice_scored_for_the_same_rows(concept, labels):
    """The automatic choice computes every candidate's held-out logits; the chosen one's are kept
    (``MapFit.held_out``) and handed back for the very rows of the fit (``same_rows``) instead of a second
    factorisation and solve. They are the ones computed again from the fit up to rounding (the optimum's logits as
    Newton left them against ``x . optimum + b``, magnified where a label's leverage nearly cancels it: measured at
    most 5e-8, against the 0.01 a fit's own convergence may move them), and they score its loss."""
    x, t, c, w0, b0 = problem(concept, labels, seed=6)
    fit = map_fit.fit_map(x, t, c, w0, b0, None)
    kept = map_fit.leave_one_out_logits(x, t, c, fit, w0, b0, same_rows=True)
    assert np.array_equal(kept, fit.held_out)
    np.testing.assert_allclose(kept, map_fit.leave_one_out_logits(x, t, c, fit, w0, b0), rtol=0, atol=1e-6)
    assert fit.loo_loss == float(c @ (np.logaddexp(0, kept) - t * kept))
    assert map_fit.fit_map(x, t, c, w0, b0, 10.0).held_out is None  # a fixed strength scores no candidate


def test_held_out_logits_within_the_trust_region_are_computed_whatever_the_fit_kept(concept):
    """Where the trust region binds, each label's logit is the optimum without it held within the region of the
    labels left: not the kept closed form (which has no trust region), even for the same rows."""
    rng = np.random.default_rng(0)
    rows = np.r_[
        rng.choice(np.flatnonzero(concept.truth), 3, replace=False),
        rng.choice(np.flatnonzero(~concept.truth), 17, replace=False),
    ]
    x = concept.vectors[rows].astype(np.float64)
    t = concept.truth[rows].astype(np.float64)
    c, w0, b0 = np.ones(len(rows)), concept.prompt_vector * 30.0, -20.0
    fit = map_fit.fit_map(x, t, c, w0, b0, None)
    assert not np.allclose(fit.weight, fit.optimum)  # the trust region binds
    within = map_fit.leave_one_out_logits(x, t, c, fit, w0, b0)
    assert np.array_equal(map_fit.leave_one_out_logits(x, t, c, fit, w0, b0, same_rows=True), within)
    assert np.abs(within - fit.held_out).max() > 0.1


def test_the_trust_region_grows_with_the_labels_and_faster_with_the_positives():
    assert map_fit.max_turn(10, 0) == pytest.approx(0.04) and map_fit.max_turn(10, 5) == pytest.approx(0.04)
    assert map_fit.max_turn(20, 2) == pytest.approx(0.16)
    assert map_fit.max_turn(10, 7) == pytest.approx(0.04 * 1.4**4)
    assert map_fit.max_turn(10, 13) > np.pi / 2  # no limit


def test_within_angle_keeps_the_component_along_the_prompt_and_the_direction_of_the_turn():
    unit = np.array([1.0, 0.0, 0.0])
    inside = np.array([2.0, 0.1, 0.0])
    assert map_fit.within_angle(inside, unit, 0.1) is inside
    turned = map_fit.within_angle(np.array([2.0, 3.0, 4.0]), unit, 0.1)
    assert turned[0] == pytest.approx(2.0)
    assert np.arctan2(np.linalg.norm(turned[1:]), turned[0]) == pytest.approx(0.1)
    assert turned[2] / turned[1] == pytest.approx(4 / 3)
    behind = map_fit.within_angle(np.array([-1.0, 1.0, 0.0]), unit, 0.1)  # more than a right angle away
    assert np.linalg.norm(behind) == pytest.approx(np.sqrt(2)) and behind[0] > 0
    assert map_fit.within_angle(behind, unit, 2.0) is behind  # a limit past a right angle limits nothing
