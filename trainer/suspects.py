"""Which labels look wrong? Cross-validated scores of the training labels, and the labels they most disagree with.

A person who labels quickly gets some answers wrong. A label the classifier was trained on cannot judge itself
(the fit bends towards it), so each label is judged by a copy of the classifier fitted, from its prior, on the
*other* labels only: k-fold cross-validation with the labels split into ``folds`` stratified folds. The held-out
logit says how strongly the rest of the labels (and the prompt) expect the opposite answer; ``suspect_labels``
returns the labels with the highest held-out probability of the other class, for the app to offer as "check these".

The classifier's own ``fit`` is used as it is (whatever its recipe and prior do), so what is judged is exactly the
model a round trains. ``trainer/quality.py``'s optimistic estimate uses the same held-out logits.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from .classifier import LinearProbe
from .logistic import sigmoid

__all__ = ["FOLDS", "Suspect", "held_out_logits", "suspect_labels"]

# Ten folds: each label is judged by a classifier fitted on 90% of the others, close to leave-one-out at a tenth of
# its fits (10 fits of a few ms at up to a few hundred labels).
FOLDS = 10


class Suspect(NamedTuple):
    id: str
    label: float  # the score the person gave, in [-1, 1]
    disagreement: float  # the held-out classifier's probability of the other class, in [0, 1]


def held_out_logits(
    probe: LinearProbe, vectors: np.ndarray, labels: np.ndarray, *, folds: int = FOLDS, seed: object = 0
) -> np.ndarray:
    """Each label's logit under a copy of ``probe`` refitted from its prior on the other folds, (n,) float64.

    ``labels`` are scores in [-1, 1], none of them 0 (a 0 trains nothing and has no class). The folds are
    stratified (each holds both classes where it can) and drawn from ``seed``; at most one fold per label.
    """
    labels = np.asarray(labels, dtype=np.float32)
    vectors = np.asarray(vectors, dtype=np.float32)
    if len(labels) != len(vectors):
        raise ValueError(f"got {len(vectors)} vectors for {len(labels)} labels")
    if (labels == 0).any():
        raise ValueError("a label of 0 has no class: leave it out before cross-validating")
    held_out = np.empty(len(labels))
    if not len(labels):
        return held_out
    truth = labels > 0
    folds = max(1, min(folds, len(labels)))
    rng = np.random.default_rng(seed)
    fold_of = np.empty(len(labels), np.int64)
    start = 0
    for cls in (True, False):  # stratified: deal each class out round-robin, the second where the first stopped
        members = rng.permutation(np.flatnonzero(truth == cls))
        fold_of[members] = (start + np.arange(len(members))) % folds
        start = (start + len(members)) % folds
    model = copy.deepcopy(probe)
    for fold in range(folds):
        rest = fold_of != fold
        model.reset_to_prior()  # the "original" recipe continues from the current weights: not from these
        model.fit(vectors[rest], labels[rest])
        held_out[~rest] = model.logits(vectors[~rest])
    return held_out


def suspect_labels(
    probe: LinearProbe,
    ids: Sequence[str],
    vectors: np.ndarray,
    labels: np.ndarray,
    k: int,
    *,
    folds: int = FOLDS,
    seed: object = 0,
) -> list[Suspect]:
    """The ``k`` labels the cross-validated classifier most disagrees with, most suspect first.

    Labels of 0 ("seen, no opinion") are skipped: they claim nothing. Fewer than ``k`` when there are fewer labels.
    """
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be a positive whole number of labels; got {k!r}")
    labels = np.asarray(labels, dtype=np.float32)
    keep = labels != 0
    ids = [i for i, kept in zip(ids, keep, strict=True) if kept]
    labels = labels[keep]
    z = held_out_logits(probe, np.asarray(vectors)[keep], labels, folds=folds, seed=seed)
    other = np.where(labels > 0, -z, z)  # the logit of the class the person did not choose
    disagreement = sigmoid(other)
    order = np.argsort(-disagreement, kind="stable")[:k]
    return [Suspect(ids[i], float(labels[i]), float(disagreement[i])) for i in order]
