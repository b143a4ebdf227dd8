"""Quality estimates: audits drawn fairly and held out, intervals that contain a planted concept's known truth."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import pytest

from tests.helpers.planted import run_rounds
from trainer.index.local import LocalIndex
from trainer.quality import (
    Estimate,
    Quality,
    cross_validated_quality,
    estimate_quality,
    verdict,
)
from trainer.session import Session
from trainer.synthetic import average_precision


def true_quality(session: Session, concept) -> dict[str, float]:
    """What the estimates estimate: the classifier's metrics against the planted truth, on the whole collection."""
    logits = session.classifier.logits(concept.vectors).astype(np.float64)
    threshold = session.classifier.threshold
    above = logits >= np.log(threshold / (1 - threshold))
    return {
        "ap": average_precision(logits, concept.truth),
        "precision": float(concept.truth[above].mean()),
        "recall": float(concept.truth[above].sum() / concept.truth.sum()),
        "prevalence": float(concept.truth.mean()),
    }


def audit_and_label(session: Session, concept, audits: int, size: int = 20) -> list[str]:
    audited: list[str] = []
    for _ in range(audits):
        ids = [h.id for h in session.audit(size)]
        session.label(concept.oracle(ids))
        audited += ids
    return audited


METRICS = ("ap", "precision", "recall", "prevalence")
# Statistical checks run over several sessions, never one: a 90% interval misses the truth one time in ten by design,
# so a test of one session's interval fails for one fit in ten (it did, when the fit changed). Over SESSIONS x 4
# intervals about 2-3 misses are expected; the tests allow up to a quarter (8 of 32: were the 32 independent, more
# than 8 would happen 0.3% of the time at the 10% miss rate they are built for, 0.002% at the ~5% the benchmark
# measures), and none off by more than GROSS. Under changed fits (prior strength 0.5, 2, 10 and 50 on session seeds
# 0-7; 5, 10 and 20 on seeds 100-107) they missed 0-6 of 32, by at most 0.13, with a median AP error of at most 0.04.
SESSIONS = 8
MAX_MISS_SHARE = 0.25
GROSS = 0.2


@dataclass(frozen=True)
class Checked:
    """One simulated session's estimates, each next to the truth it estimates."""

    after_one: tuple[Quality, dict[str, float]]  # one audit of 20
    after_five: tuple[Quality, dict[str, float]]  # five audits of 20
    retrained: tuple[Quality, dict[str, float]]  # then 3 more training rounds: a classifier the audit did not draw for


def check_session(concept, seed: int) -> Checked:
    session = Session(LocalIndex.from_vectors(concept.ids, concept.vectors), concept.prompt_vector, seed=seed)
    run_rounds(session, concept, rounds=4)
    audit_and_label(session, concept, audits=1)
    after_one = (session.quality(), true_quality(session, concept))
    audit_and_label(session, concept, audits=4)
    after_five = (session.quality(), true_quality(session, concept))
    run_rounds(session, concept, rounds=3)
    return Checked(after_one, after_five, (session.quality(), true_quality(session, concept)))


def misses(checks: list[tuple[Quality, dict[str, float]]]) -> list[str]:
    """Every interval that does not contain its truth, as text; an AssertionError for one that misses it grossly or
    whose value lies outside its own interval."""
    missed = []
    for quality, truth in checks:
        for metric in METRICS:
            estimate, value = getattr(quality, metric), truth[metric]
            assert estimate.low <= estimate.value <= estimate.high, f"{metric}: {estimate}"
            assert estimate.low - GROSS <= value <= estimate.high + GROSS, f"{metric}: {estimate} far from {value:.3f}"
            if not estimate.low <= value <= estimate.high:
                missed.append(f"{metric}: {estimate} misses {value:.3f}")
    return missed


@pytest.fixture(scope="module")
def checked(concept) -> list[Checked]:
    return [check_session(concept, seed) for seed in range(SESSIONS)]


@pytest.fixture(scope="module")
def trained(concept):
    # A fixed prior strength: these tests check the estimates of a given classifier, whatever fit made it.
    index = LocalIndex.from_vectors(concept.ids, concept.vectors)
    session = Session(index, concept.prompt_vector, seed=0, prior_strength=10.0)
    run_rounds(session, concept, rounds=4)
    return session


@pytest.fixture
def session(trained):
    return copy.deepcopy(trained)


# ----------------------------------------------------------------------------------------------------- the audit
def test_an_audit_holds_only_items_never_shown_and_never_repeats(session, concept):
    shown_before = session.seen
    first = [h.id for h in session.audit(20)]
    second = [h.id for h in session.audit(20)]
    assert len(set(first + second)) == 40
    assert not shown_before & set(first + second)
    assert set(first + second) <= session.seen  # audited items count as shown


def test_audited_items_never_appear_in_a_training_batch(session, concept):
    audited = set(audit_and_label(session, concept, audits=3))
    for _ in range(5):
        assert not audited & {h.id for h in session.batch()}
        session.label(concept.oracle([h.id for h in session.batch()]))
        session.train_and_requery()


def test_audit_labels_are_held_out_from_training(session, concept):
    audited = audit_and_label(session, concept, audits=2)
    assert set(session.audit_labels) == set(audited)
    assert not set(audited) & set(session.labels)
    before = (session.labels, session.label_rounds)
    session.label(concept.oracle([h.id for h in session.batch()]))
    fit = session.history[-1].fit
    session.train_and_requery()
    trained_on = {i: v for i, v in session.labels.items() if v != 0}
    assert session.history[-1].fit.labels_used == len(trained_on) > fit.labels_used
    assert session.history[-1].labelled == len(trained_on)
    # The same classifier as one fitted on the training labels alone: the audit changed nothing.
    alone = copy.deepcopy(session.classifier)
    alone.fit(concept_vectors(concept, trained_on), np.asarray(list(trained_on.values()), dtype=np.float32))
    assert np.allclose(alone.weight, session.classifier.weight) and before[0].items() <= session.labels.items()


def concept_vectors(concept, ids) -> np.ndarray:
    rows = {id_: r for r, id_ in enumerate(concept.ids)}
    return concept.vectors[[rows[i] for i in ids]]


@pytest.mark.parametrize("size", [0, -3, 2.5, True, "20"])
def test_an_audit_size_must_be_a_positive_whole_number(session, size):
    with pytest.raises(ValueError, match="positive whole number"):
        session.audit(size)


def test_undo_leaves_audits_alone_and_resume_refuses_to_train_on_them(session, concept):
    audited = audit_and_label(session, concept, audits=1)
    session.label(concept.oracle([h.id for h in session.batch()]))
    session.train_and_requery()
    session.undo()
    assert set(session.audit_labels) == set(audited)
    with pytest.raises(ValueError, match="audited items, held out"):
        session.resume({audited[0]: 1.0})


def test_an_audit_is_pending_until_each_of_its_items_has_a_label(session, concept):
    ids = [h.id for h in session.audit(10)]
    assert [h.id for h in session.pending_audit()] == ids
    session.label({ids[0]: 1.0, ids[1]: 0.0})
    assert [h.id for h in session.pending_audit()] == ids[2:]
    session.label(dict.fromkeys(ids[2:], -1.0))
    assert session.pending_audit() == []


def test_an_audit_label_of_zero_counts_as_no_answer(session, concept):
    ids = [h.id for h in session.audit(20)]
    answers = concept.oracle(ids)
    answers[ids[0]] = 0.0
    session.label(answers)
    assert session.quality().audited == 19


# ----------------------------------------------------------------------------------------------------- estimates
def test_an_audited_estimate_says_what_it_rests_on(session, concept):
    audit_and_label(session, concept, audits=5)
    quality = session.quality()
    assert quality.method == "audit" and not quality.optimistic
    assert quality.audited == 100 and quality.trained_on == len(session.labels)
    assert quality.collection_size == len(concept.ids) and quality.threshold == session.classifier.threshold
    assert quality.matches.value == pytest.approx(quality.prevalence.value * len(concept.ids))


def test_the_intervals_contain_the_planted_truth(checked):
    missed = misses([c.after_five for c in checked])
    assert len(missed) <= MAX_MISS_SHARE * SESSIONS * len(METRICS), missed
    errors = [abs(c.after_five[0].ap.value - c.after_five[1]["ap"]) for c in checked]
    assert np.median(errors) <= 0.1, errors  # the benchmark's target, over these sessions


def test_the_audit_still_measures_the_classifier_after_more_training(checked):
    assert all(c.retrained[0].audited == c.after_five[0].audited for c in checked)
    assert all(c.retrained[0].trained_on > c.after_five[0].trained_on for c in checked)  # a classifier trained more
    missed = misses([c.retrained for c in checked])
    assert len(missed) <= MAX_MISS_SHARE * SESSIONS * len(METRICS), missed


def test_intervals_narrow_as_audit_labels_accumulate(checked):
    for metric in ("ap", "recall", "prevalence"):
        few = np.mean([getattr(c.after_one[0], metric).width for c in checked])
        many = np.mean([getattr(c.after_five[0], metric).width for c in checked])
        assert many < 0.8 * few, (metric, few, many)


def test_an_estimate_is_reproducible_and_follows_the_threshold(session, concept):
    audit_and_label(session, concept, audits=2)
    assert session.quality() == session.quality()
    strict, lenient = session.quality(threshold=0.9), session.quality(threshold=0.1)
    assert (strict.threshold, lenient.threshold) == (0.9, 0.1) and strict.predicted < lenient.predicted
    # The same filled-in collections at both thresholds: each one's recall can only grow as the threshold falls.
    assert strict.recall.value <= lenient.recall.value and strict.precision.value >= lenient.precision.value
    assert strict.ap == lenient.ap and strict.prevalence == lenient.prevalence
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        session.quality(threshold=1.0)


def test_before_any_audit_the_estimate_is_cross_validated_and_labelled_optimistic(session, concept):
    quality = session.quality()
    assert quality.method == "cross-validation" and quality.optimistic
    assert quality.prevalence is None and quality.matches is None and quality.audited == 0
    assert quality.trained_on == sum(v != 0 for v in session.labels.values())
    assert 0 <= quality.ap.low <= quality.ap.value <= quality.ap.high <= 1
    assert "flatter" in verdict(quality)


def test_with_no_labels_at_all_there_is_nothing_to_estimate(concept_index, concept):
    session = Session(concept_index, concept.prompt_vector)
    assert session.quality() is None
    assert cross_validated_quality(session.classifier, concept.vectors[:3], np.ones(3), collection_size=3) is None


def test_an_index_without_scores_all_is_scored_through_one_query(concept):
    class QueryOnly:  # the VectorIndex protocol and nothing more, like a remote index
        def __init__(self, inner: LocalIndex) -> None:
            self.inner, self.dim = inner, inner.dim

        def __len__(self) -> int:
            return len(self.inner)

        def add(self, ids, vectors, metadata=None) -> None:
            raise NotImplementedError

        def query(self, vector, top_k, exclude=None):
            return self.inner.query(vector, top_k, exclude)

        def fetch(self, ids):
            return self.inner.fetch(ids)

    local = Session(LocalIndex.from_vectors(concept.ids, concept.vectors), concept.prompt_vector, seed=0)
    remote = Session(QueryOnly(LocalIndex.from_vectors(concept.ids, concept.vectors)), concept.prompt_vector, seed=0)
    for session in (local, remote):
        run_rounds(session, concept, rounds=2)
    assert {h.id for h in local.audit(20)} == {h.id for h in remote.audit(20)}


def test_estimates_refuse_inconsistent_inputs():
    logits = np.linspace(-5, 5, 100)
    good = dict(trained_rows=[0], trained_truth=[True], audit_rows=[1, 2], audit_truth=[True, False])
    with pytest.raises(ValueError, match="both trained on and audited"):
        estimate_quality(logits, 0.5, **{**good, "audit_rows": [0, 2]}, audit_weights=[1.0, 1.0])
    with pytest.raises(ValueError, match="matching lengths"):
        estimate_quality(logits, 0.5, **good, audit_weights=[1.0])
    with pytest.raises(ValueError, match="positive numbers"):
        estimate_quality(logits, 0.5, **good, audit_weights=[1.0, -1.0])
    with pytest.raises(ValueError, match="no audited labels"):
        estimate_quality(logits, 0.5, **{**good, "audit_rows": [], "audit_truth": []}, audit_weights=[])


def test_an_estimate_prints_as_value_and_interval():
    assert str(Estimate(0.8234, 0.71, 0.9)) == "0.82 (0.71-0.90)"
    assert Estimate(0.5, 0.25, 0.75).width == 0.5


def quality_with(ap: Estimate, precision: Estimate | None, audited: int = 100) -> Quality:
    figure = Estimate(0.5, 0.4, 0.6)
    return Quality(ap, precision, figure, figure, Estimate(50, 40, 60), 0.5, audited, 50, 100, "audit", 40)


@pytest.mark.parametrize(
    ("ap", "precision", "audited", "says"),
    [
        (Estimate(0.9, 0.85, 0.95), Estimate(0.9, 0.8, 0.95), 100, "Good enough to share"),
        (Estimate(0.9, 0.85, 0.95), Estimate(0.9, 0.5, 0.95), 100, "Keep labelling"),  # imprecise at the threshold
        (Estimate(0.5, 0.3, 0.65), None, 100, "even the best case"),
        (Estimate(0.8, 0.45, 0.95), None, 100, "Keep checking"),  # too uncertain to tell
        (Estimate(0.9, 0.85, 0.95), None, 10, "too few"),
    ],
)
def test_the_verdict_says_share_check_or_label_from_the_intervals_ends(ap, precision, audited, says):
    assert says in verdict(quality_with(ap, precision, audited))
