"""Which labels look wrong? Cross-validated scores of the training labels, their nearest labelled neighbours, and
the labels they most disagree with.

A person who labels quickly gets some answers wrong. A label the classifier was trained on cannot judge itself
(the fit bends towards it), so each label is judged by a copy of the classifier fitted, from its prior, on the
*other* labels only: k-fold cross-validation with the labels split into ``folds`` stratified folds. The held-out
logit says how strongly the rest of the labels (and the prompt) expect the opposite answer.

That alone misses mistakes where the linear classifier cannot follow the labels: pulled toward the prompt, or
too coarse for the concept, it also disagrees with many *correct* labels, which then crowd the list. A second
witness does not depend on the fit at all: the label's ``NEIGHBOURS`` nearest labelled images, and the share of them
that carry the other class. A flipped label sits among images labelled the other way; a correct label the classifier
cannot fit still agrees with its neighbours. Nearness is measured along what the labelled images differ in most:
their ``PRINCIPAL_AXES`` leading principal axes (centred on their mean), by cosine. In all of an embedding's
dimensions most of a distance is variation no label is about, and a label's nearest images are near by chance.

A few dozen labels are a poor guide to what the images differ in, though: where each image carries much noise
(``hard``), the labels' own leading axes are partly noise. A third witness asks the same question along the leading
axes of the *collection* (``leading_axes`` of a sample of its vectors): the session's one sample, drawn once where its
index can sample or list its ids (``LocalIndex``, ``PineconeIndex``; ``QualityChecks.collection_axes`` in
trainer/session_quality.py, whose axes the fit's prior uses too) and passed in. Where there is none (an index that can
do neither, or a draw Pinecone refused) ``Suspect.collection_neighbours`` is None and the ranking is the two
witnesses above.

``suspect_labels`` ranks by the held-out probability of the other class plus ``NEIGHBOUR_WEIGHT`` times each
neighbour witness's share (``Suspect.doubt``, rescaled to [0, 1]) and returns the most doubted labels, for the app to
offer as "check these". Measured in ``benchmarks/RESULTS-learning.md``.

The classifier's own ``fit`` is used as it is (whatever its recipe and prior do), so what is judged is exactly the
model a round trains. ``trainer/quality.py``'s optimistic estimate uses the same held-out logits.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from . import blas
from .classifier import LinearProbe
from .logistic import sigmoid

__all__ = [
    "FOLDS",
    "NEIGHBOURS",
    "NEIGHBOUR_WEIGHT",
    "PRINCIPAL_AXES",
    "Axes",
    "Suspect",
    "held_out_logits",
    "leading_axes",
    "neighbour_disagreement",
    "principal_coordinates",
    "suspect_labels",
]

# Ten folds: each label is judged by a classifier fitted on 90% of the others, close to leave-one-out at a tenth of
# its fits (10 fits of a few ms at up to a few hundred labels).
FOLDS = 10
# The labelled neighbours each label is compared with, and how much their verdict counts next to the held-out
# classifier's. Chosen side by side on the careless labeller's sessions (benchmarks/RESULTS-learning.md): 5
# neighbours at half weight lifted every kind but one; 3 neighbours, or 10, or a weight of 1 or 2, did less.
NEIGHBOURS = 5
NEIGHBOUR_WEIGHT = 0.5
# The labelled images' leading principal axes that nearness is measured along. Chosen side by side on the careless
# labeller's sessions and the bundle's (benchmarks/RESULTS-learning.md): in all 512 dimensions `hard`'s flipped labels
# filled 57-59% of the 10 most suspect (20 seeds), along 8 axes 63-65%, and no kind or bundle family lost more than a
# label; 3-12 axes did about as well, and weighting the neighbours more lost on the bundle.
PRINCIPAL_AXES = 8
# The third witness (nearness along the collection's leading axes, as many as PRINCIPAL_AXES) was chosen side by side
# on the careless labeller's sessions (seeds 0-19 per kind, then checked on seeds 20-39) and the bundle's 81
# (benchmarks/RESULTS-learning.md): at NEIGHBOUR_WEIGHT, `hard`'s flipped labels filled 63% -> 72-75% of the 10 most
# suspect and no kind lost. The axes came from 1,000 collection vectors then; from the session's one sample of 4,000
# (shared with the fit's prior: trainer/session_quality.py), 40 seeds, `hard` 72.5% -> 74.2% and every other kind
# within a point; on the bundle 414 of 810 suspects flipped either way, each family within 2 labels. The collection's
# axes *instead of* the labels' did as well on `hard` but lost on the bundle. Found by subspace iteration
# (``leading_axes``), where an exact SVD of 1,000 x 512 took 200 ms.
# Subspace iterations and the extra directions iterated with the wanted ones: the synthetic kinds' structured axes
# come out as an exact SVD's (cosine >= 0.95; the others are noise either way), and the suspects' figures as the
# exact axes' within a label.
_ITERATIONS = 4
_EXTRA_AXES = 10


class Axes(NamedTuple):
    """Directions to measure nearness along: vectors are centred on ``mean`` (D,) and projected on ``basis``'s
    orthonormal columns (D, axes)."""

    mean: np.ndarray
    basis: np.ndarray


class Suspect(NamedTuple):
    id: str
    label: float  # the score the person gave, in [-1, 1]
    disagreement: float  # the held-out classifier's probability of the other class, in [0, 1]
    neighbours: float = 0.0  # the share of its nearest labelled neighbours that carry the other class, in [0, 1]
    # The same share with nearness along the collection's leading axes; None where the session has no such sample.
    collection_neighbours: float | None = None

    @property
    def doubt(self) -> float:
        """What the suspects are ranked by: the witnesses together, in [0, 1]."""
        if self.collection_neighbours is None:
            return (self.disagreement + NEIGHBOUR_WEIGHT * self.neighbours) / (1 + NEIGHBOUR_WEIGHT)
        both = self.neighbours + self.collection_neighbours
        return (self.disagreement + NEIGHBOUR_WEIGHT * both) / (1 + 2 * NEIGHBOUR_WEIGHT)


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


def neighbour_disagreement(
    vectors: np.ndarray,
    labels: np.ndarray,
    *,
    k: int = NEIGHBOURS,
    axes: int = PRINCIPAL_AXES,
    along: Axes | None = None,
) -> np.ndarray:
    """For each label, the share of its ``k`` nearest *other* labelled vectors whose class differs, (n,) float64; 0
    for a lone label. ``labels`` are non-zero scores in [-1, 1]. Nearness is cosine along the vectors' ``axes``
    leading principal axes, centred on their mean, or along ``along`` when given (see the module docstring)."""
    n = len(vectors)
    k = min(k, n - 1)
    if k < 1:
        return np.zeros(n)
    if along is None:
        coordinates = principal_coordinates(vectors, axes)
    else:
        coordinates = (np.asarray(vectors, dtype=np.float64) - along.mean) @ along.basis
    unit = coordinates / np.maximum(np.linalg.norm(coordinates, axis=1, keepdims=True), 1e-12)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -np.inf)  # never one's own neighbour
    nearest = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
    positive = np.asarray(labels) > 0
    return (positive[nearest] != positive[:, None]).mean(axis=1)


def principal_coordinates(vectors: np.ndarray, axes: int) -> np.ndarray:
    """``vectors`` (n, D) centred on their mean and projected on their ``axes`` leading principal axes, (n, axes)
    float64 (fewer columns when n or D is smaller: then nothing is lost but the mean)."""
    centred = np.asarray(vectors, dtype=np.float64)
    centred = centred - centred.mean(axis=0)
    # From the n x n Gram matrix (n is at most a few hundred labels): with centred = U S V^T, the coordinates are
    # U S, and U, S^2 are its eigenvectors and eigenvalues. One BLAS thread, as in the fit: on a busy machine
    # OpenBLAS's threads stall each other (measured at load 6: an SVD of 100 x 512 took 25 ms, 1.6 s at the 90th
    # percentile; this, single-threaded, 1.4 ms and 3 ms).
    with blas.one_blas_thread():
        values, vectors_of_gram = np.linalg.eigh(centred @ centred.T)
    top = np.argsort(values)[::-1][: min(axes, centred.shape[1])]
    return vectors_of_gram[:, top] * np.sqrt(np.maximum(values[top], 0.0))


def leading_axes(vectors: np.ndarray, axes: int = PRINCIPAL_AXES) -> Axes:
    """The ``axes`` leading principal axes of ``vectors`` (m, D), about their mean (fewer when m or D is smaller).

    By subspace iteration, started from the vectors' own first rows (a sample's rows are random, and lean towards the
    leading axes), so the same vectors always give the same axes. One BLAS thread, as in ``principal_coordinates``.
    """
    sample = np.asarray(vectors, dtype=np.float64)
    mean = sample.mean(axis=0)
    centred = sample - mean
    width = min(axes + _EXTRA_AXES, *centred.shape)
    with blas.one_blas_thread():
        basis = np.linalg.qr(centred[:width].T)[0]
        for _ in range(_ITERATIONS):
            basis = np.linalg.qr(centred.T @ (centred @ basis))[0]
        # Rayleigh-Ritz: the directions within the subspace, in order of the variance along them.
        _, _, turn = np.linalg.svd(centred @ basis, full_matrices=False)
    return Axes(mean, basis @ turn[: min(axes, width)].T)


def suspect_labels(
    probe: LinearProbe,
    ids: Sequence[str],
    vectors: np.ndarray,
    labels: np.ndarray,
    k: int,
    *,
    folds: int = FOLDS,
    seed: object = 0,
    collection_axes: Axes | None = None,
) -> list[Suspect]:
    """The ``k`` most doubted labels, most suspect first: by the cross-validated classifier's disagreement and
    their nearest labelled neighbours' (``Suspect.doubt``), along the labels' leading axes and, when
    ``collection_axes`` are given (``leading_axes`` of a sample of the collection), along those too.

    Labels of 0 ("seen, no opinion") are skipped: they claim nothing. Fewer than ``k`` when there are fewer labels.
    """
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be a positive whole number of labels; got {k!r}")
    labels = np.asarray(labels, dtype=np.float32)
    keep = labels != 0
    ids = [i for i, kept in zip(ids, keep, strict=True) if kept]
    labels, vectors = labels[keep], np.asarray(vectors)[keep]
    z = held_out_logits(probe, vectors, labels, folds=folds, seed=seed)
    other = np.where(labels > 0, -z, z)  # the logit of the class the person did not choose
    disagreement = sigmoid(other)
    neighbours = neighbour_disagreement(vectors, labels)
    if collection_axes is None:
        along_collection: list[float | None] = [None] * len(ids)
    else:
        along_collection = neighbour_disagreement(vectors, labels, along=collection_axes).tolist()
    rows = zip(ids, labels, disagreement, neighbours, along_collection, strict=True)
    suspects = [Suspect(i, float(y), float(d), float(m), c) for i, y, d, m, c in rows]
    order = np.argsort([-s.doubt for s in suspects], kind="stable")[:k]
    return [suspects[i] for i in order]
