"""LinearProbe: how labels map onto BCE, the zero-shot prior, the MAP fit (Newton and L-BFGS), save and load."""

from __future__ import annotations

import numpy as np
import pytest

from trainer import map_fit, newton
from trainer.classifier import LinearProbe, label_targets
from trainer.synthetic import average_precision


def test_label_mapping_sign_is_class_magnitude_is_confidence_zero_trains_nothing():
    targets, weights = label_targets(np.array([1.0, -0.5, 0.0, 0.2], np.float32))
    assert targets.tolist() == [1, 0, 0, 1]
    assert weights.tolist() == pytest.approx([1.0, 0.5, 0.0, 0.2])


@pytest.mark.parametrize("bad", [[1.5], [-1.01], [float("nan")], [float("inf")]])
def test_labels_outside_minus_one_to_one_are_refused(bad):
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        label_targets(np.array(bad, np.float32))


def test_zero_shot_probe_ranks_exactly_like_the_prompt(concept):
    probe = LinearProbe.from_prompt(concept.prompt_vector, scale=30.0, bias=-20.0)
    assert np.array_equal(
        np.argsort(-probe.logits(concept.vectors), kind="stable"),
        np.argsort(-(concept.vectors @ concept.prompt_vector), kind="stable"),
    )


def test_fit_with_only_zero_labels_leaves_the_prior_untouched(concept):
    probe = LinearProbe.from_prompt(concept.prompt_vector, scale=30.0, bias=-20.0)
    before = probe.weight
    report = probe.fit(concept.vectors[:5], np.zeros(5, np.float32))
    assert report.labels_used == 0
    np.testing.assert_array_equal(probe.weight, before)


def test_fit_depends_on_the_labels_not_on_how_often_it_was_called(concept):
    probe = LinearProbe.from_prompt(concept.prompt_vector, scale=30.0, bias=-20.0)
    labels = np.where(concept.truth[:40], 1.0, -1.0).astype(np.float32)
    probe.fit(concept.vectors[:40], labels)
    once = probe.weight
    probe.fit(concept.vectors[:40], labels)
    np.testing.assert_allclose(probe.weight, once, atol=1e-5)


def test_probe_refuses_embeddings_of_the_wrong_size_naming_both(concept):
    probe = LinearProbe.from_prompt(concept.prompt_vector, scale=1.0, bias=0.0, base_model="tiny-clip")
    with pytest.raises(ValueError, match=r"\(32,\)-dimensional embeddings of tiny-clip; got shape \(2, 8\)"):
        probe.predict_proba(np.zeros((2, 8), np.float32))


def test_probe_save_and_load_give_bit_identical_scores(concept, tmp_path):
    probe = LinearProbe.from_prompt(concept.prompt_vector, scale=30.0, bias=-20.0, prompt="a thing", base_model="m")
    probe.fit(concept.vectors[:30], np.where(concept.truth[:30], 1.0, -1.0).astype(np.float32))
    probe.save_pretrained(tmp_path / "probe")
    loaded = LinearProbe.from_pretrained(tmp_path / "probe")
    assert (loaded.prompt, loaded.base_model, loaded.dim) == ("a thing", "m", 32)
    assert np.array_equal(loaded.predict_proba(concept.vectors), probe.predict_proba(concept.vectors))
    np.testing.assert_array_equal(loaded.prior_weight.numpy(), probe.prior_weight.numpy())


def test_newton_and_lbfgs_fits_reach_the_same_optimum(concept, monkeypatch):
    import trainer.classifier as classifier_module

    rng = np.random.default_rng(4)
    rows = rng.choice(len(concept.ids), 120, replace=False)
    labels = (np.where(concept.truth[rows], 1.0, -1.0) * rng.uniform(0.3, 1, len(rows))).astype(np.float32)

    def fitted(newton_limit: int) -> tuple[np.ndarray, float, float]:
        monkeypatch.setattr(classifier_module, "KERNEL_MAX_LABELS", newton_limit)
        probe = LinearProbe.from_prompt(concept.prompt_vector, scale=30.0, bias=-20.0)
        report = probe.fit(concept.vectors[rows], labels)
        return probe.weight, probe.bias, report.loss

    newton_w, newton_b, newton_loss = fitted(10_000)
    lbfgs_w, lbfgs_b, lbfgs_loss = fitted(0)
    assert newton_loss <= lbfgs_loss + 1e-4  # exact Newton is at least as close to the optimum
    assert newton_loss == pytest.approx(lbfgs_loss, rel=1e-3)
    np.testing.assert_allclose(newton_w, lbfgs_w, atol=2e-2 * np.abs(lbfgs_w).max())
    assert newton_b == pytest.approx(lbfgs_b, abs=0.05 * abs(lbfgs_b) + 0.05)


def test_a_fit_reusing_the_gram_matrix_of_earlier_fits_equals_a_fresh_fit(concept):
    """The label-space fit keeps X X^T and its last solution between fits; relabelled, removed and new rows must
    all be recomputed, so that the result is the same as a probe that never fitted before."""
    rng = np.random.default_rng(5)
    rows = rng.choice(len(concept.ids), 90, replace=False)
    labels = np.where(concept.truth[rows], 1.0, -1.0).astype(np.float32)
    probe = LinearProbe.from_prompt(concept.prompt_vector, scale=30.0, bias=-20.0)
    probe.fit(concept.vectors[rows[:60]], labels[:60])
    changed = labels.copy()
    changed[10] = -changed[10]  # relabelled: a kept row's solution is only a warm start
    order = np.r_[0:30, 31:90]  # row 30 removed: every row after it moves
    for vectors, scores in [
        (concept.vectors[rows], labels),
        (concept.vectors[rows], changed),
        (concept.vectors[rows[order]], changed[order]),
    ]:
        probe.fit(vectors, scores)
        fresh = LinearProbe.from_prompt(concept.prompt_vector, scale=30.0, bias=-20.0)
        fresh.fit(vectors, scores)
        np.testing.assert_allclose(probe.weight, fresh.weight, atol=1e-4 * np.abs(fresh.weight).max())
        assert probe.bias == pytest.approx(fresh.bias, abs=1e-3)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"dim": 500_000_000}, "dim must be from 1 to 16,384; got 500,000,000"),
        ({"dim": 10**18}, "dim must be from 1 to 16,384"),
        ({"dim": 0}, "dim must be from 1 to 16,384; got 0"),
        ({"dim": "512"}, "dim must be a whole number"),
        ({"dim": 512.0}, "dim must be a whole number"),
        ({"prior_strength": "ten"}, "must be a number; got 'ten'"),
        ({"prior_strength": float("nan")}, "finite number; got nan"),
        ({"prior_strength": 0}, "greater than 0"),
        ({"threshold": float("nan")}, "threshold must be a finite number"),
        ({"threshold": 1.5}, r"threshold must be within \[0, 1\]; got 1.5"),
        ({"recipe": "sideways"}, "unknown recipe 'sideways'; choose one of balanced, original"),
        ({"prompt": ["a list"]}, "prompt must be text"),
        ({"prompt": "x" * 10_000}, "prompt is 10,000 characters long"),
        ({"base_model": {"nested": [1]}}, "base_model must be text"),
        ({"base_model": "x" * 300}, "base_model is 300 characters long; the limit is 256"),
    ],
    ids=lambda v: str(v)[:30],
)
def test_a_probe_refuses_a_bad_config_before_allocating_anything(config, message):
    with pytest.raises(ValueError, match=message):
        LinearProbe(**config)


# ------------------------------------------------------------------------------------------------ automatic strength
def balanced_rows(concept, seed: int, per_class: int = 10) -> np.ndarray:
    rng = np.random.default_rng(seed)
    positives = rng.choice(np.flatnonzero(concept.truth), per_class, replace=False)
    return np.r_[positives, rng.choice(np.flatnonzero(~concept.truth), per_class, replace=False)]


def oracle_labels(concept, *, positives: int, negatives: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(vectors, labels): ``positives`` matches and ``negatives`` others drawn at random, labelled +1 / -1."""
    rng = np.random.default_rng(seed)
    rows = np.r_[
        rng.choice(np.flatnonzero(concept.truth), positives, replace=False),
        rng.choice(np.flatnonzero(~concept.truth), negatives, replace=False),
    ]
    return concept.vectors[rows], np.where(concept.truth[rows], 1.0, -1.0).astype(np.float32)


def test_automatic_strength_stays_strong_when_the_prompt_explains_the_labels(concept):
    """Labels drawn from the zero-shot classifier's own probabilities: the prompt is the truth, nothing to unlearn.
    The choice is a noisy estimate, so it is judged over 20 draws (measured: 26 of 30 keep the strongest)."""
    scores = concept.vectors @ concept.prompt_vector
    strongest = 0
    for seed in range(20):
        rng = np.random.default_rng(seed)
        probe = LinearProbe.from_prompt(concept.prompt_vector, scale=30.0, bias=-30.0 * np.median(scores))
        probe.prior_strength = None
        rows = rng.choice(len(scores), 40, replace=False)
        labels = np.where(rng.random(40) < probe.predict_proba(concept.vectors[rows]), 1.0, -1.0)
        probe.fit(concept.vectors[rows], labels.astype(np.float32))
        strongest += probe.last_strength == map_fit.candidate_strengths(40)[0]
    assert strongest >= 14


def test_automatic_strength_weakens_when_the_labels_contradict_the_prompt(concept):
    """The prompt points away from the concept: every draw of 20 labels must pull the strength to its weakest, and
    the classifier must rank better than that prompt."""
    for seed in range(10):
        rows = balanced_rows(concept, seed)
        labels = np.where(concept.truth[rows], 1.0, -1.0).astype(np.float32)
        probe = LinearProbe.from_prompt(-concept.prompt_vector, scale=30.0, bias=-20.0, prior_strength=None)
        probe.fit(concept.vectors[rows], labels)
        assert probe.last_strength == map_fit.candidate_strengths(20)[-1]
        assert average_precision(probe.logits(concept.vectors), concept.truth) > average_precision(
            -(concept.vectors @ concept.prompt_vector), concept.truth
        )


def test_a_fixed_strength_is_kept_and_automatic_saves_and_loads_as_null(concept, tmp_path):
    rows = balanced_rows(concept, 0)
    labels = np.where(concept.truth[rows], 1.0, -1.0).astype(np.float32)
    fixed = LinearProbe.from_prompt(concept.prompt_vector, scale=30.0, bias=-20.0, prior_strength=4.5)
    fixed.fit(concept.vectors[rows], labels)
    assert fixed.last_strength == 4.5
    automatic = LinearProbe.from_prompt(concept.prompt_vector, scale=30.0, bias=-20.0, prior_strength=None)
    automatic.save_pretrained(tmp_path / "auto")
    assert '"prior_strength": null' in (tmp_path / "auto" / "config.json").read_text()
    assert LinearProbe.from_pretrained(tmp_path / "auto").prior_strength is None


def refits_without_each_label(concept, probe, x, labels, *, trust_region: bool = True) -> np.ndarray:
    """Each label's logit under the fit without it, by brute force: ``probe``'s prompt prior refitted on the other
    labels at the strength ``probe`` used, its weights held within the trust region of the labels left (as an
    automatic fit's are) unless ``trust_region`` is False."""
    unit = concept.prompt_vector / np.linalg.norm(concept.prompt_vector)
    refits = np.empty(len(labels))
    for i in range(len(labels)):
        without = np.arange(len(labels)) != i
        refit = LinearProbe.from_prompt(
            concept.prompt_vector, scale=30.0, bias=-20.0, prior_strength=probe.last_strength
        )
        refit.fit(x[without], labels[without])
        weight = refit.weight.astype(np.float64)
        if trust_region and probe.prior_strength is None:
            weight = map_fit.within_angle(weight, unit, map_fit.max_turn(len(labels) - 1, (labels[without] > 0).sum()))
        refits[i] = weight @ x[i] + refit.bias
    return refits


def test_leave_one_out_logits_match_refits_without_each_label(concept):
    """The closed form (one solve, no refit) against a refit without each label at the same strength: close for
    every label, while the logits of the fit that saw each label are far off for some."""
    rng = np.random.default_rng(3)
    rows = np.r_[
        rng.choice(np.flatnonzero(concept.truth), 15, replace=False),
        rng.choice(np.flatnonzero(~concept.truth), 45, replace=False),
    ]
    labels = np.where(concept.truth[rows], 1.0, -1.0).astype(np.float32)
    labels[:5] *= 0.5  # some less sure
    x = concept.vectors[rows]
    for strength in (10.0, None):
        probe = LinearProbe.from_prompt(concept.prompt_vector, scale=30.0, bias=-20.0, prior_strength=strength)
        probe.fit(x, labels)
        held_out = probe.leave_one_out_logits(x, labels)
        refits = refits_without_each_label(concept, probe, x, labels)
        gap = np.abs(held_out - refits)
        assert np.median(gap) < 0.05 and gap.max() < 0.5
        assert np.abs(probe.logits(x) - refits).max() > 2  # what the closed form corrects


def test_leave_one_out_logits_of_a_fit_the_trust_region_limits_come_from_its_optimum_with_no_fit(concept, monkeypatch):
    """Three positives of ten: the automatic fit's weights are held near the prompt (``map_fit.max_turn``), so they
    are no optimum. The held-out logits still match refits without each label (at the same strength, then held
    within the trust region of the labels left, as the weights that rank are), and asking fits nothing."""
    x, labels = oracle_labels(concept, positives=3, negatives=7, seed=0)
    unit = concept.prompt_vector / np.linalg.norm(concept.prompt_vector)
    probe = LinearProbe.from_prompt(concept.prompt_vector, scale=30.0, bias=-20.0, prior_strength=None)
    probe.fit(x, labels)
    limit = map_fit.max_turn(10, 3)
    assert np.arccos(probe.weight @ unit / np.linalg.norm(probe.weight)) == pytest.approx(limit, abs=1e-4)
    refits = refits_without_each_label(concept, probe, x, labels)
    assert np.abs(refits - refits_without_each_label(concept, probe, x, labels, trust_region=False)).max() > 0.5

    def no_fit(*args, **kwargs):
        raise AssertionError("leave-one-out fitted again a probe fitted on these very labels")

    monkeypatch.setattr(map_fit, "fit_map", no_fit)
    monkeypatch.setattr(LinearProbe, "fit", no_fit)
    held_out = probe.leave_one_out_logits(x, labels)
    gap = np.abs(held_out - refits)
    assert np.median(gap) < 0.15 and gap.max() < 0.5
    assert np.abs(probe.logits(x) - refits).max() > 1  # what the closed form corrects


def test_leave_one_out_logits_of_the_labels_fitted_are_the_fits_own_and_of_others_computed_anew(concept, monkeypatch):
    """After a fit on 80 labels (past the trust region), the held-out logits of the same labels are the ones the
    fit's choice computed: no factorisation. Relabel one, or undo to other weights, and they are computed anew: the
    same as a fresh probe's on those labels."""
    x, labels = oracle_labels(concept, positives=20, negatives=60, seed=4)

    def fresh(labels: np.ndarray) -> np.ndarray:
        probe = LinearProbe.from_prompt(concept.prompt_vector, scale=30.0, bias=-20.0, prior_strength=None)
        probe.fit(x, labels)
        return probe.leave_one_out_logits(x, labels)

    probe = LinearProbe.from_prompt(concept.prompt_vector, scale=30.0, bias=-20.0, prior_strength=None)
    probe.fit(x, labels)
    checkpoint = {name: tensor.clone() for name, tensor in probe.state_dict().items()}  # as a session keeps for undo
    factorisations = []
    real = newton.dpotrf
    monkeypatch.setattr(newton, "dpotrf", lambda *a, **k: factorisations.append(1) or real(*a, **k))
    same = probe.leave_one_out_logits(x, labels)
    assert not factorisations
    np.testing.assert_allclose(same, fresh(labels), rtol=0, atol=1e-6)
    relabelled = labels.copy()
    relabelled[3] = -relabelled[3]
    factorisations.clear()
    other = probe.leave_one_out_logits(x, relabelled)
    assert factorisations  # a fit on the side, and its closed form
    np.testing.assert_allclose(other, fresh(relabelled), rtol=0, atol=1e-3)
    assert np.abs(other - same).max() > 0.1
    probe.fit(x, relabelled)  # the next round
    probe.load_state_dict(checkpoint)  # and its undo: the weights before it, the last fit still the relabelled one
    np.testing.assert_allclose(probe.leave_one_out_logits(x, labels), same, rtol=0, atol=1e-3)


def test_leave_one_out_logits_of_labels_given_since_the_fit_are_those_of_a_fit_on_them(concept):
    rows = balanced_rows(concept, 2)
    labels = np.where(concept.truth[rows], 1.0, -1.0).astype(np.float32)
    probe = LinearProbe.from_prompt(concept.prompt_vector, scale=30.0, bias=-20.0, prior_strength=None)
    probe.fit(concept.vectors[rows[:12]], labels[:12])
    weight, bias = probe.weight, probe.bias
    late = probe.leave_one_out_logits(concept.vectors[rows], labels)  # 8 labels the probe was not fitted on
    assert np.array_equal(probe.weight, weight) and probe.bias == bias  # asking changes nothing
    fresh = LinearProbe.from_prompt(concept.prompt_vector, scale=30.0, bias=-20.0, prior_strength=None)
    fresh.fit(concept.vectors[rows], labels)
    np.testing.assert_allclose(late, fresh.leave_one_out_logits(concept.vectors[rows], labels), atol=1e-3)
    original = LinearProbe.from_prompt(concept.prompt_vector, scale=30.0, bias=-20.0, recipe="original")
    assert original.leave_one_out_logits(concept.vectors[rows], labels) is None  # no closed form: refit folds
    with pytest.raises(ValueError, match="a label of 0 has no class"):
        probe.leave_one_out_logits(concept.vectors[rows[:2]], np.array([1.0, 0.0], np.float32))
