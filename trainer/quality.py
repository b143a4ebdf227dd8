"""How good is the classifier? Honest estimates from an audit: a random sample the classifier did not choose.

The batches a person labels while training were chosen by the classifier (its top scores, its uncertain ones), so
accuracy on them says little about the whole collection. An *audit* is different: a random sample of images never
shown, stratified by the current score, labelled like any other batch and never trained on. From it, and from the
training labels, this module estimates four things about the classifier on the whole collection, each with a 90%
interval: average precision (AP), precision and recall at the decision threshold, and prevalence (the share of the
collection that shows the concept, i.e. the number of matching images).

How an audit is drawn (``trainer.audit.choose_audit``): a random sample of the images not yet shown, stratified
by the current score in bands whose sizes double from the top, each audited image carrying its design weight.

Estimating (``estimate_quality``)
---------------------------------
The collection splits three ways: images with a training label (known: their labels count as they are), audited
images with a label (known, and a random sample of the rest), and everything else (unknown). The unknown are
filled in many times over, and AP, precision, recall and prevalence are computed on each completed collection
exactly as they would be on the true one; the median of those draws is the estimate and the 5th and 95th
percentiles the 90% interval (a posterior predictive interval for the collection's own, finite, truth):

1. *Calibration.* A logistic curve ``P(match | score) = sigmoid(a + b * logit)`` is fitted to the audited labels
   (design-weighted, with a weak prior so that 3 audited labels do not produce a cliff). Each draw refits it on a
   Bayesian-bootstrap reweighting of the audit, so the curve's own uncertainty reaches the intervals.
2. *Bands.* The images without a training label are ranked by the current score and cut into the same doubling
   bands, split at the threshold and merged until each holds at least ``MIN_AUDITED_PER_BAND`` audited labels. A
   band's match rate gets a posterior from its audited labels (a design-weighted count) under a robust prior, an
   even mixture of two stories: the calibration curve is right about the band (a Beta centred on the curve's mean
   over the band, worth ``PRIOR_LABELS`` labels), or the band is merely like the collection as a whole (a wide
   Beta centred on the collection's estimated match rate). The band's labels weigh the two, so the curve only has
   to be roughly right: where it is wrong, the band's own labels overrule it as they accumulate; and where a dozen
   labels cannot tell (none a match, in a band of thousands), the interval keeps room for matches hidden there.
3. *Filling in.* Each unknown image becomes a match with probability ``sigmoid(b * logit + c)``, with ``c`` set per
   band and draw so that the band's expected rate is the drawn one: the curve decides who, the band how many.

Images shown in training but left at 0 ("no opinion"), and audited images left unlabelled or at 0, are unknown:
they are assumed to be like the other images of their band. With few audited labels the prior and the curve's
uncertainty dominate and the intervals are wide; they narrow as audits add labels. ``benchmarks/quality_coverage.py``
measures how often they contain the truth (README, "How good is it?"): a shared, learned weight for the two stories
and a curve allowed to be off by a factor of e both gave tighter intervals but missed the truth more often on some
collections (the misaligned synthetic kind, a perfect classifier), so the plain even mixture stays.

Retraining after an audit
-------------------------
Audited images are held out: the session never trains on them and never shows them in a training batch. After more
training the classifier is a different one, and its scores (the ranking, the bands) are recomputed at estimate
time; the audit still tests it fairly, because what makes an estimate unbiased is that (a) the audited images were
drawn with known chances, by a rule that did not look at their labels, and (b) the classifier being measured has
never seen their labels. Neither depends on which classifier drew the sample: the old scores only decided the
chances, and the design weights carry those chances over. What does shift is efficiency: a band of the new ranking
may hold audited images drawn with unequal weights (they are combined design-weighted), and images trained on after
the audit leave the unknown set for the known one. The one coupling left is that training batches skip audited
images, so the classifier's later training set depends (weakly) on which images were audited; with an audit of a
few dozen images in thousands its effect is far below the sampling error (``tests/test_quality.py`` checks the
estimate after retraining against the truth).

Before any audit, ``cross_validated_quality`` gives AP, precision and recall from k-fold cross-validation over the
training labels. It is labelled optimistic (``Quality.optimistic``): those labels were chosen by the classifier, so
they are not a sample of the collection, and it says nothing about prevalence.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .audit import MAX_BANDS, band_edges
from .classifier import LinearProbe
from .logistic import logit, sigmoid
from .suspects import held_out_logits

__all__ = [
    "CONFIDENCE",
    "Estimate",
    "Quality",
    "cross_validated_quality",
    "estimate_quality",
    "verdict",
]

CONFIDENCE = 0.9  # every interval here is a 90% interval
MIN_AUDITED_PER_BAND = 2
# How many audited labels the calibration curve's guess at a band's match rate is worth.
PRIOR_LABELS = 2.0
# Draws of the unknown labels: the 5th and 95th percentiles of 400 draws move by about 1 percentile point.
DRAWS = 400
# A band's shape (the logits the calibration curve is averaged over) is read from at most this many of its images.
_PRIOR_SAMPLE = 256
# The calibration curve's prior: intercept ~ N(0, 4^2), slope ~ N(1, 1^2) on the classifier's logit. Weak enough
# for a few labels to move it, strong enough that a perfectly separated audit gives a steep curve, not a cliff.
_PRIOR_A = (0.0, 4.0)
_PRIOR_B = (1.0, 1.0)


class Estimate(NamedTuple):
    """A quantity and its 90% interval: ``low <= value <= high``."""

    value: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.value:.2f} ({self.low:.2f}-{self.high:.2f})"

    @property
    def width(self) -> float:
        return self.high - self.low


@dataclass(frozen=True)
class Quality:
    """The classifier's quality on the whole collection, at ``threshold``, with 90% intervals.

    ``method`` is ``"audit"`` (from audited labels: honest) or ``"cross-validation"`` (from the training labels
    only, before any audit: optimistic, and without prevalence). ``precision`` is None when no image scores at or
    above the threshold; ``prevalence`` and ``matches`` are None without an audit.
    """

    ap: Estimate
    precision: Estimate | None
    recall: Estimate
    prevalence: Estimate | None  # share of the collection that matches
    matches: Estimate | None  # number of matching images in the collection
    threshold: float
    audited: int  # audit labels the estimate rests on (non-zero ones)
    trained_on: int  # training labels that count as known
    collection_size: int
    method: str
    predicted: int  # images scoring at or above the threshold

    @property
    def optimistic(self) -> bool:
        return self.method == "cross-validation"

    @property
    def confidence(self) -> float:
        return CONFIDENCE


# ------------------------------------------------------------------------------------------------- the estimate
def estimate_quality(
    logits: np.ndarray,
    threshold: float,
    *,
    trained_rows: np.ndarray,
    trained_truth: np.ndarray,
    audit_rows: np.ndarray,
    audit_truth: np.ndarray,
    audit_weights: np.ndarray,
    split: float | None = None,
    seed: int | Sequence[int] = 0,
    draws: int = DRAWS,
) -> Quality:
    """AP, precision and recall at ``threshold`` (a probability) and prevalence, from an audit. See the module doc.

    ``logits`` (N,): the classifier being measured, on the whole collection. ``trained_rows`` / ``trained_truth``:
    rows with a training label and whether it says "match". ``audit_rows`` / ``audit_truth`` / ``audit_weights``:
    audited rows with a non-zero label, its answer and the design weight the row was drawn with. Every other row is
    unknown. The bands split at ``split`` (default: ``threshold``): the session passes the classifier's own
    threshold, so that AP and prevalence do not change when precision and recall are asked for at another one.
    Deterministic for a given ``seed``.
    """
    logits = np.asarray(logits, dtype=np.float64)
    n = len(logits)
    trained_rows = np.asarray(trained_rows, dtype=np.int64)
    audit_rows = np.asarray(audit_rows, dtype=np.int64)
    audit_truth = np.asarray(audit_truth, dtype=bool)
    audit_weights = np.asarray(audit_weights, dtype=np.float64)
    if not (len(audit_rows) == len(audit_truth) == len(audit_weights)) or len(trained_rows) != len(trained_truth):
        raise ValueError("rows, answers and weights must come in matching lengths")
    if len(audit_rows) == 0:
        raise ValueError("no audited labels yet: label an audit batch first (or use cross_validated_quality)")
    if np.intersect1d(trained_rows, audit_rows).size:
        raise ValueError("a row cannot be both trained on and audited: audited images must stay held out")
    if not (np.isfinite(audit_weights).all() and (audit_weights > 0).all()):
        raise ValueError("audit weights must be positive numbers")
    rng = np.random.default_rng(seed)

    order = np.argsort(-logits, kind="stable")  # the ranking every metric is computed on, best first
    state = np.zeros(n, np.int8)  # 0 unknown, 1 trained, 2 audited
    state[trained_rows] = 1
    state[audit_rows] = 2
    truth = np.zeros(n, bool)
    truth[trained_rows] = np.asarray(trained_truth, dtype=bool)
    truth[audit_rows] = audit_truth
    weight = np.zeros(n)
    weight[audit_rows] = audit_weights

    # Fill in, band by band, the rows without a training label (the "open" rows), in rank order.
    open_rows = order[state[order] != 1]
    z_open, state_open = logits[open_rows], state[open_rows]
    band_of_open = _bands(state_open == 2, int((z_open >= logit(threshold if split is None else split)).sum()))
    a, b = _calibration_draws(logits[audit_rows], audit_truth, audit_weights, draws, rng)  # (D,), (D,)
    slope = float(np.median(b))  # the shape of matches within a band: one curve for every draw
    # The collection's match rate: the training labels' matches plus the audit's design-weighted share of the rest.
    open_matches = len(open_rows) * float(audit_weights @ audit_truth / audit_weights.sum())
    overall = (int(truth[trained_rows].sum()) + open_matches) / n
    filled = np.zeros((draws, len(open_rows)), bool)  # (D, M)
    filled[:, state_open == 2] = truth[open_rows[state_open == 2]]
    for band in range(int(band_of_open.max()) + 1):
        members = band_of_open == band
        sample = _spread_sample(z_open[members])
        prior_mean = sigmoid(a[:, None] + b[:, None] * sample[None, :]).mean(axis=1)  # (D,) the curve's guess
        audited = members & (state_open == 2)
        w, y = weight[open_rows[audited]], truth[open_rows[audited]]
        labels = w.sum() ** 2 / (w**2).sum() if len(w) else 0.0  # Kish's effective sample size
        hits = labels * (w @ y) / w.sum() if len(w) else 0.0
        rate = _band_rate(prior_mean, hits, labels, overall, rng)  # (D,)
        unknown = np.flatnonzero(members & (state_open == 0))
        if len(unknown):
            shift = _shift_for_rate(slope * sample, rate)  # (D,)
            p = sigmoid((slope * z_open[unknown][None, :] + shift[:, None]).astype(np.float32))  # (D, u)
            filled[:, unknown] = rng.random(p.shape, dtype=np.float32) < p

    # Put the trained rows back in their places: (D, N) labels in rank order.
    completed = np.empty((draws, n), bool)
    trained_mask = state[order] == 1
    completed[:, trained_mask] = truth[order[trained_mask]]
    completed[:, ~trained_mask] = filled
    predicted = int((logits >= logit(threshold)).sum())
    ap, precision, recall, positives = _summarise(completed, predicted)
    return Quality(
        ap=_estimate(ap),
        precision=_estimate(precision) if predicted else None,
        recall=_estimate(recall),
        prevalence=_estimate(positives / n),
        matches=_estimate(positives),
        threshold=float(threshold),
        audited=len(audit_rows),
        trained_on=len(trained_rows),
        collection_size=n,
        method="audit",
        predicted=predicted,
    )


def _spread_sample(values: np.ndarray, size: int = _PRIOR_SAMPLE) -> np.ndarray:
    """At most ``size`` of ``values``, evenly spread over their sorted order: a band's shape, cheaply."""
    if len(values) <= size:
        return values
    return np.sort(values)[np.linspace(0, len(values) - 1, size).astype(np.int64)]


def _shift_for_rate(bz: np.ndarray, rate: np.ndarray) -> np.ndarray:
    """For each rate, the shift ``c`` with ``mean(sigmoid(bz + c)) == rate``, by interpolation in a table.

    The mean is increasing in ``c``; tabulated in log space it is smooth, so steps of 0.25 are exact to a fraction of
    a percent, from rates of one in a billion to one minus one in a million.
    """
    grid = np.arange(-40.0, 40.0, 0.25) - float(np.mean(bz))
    log_mean = np.log(np.maximum(sigmoid(bz[None, :] + grid[:, None]).mean(axis=1), 1e-300))  # increasing
    return np.interp(np.log(np.clip(rate, 1e-9, 1 - 1e-6)), log_mean, grid)


def _bands(audited: np.ndarray, above: int) -> np.ndarray:
    """Band index (0 = best) of each ranked open row: the doubling bands, split at the threshold (``above`` rows
    score at or above it), then each band short of ``MIN_AUDITED_PER_BAND`` audited rows merged into a neighbour on
    its side of the threshold, the one holding fewer audited rows."""
    edges = [int(e) for e in band_edges(len(audited), MAX_BANDS, above)]
    cumulative = np.concatenate([[0], np.cumsum(audited)])

    def removable(edge: int) -> bool:  # an inner edge that is not the threshold
        return 0 < edge < len(edges) - 1 and edges[edge] != above

    while True:
        counts = np.diff(cumulative[edges])
        # (audited rows, band) for every thin band that has a neighbour on its side of the threshold
        thin = [(c, b) for b, c in enumerate(counts) if c < MIN_AUDITED_PER_BAND and (removable(b) or removable(b + 1))]
        if not thin:
            break
        _, band = min(thin)
        up = removable(band) and (not removable(band + 1) or counts[band - 1] <= counts[band + 1])
        del edges[band if up else band + 1]
    return np.searchsorted(edges, np.arange(len(audited)), side="right") - 1


def _calibration_draws(
    z: np.ndarray, y: np.ndarray, weights: np.ndarray, draws: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(a, b) of ``sigmoid(a + b z)`` fitted to each of ``draws`` Bayesian-bootstrap reweightings of the audit.

    Design weights normalised to the number of audited labels (so the prior keeps its meaning), times Exp(1)
    bootstrap weights; the MAP under the Gaussian prior on (a, b) by damped Newton steps, all draws at once (the
    problem is convex, so halving a step until the objective falls always converges).
    """
    m = len(z)
    w = weights / weights.mean() * rng.exponential(size=(draws, m))  # (D, m)
    x = np.stack([np.ones(m), z])  # (2, m)
    mean = np.array([_PRIOR_A[0], _PRIOR_B[0]])
    precision = np.array([1 / _PRIOR_A[1] ** 2, 1 / _PRIOR_B[1] ** 2])
    t = y.astype(np.float64)

    def objective(theta: np.ndarray) -> np.ndarray:  # (D,) negative log posterior
        logits = theta @ x  # (D, m)
        return (w * (np.logaddexp(0, logits) - t * logits)).sum(axis=1) + 0.5 * ((theta - mean) ** 2) @ precision

    theta = np.tile(mean, (draws, 1))  # (D, 2)
    value = objective(theta)
    for _ in range(50):
        s = sigmoid(theta @ x)  # (D, m)
        gradient = (w * (s - t)) @ x.T + precision * (theta - mean)  # (D, 2)
        curvature = w * s * (1 - s)  # (D, m)
        h00 = curvature.sum(axis=1) + precision[0]
        h01 = curvature @ z
        h11 = curvature @ (z * z) + precision[1]
        det = h00 * h11 - h01 * h01
        step = np.stack([h11 * gradient[:, 0] - h01 * gradient[:, 1], h00 * gradient[:, 1] - h01 * gradient[:, 0]])
        step = step.T / det[:, None]  # (D, 2) Newton direction
        size = np.ones(draws)
        for _ in range(30):  # backtrack, per draw, until the objective falls
            candidate = theta - size[:, None] * step
            candidate_value = objective(candidate)
            worse = candidate_value > value + 1e-12
            if not worse.any():
                break
            size[worse] /= 2
        moved = candidate_value <= value + 1e-12
        theta[moved], value[moved] = candidate[moved], candidate_value[moved]
        if np.abs(size[:, None] * step).max() < 1e-7:
            break
    return theta[:, 0], theta[:, 1]


def _band_rate(
    prior_mean: np.ndarray, hits: float, labels: float, overall: float, rng: np.random.Generator
) -> np.ndarray:
    """One draw per entry of ``prior_mean`` of a band's match rate, given ``hits`` matches in ``labels`` audited.

    The prior is a robust mixture. Half of it believes the calibration curve: a Beta centred on the curve's mean
    for the band, worth ``PRIOR_LABELS`` labels. The other half believes only that the band is like the collection
    as a whole: a Beta(1/2, b) whose mean is ``overall``, the collection's estimated match rate. The
    band's audited labels weigh the two by how well each predicted them, so where the curve is wrong (matches where
    it says there are none) it loses its say as soon as the labels show it; and where they cannot tell (no match
    among a dozen labels in a band of thousands), the interval keeps room for a few matches hidden there.
    """
    mean = np.clip(prior_mean, 1e-6, 1 - 1e-6)
    overall = min(max(overall, 1e-6), 0.5)
    alphas = np.stack([PRIOR_LABELS * mean, np.full_like(mean, 0.5)])  # (2, D): curve, collection
    betas = np.stack([PRIOR_LABELS * (1 - mean), np.full_like(mean, 0.5 * (1 - overall) / overall)])
    log_evidence = _betaln(alphas + hits, betas + labels - hits) - _betaln(alphas, betas)  # + log C(n, k), shared
    trust_curve = sigmoid(log_evidence[0] - log_evidence[1])  # (D,) the curve's posterior weight
    pick = np.where(rng.random(len(mean)) < trust_curve, 0, 1)
    columns = np.arange(len(mean))
    return rng.beta(alphas[pick, columns] + hits, betas[pick, columns] + labels - hits)


def _summarise(
    labels: np.ndarray, predicted: int | np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per row of ``labels`` (D, N), a completed collection in rank order: AP, precision and recall when the top
    ``predicted`` rows (an int, or one per row) count as predicted matches, and the number of matches.

    AP and recall are NaN for a row without matches, precision for a row that predicts none.
    """
    draws, n = labels.shape
    hits = np.cumsum(labels, axis=1, dtype=np.int32)  # (D, N): matches among the top k + 1
    positives = hits[:, -1].astype(np.float64)  # (D,)
    predicted = np.broadcast_to(np.asarray(predicted, dtype=np.int64), (draws,))
    true_positive = np.where(predicted > 0, hits[np.arange(draws), np.maximum(predicted - 1, 0)], 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        ap = (labels * (hits / np.arange(1, n + 1, dtype=np.float32))).sum(axis=1) / positives
        precision = true_positive / predicted
        recall = true_positive / positives
    return ap, precision, recall, positives


def _estimate(samples: np.ndarray) -> Estimate:
    """Median and central 90% of the draws (draws with no matches at all leave AP and recall undefined: skipped)."""
    samples = np.asarray(samples, dtype=np.float64)
    samples = samples[np.isfinite(samples)]
    if not len(samples):
        return Estimate(math.nan, math.nan, math.nan)
    tail = (1 - CONFIDENCE) / 2
    low, value, high = np.quantile(samples, [tail, 0.5, 1 - tail])
    return Estimate(float(value), float(low), float(high))


# ------------------------------------------------------------------------------------------------- before an audit
def cross_validated_quality(
    probe: LinearProbe,
    vectors: np.ndarray,
    labels: np.ndarray,
    *,
    collection_size: int,
    folds: int = 5,
    seed: int = 0,
    draws: int = DRAWS,
) -> Quality | None:
    """AP, precision and recall by k-fold cross-validation over training labels: OPTIMISTIC (see the module doc).

    Each fold is scored by a copy of ``probe`` refitted from its prior on the other folds; the intervals come from
    a bootstrap over the labels. Prevalence is None: training labels are no sample of the collection. None when
    there are fewer than 2 labels of each class.
    """
    labels = np.asarray(labels, dtype=np.float32)
    keep = labels != 0
    vectors, truth = np.asarray(vectors, dtype=np.float32)[keep], labels[keep] > 0
    if truth.sum() < 2 or (~truth).sum() < 2:
        return None
    folds = min(folds, int(truth.sum()), int((~truth).sum()))
    held_out = held_out_logits(probe, vectors, labels[keep], folds=folds, seed=seed)
    rng = np.random.default_rng(seed)
    order = np.argsort(-held_out, kind="stable")
    ranked_truth, above = truth[order], held_out[order] >= logit(probe.threshold)
    resample = np.sort(rng.integers(0, len(truth), size=(draws, len(truth))), axis=1)  # sorted: still ranked
    ap, precision, recall, _ = _summarise(ranked_truth[resample], above[resample].sum(axis=1))
    return Quality(
        ap=_estimate(ap),
        precision=_estimate(precision),
        recall=_estimate(recall),
        prevalence=None,
        matches=None,
        threshold=float(probe.threshold),
        audited=0,
        trained_on=len(truth),
        collection_size=collection_size,
        method="cross-validation",
        predicted=int(above.sum()),
    )


# ------------------------------------------------------------------------------------------------- in words
def verdict(quality: Quality) -> str:
    """One plain sentence: is this classifier good enough to share, and if not, what would help most."""
    if quality.optimistic:
        return "Check quality first: these figures come from the training labels, and they flatter the classifier."
    if quality.audited < 20:
        return f"Keep checking: {quality.audited} check label(s) are too few to tell; the intervals are wide."
    if quality.ap.high < 0.7:
        return "Keep labelling: even the best case of the estimate is a weak classifier."
    precise = quality.precision is None or quality.precision.low >= 0.7
    if quality.ap.low >= 0.8 and precise:
        return "Good enough to share: even the low ends of the intervals are solid."
    if quality.ap.width > 0.3:
        return "Keep checking: the estimate is still uncertain, and another check narrows it."
    return "Keep labelling: the classifier still misses or confuses too many images."


_lgamma = np.frompyfunc(math.lgamma, 1, 1)


def _betaln(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.asarray(_lgamma(a) + _lgamma(b) - _lgamma(a + b), dtype=np.float64)
