"""A session's quality checks: audits drawn from the items never shown, the estimate of how good the classifier is
on the whole collection (trainer/quality.py), the training labels it most disagrees with (trainer/suspects.py), and
how many matches the unseen candidates still hold (trainer/remaining.py, from the fit's leave-one-out logits); and the
session's one sample of the collection and its leading axes (``collection_sample``, ``collection_axes``), which the
suspects and the fit's prior (trainer/prior_axes.py) both use.

``QualityChecks`` is mixed into ``Session``, whose state it reads: the index and the classifier, the training
labels, and the audited items (id -> design weight) with their labels, which the session holds out from training
and from every batch.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable

import numpy as np

from .audit import choose_audit
from .classifier import LinearProbe
from .collection_sample import Draw, collection_sample
from .exploration import SamplingIndex
from .index import Hit, IndexUnavailable, VectorIndex
from .logistic import sigmoid
from .quality import Quality, cross_validated_quality, estimate_quality
from .remaining import Remaining, positives_left
from .suspects import Axes, Suspect, held_out_logits, suspect_labels

__all__ = ["COLLECTION_SAMPLE", "QualityChecks"]

# The collection vectors a session draws, once, where its index can sample or list its ids (``collection_sample``): one
# sample and its leading axes (``suspects.leading_axes``) for both their users (benchmarks/RESULTS-learning.md,
# 2026-12-03 02:00 UTC). The fit's prior freer along the collection's axes (trainer/prior_axes.py) needs this many:
# where each item carries much noise a small sample's axes are partly noise (on `hard`, 15 seeds, labels to AP 0.9
# mean / median: 1,000 vectors 161 / 160, 2,000 138 / 120, 4,000 131 / 120; an exact SVD of 4,000 127 / 110). The
# suspects' third witness, which had a draw of 1,000 of its own, does as well along these axes (flipped labels among
# the 10 most suspect, 40 seeds: `hard` 72.5% -> 74.2%, every other kind within a point). The draw and its axes cost
# about 40 ms once a session at 512 dimensions (10k-100k vectors; 1,000 cost 8-11 ms): a session that asks for
# suspects before 100 labels pays it on that ask instead of on the round that reaches 100 labels.
COLLECTION_SAMPLE = 4000

log = logging.getLogger(__name__)

# An index without ``scores_all`` is scored whole through one query; a query returns at most this many hits.
MAX_QUERY = 10_000
# How many states' ``positives_left`` answers a session keeps: the current one and a few an undo returns to.
_LEFT_MEMO = 4


class QualityChecks:
    """Audits, quality estimates and suspect labels, for :class:`trainer.session.Session`."""

    index: VectorIndex
    classifier: LinearProbe
    seed: int
    _labels: dict[str, float]
    _audit: dict[str, float]  # audited id -> design weight: how many unseen items its draw stood for
    _audit_labels: dict[str, float]
    _candidates: np.ndarray  # the logits of the unseen candidates the last search returned
    batch_size: int
    _left_memo: dict[tuple, Remaining]  # recent states' positives_left answers (see there)
    # The session's one sample of the collection (ids) and its leading axes, once drawn (``collection_sample``), or
    # why it could not be drawn (``collection_note``): one try a session, so a failed draw costs no later round.
    _collection: Draw | None
    _collection_note: str | None

    def _init_quality_checks(self) -> None:
        """The state only the quality checks keep; ``Session.__init__`` calls this."""
        self._left_memo = {}
        self._collection = None
        self._collection_note = None

    @property
    def audit_labels(self) -> dict[str, float]:
        """Labels given to audited items: held out from training, used only by :meth:`quality`."""
        return dict(self._audit_labels)

    @property
    def audit_weights(self) -> dict[str, float]:
        """Each audited item's design weight: how many unseen items its draw stood for (see trainer/quality.py)."""
        return dict(self._audit)

    def audit(self, n: int) -> list[Hit]:
        """A random sample of ``n`` items never shown, stratified by the current score, to check quality with.

        Label them with :meth:`label` as usual: their labels are held out (never trained on) and feed
        :meth:`quality`. They never appear in a training batch. Returned in random order (best-scored first would
        hint at the answers), each with its current P(concept); fewer than ``n`` when fewer unseen items are left.
        Audits are not undone by :meth:`undo`.
        """
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"an audit needs a positive whole number of images; got {n!r}")
        ids, logits = self._collection_logits()
        seen = self.seen
        eligible = np.fromiter((i not in seen for i in ids), dtype=bool, count=len(ids))
        rng = self._audit_rng()
        rows, weights = choose_audit(logits, eligible, n, rng, threshold=self.classifier.threshold)
        shuffled = rng.permutation(len(rows))
        rows, weights = rows[shuffled], weights[shuffled]
        self._audit.update(zip((ids[r] for r in rows), weights.tolist(), strict=True))
        return [Hit(ids[r], float(p)) for r, p in zip(rows, sigmoid(logits[rows].astype(np.float64)), strict=True)]

    def pending_audit(self) -> list[Hit]:
        """Audited items without a label yet (an audit batch being labelled), in the order drawn, each with its
        current P(concept). Labelling them (0 counts: "no opinion") ends the audit."""
        return self._rescored([Hit(i, 0.0) for i in self._audit if i not in self._audit_labels])

    def quality(self, threshold: float | None = None) -> Quality | None:
        """How good the classifier is on the whole collection, at ``threshold`` (default: the classifier's).

        From the audit labels when there are any: honest estimates with 90% intervals (see trainer/quality.py).
        Before any audit, a cross-validated estimate over the training labels, marked ``optimistic``. None while
        neither is possible (fewer than 2 training labels of each class and no audit label).
        """
        threshold = self.classifier.threshold if threshold is None else float(threshold)
        if not 0 < threshold < 1:
            raise ValueError(f"threshold must be a probability strictly between 0 and 1; got {threshold!r}")
        audited = {i: v for i, v in self._audit_labels.items() if v != 0}
        trained = {i: v for i, v in self._labels.items() if v != 0}
        seed = [self.seed, len(self._audit_labels), len(self._labels)]
        if not audited:
            if not trained:
                return None
            probe = copy.deepcopy(self.classifier)
            probe.threshold = threshold
            vectors = self._vectors_of(list(trained))
            labels = np.asarray(list(trained.values()), dtype=np.float32)
            return cross_validated_quality(probe, vectors, labels, collection_size=len(self.index), seed=seed)
        ids, logits = self._collection_logits()
        row = {id_: r for r, id_ in enumerate(ids)}
        return estimate_quality(
            logits,
            threshold,
            trained_rows=np.asarray([row[i] for i in trained], dtype=np.int64),
            trained_truth=np.asarray([v > 0 for v in trained.values()], dtype=bool),
            audit_rows=np.asarray([row[i] for i in audited], dtype=np.int64),
            audit_truth=np.asarray([v > 0 for v in audited.values()], dtype=bool),
            audit_weights=np.asarray([self._audit[i] for i in audited]),
            split=self.classifier.threshold,
            seed=seed,
        )

    def suspect_labels(self, k: int = 10) -> list[Suspect]:
        """The ``k`` training labels most in doubt, most suspect first: each a ``Suspect(id, label, disagreement,
        neighbours, collection_neighbours)``, disagreement being the cross-validated classifier's probability of the
        other class and neighbours the share of its nearest labelled images labelled the other way, nearness measured
        along the labels' leading axes and (collection_neighbours) along the collection's; ranked by
        ``Suspect.doubt``, the witnesses together (see trainer/suspects.py). The collection's axes need an index that
        can sample or list its ids (``LocalIndex``, ``PineconeIndex``); where the draw fails (``collection_note``
        says why) collection_neighbours is None and the other two rank alone. For "check these": relabel one with
        :meth:`label` (after :meth:`add_to_batch`)."""
        given = {i: v for i, v in self._labels.items() if v != 0}
        vectors = self._vectors_of(list(given))
        labels = np.asarray(list(given.values()), dtype=np.float32)
        seed = [self.seed, len(given)]
        axes = self.collection_axes() if given else None
        return suspect_labels(self.classifier, list(given), vectors, labels, k, seed=seed, collection_axes=axes)

    def positives_left(self) -> Remaining:
        """How many matches the unseen candidates of the last search still hold, and whether they are running out
        (hardly any expected in the next batch's best): see trainer/remaining.py.

        The labels' held-out logits are the classifier's leave-one-out logits in closed form (no refit after a
        round; one fit when labels were given since), or for the "original" recipe and beyond the label-space fit,
        5-fold refits. The answer is kept for the state it was computed on, so asking again (a response that changes
        no label, an undo back to a recent state) costs a comparison."""
        given = {i: v for i, v in self._labels.items() if v != 0}
        probe = self.classifier
        key = (
            tuple(given.items()),
            self.batch_size,
            self.seed,
            self._candidates.tobytes(),
            probe.recipe,
            probe.prior_strength,  # not the last fit's: the closed form checks that the last fit is of these labels
            probe.weight.tobytes(),
            probe.bias,
            probe.prior_weight.numpy().tobytes(),
            float(probe.prior_bias),
        )
        memo = self._left_memo
        if key in memo:
            return memo[key]
        labels = np.asarray(list(given.values()), dtype=np.float32)
        vectors = self._vectors_of(list(given))
        held_out = probe.leave_one_out_logits(vectors, labels)
        if held_out is None:
            held_out = held_out_logits(probe, vectors, labels, folds=5, seed=[self.seed, len(given)])
        left = positives_left(self._candidates, held_out, labels > 0, self.batch_size)
        memo[key] = left
        while len(memo) > _LEFT_MEMO:  # the oldest first: dicts keep insertion order
            del memo[next(iter(memo))]
        return left

    def collection_sample(self) -> list[str] | None:
        """The ids of the session's one sample of the collection (``COLLECTION_SAMPLE`` of them, fewer in a smaller
        index), or None where the index can neither sample nor list its ids, or the draw failed
        (:attr:`collection_note`). Its vectors: ``index.fetch``.

        Drawn on the first ask (the first ``suspect_labels``, or the first automatic fit with
        ``prior_axes.FROM_LABELS`` labels), from a stream of the session's own seed, and kept for the session's
        life: no batch's random choice moves, undo keeps it, and the same session rebuilt from its saved copy with
        its seed draws the same. One draw for every user of "a sample of the collection" in a session, and one for
        every session of the same seed on this index (trainer/collection_sample.py)."""
        drawn = self._drawn_collection()
        return None if drawn is None else list(drawn.ids)

    def collection_axes(self) -> Axes | None:
        """The leading axes of :meth:`collection_sample` (``suspects.leading_axes``: ``PRINCIPAL_AXES`` of them about
        the sample's mean), or None where there is no sample. Computed once with the draw; the suspects' third
        witness measures nearness along them, and the fit's prior is freer along them (trainer/prior_axes.py)."""
        drawn = self._drawn_collection()
        return None if drawn is None else drawn.axes

    @property
    def collection_note(self) -> str | None:
        """Why the session has no sample of the collection though its index could give one (Pinecone refused, or its
        namespace is too large to list): a line for the person, as the stats line words it. None while the draw
        has not been tried, and once it succeeded."""
        return self._collection_note

    def _outside(self) -> SamplingIndex:
        """What a batch's items from outside the search are drawn from (trainer/exploration.py): the index where it
        can sample (``LocalIndex``), else the session's one sample of the collection (Pinecone: its rounds stay one
        query), drawn at the first need and handing over the picked items' vectors, so showing them costs no call."""
        return self.index if isinstance(self.index, SamplingIndex) else _FromSample(self)

    def _drawn_collection(self) -> Draw | None:
        if self._collection is None and self._collection_note is None:
            # Every session of this seed draws the same: the draw is made once for all of them, and kept here as
            # shared (read-only ids and arrays), so that a grown index does not change this session's sample.
            try:
                self._collection = collection_sample(self.index, COLLECTION_SAMPLE, self.seed)
            except (IndexUnavailable, KeyError) as err:
                # Not fatal: the suspects rank by their other witnesses, every fit keeps the plain prior, no explored
                # match is followed up, and a Pinecone session does not look beyond its search.
                reason = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
                self._collection_note = (
                    f"No sample of the collection: {reason.rstrip('.')}. Labelling goes on; suspect labels, fits "
                    "and looking beyond the search do without it."
                )
                log.warning("collection sample not drawn: %s", reason)
        return self._collection

    def _collection_logits(self) -> tuple[list[str], np.ndarray]:
        """Every item's id and current logit ``w . x + b``, in one pass over the index."""
        weight, bias = self.classifier.weight, self.classifier.bias
        scores_all = getattr(self.index, "scores_all", None)
        if callable(scores_all) and hasattr(self.index, "ids"):
            return list(self.index.ids), scores_all(weight).astype(np.float64) + bias  # type: ignore[attr-defined]
        if len(self.index) > MAX_QUERY:
            raise ValueError(
                f"checking quality scores every image, and this index ({type(self.index).__name__}, "
                f"{len(self.index):,} images) returns at most {MAX_QUERY:,} per query: use a local index"
            )
        hits = self.index.query(weight, len(self.index))
        return [h.id for h in hits], np.asarray([h.score for h in hits], dtype=np.float64) + bias

    def _audit_rng(self) -> np.random.Generator:
        # Its own stream: an audit must not shift the training batches' random choices (nor undo's replay of them).
        return np.random.default_rng([self.seed, 0xA0D17, len(self._audit)])


class _FromSample:
    """``QualityChecks._outside`` for an index that cannot sample: uniform picks among the unseen items of the
    session's one sample of the collection (``LocalIndex.sample`` over it), their vectors put in the session's cache.
    None picked where there is no sample (the draw failed: ``collection_note`` says why)."""

    def __init__(self, checks: QualityChecks) -> None:
        self._checks = checks

    def sample(self, k: int, rng: np.random.Generator, exclude: Iterable[str] | None = None) -> list[str]:
        drawn = self._checks._drawn_collection()
        if drawn is None:
            return []
        ids = drawn.local.sample(k, rng, exclude)
        self._checks._vectors_of(ids, source=drawn.local)
        return ids
