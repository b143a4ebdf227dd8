"""One person's labelling loop: the labels, what they have seen, the classifier and the round history.

Pure Python over an index; no UI. Everything that belongs to one person lives here and nowhere else, so any number
of sessions can share one index (and one Pinecone namespace) without ever seeing each other's work. Its quality
checks (audits, estimates, suspect labels) are in trainer/session_quality.py, and its saved copy (``to_saved``,
``from_saved``) in trainer/saved_state.py, both mixed in.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch

from . import checks
from .checkpoints import Checkpoints
from .classifier import FitReport, LinearProbe, check_prior_strength
from .exploration import EXPLORE_EMPTY, EXPLORE_FULL, FOLLOW_UP, beyond, explore, follow_up, looks_beyond
from .index import Hit, VectorIndex
from .logistic import sigmoid
from .prior_axes import FROM_LABELS, Stretch
from .record import RoundStats, SessionRecord
from .saved_state import MAX_BATCH_SIZE, SavedCopies, fetch_known
from .session_quality import QualityChecks
from .strategies import STRATEGIES, TOP_WINDOW, get_strategy, pool_size_for, top_slots

__all__ = ["EXPLORE_EMPTY", "EXPLORE_FULL", "KEEP", "MAX_BATCH_SIZE", "RECIPE_NAMES", "Session"]

log = logging.getLogger(__name__)

# "original" is a recipe, not only a selection rule: the article's top-k selection *and* its training update.
RECIPE_NAMES = (*STRATEGIES, "original")
# The strategies that look beyond the search's pool when it looks full (trainer/exploration.py); "top" stays the
# article's selection, and "random" draws from the widest pool already.
EXPLORING = ("mixed", "boundary")
# How many prompt scores calibrate the zero-shot probabilities (see Session._prior).
_CALIBRATION_SAMPLE = 256
# ``configure``'s default for a setting to leave as it is (None is a value there: the automatic prior strength).
KEEP = object()


class Session(QualityChecks, SavedCopies):
    """Labels in, better batches out. See ARCHITECTURE.md for the contract; the names here are public API."""

    def __init__(
        self,
        index: VectorIndex,
        prompt_vector: np.ndarray,
        strategy: str = "mixed",
        batch_size: int = 10,
        seed: int = 0,
        *,
        pool_size: int | None = None,
        prior_strength: float | None = None,
        classifier: LinearProbe | None = None,
        prompt: str | None = None,
        negative_prompt: str | None = None,
        base_model: str | None = None,
        base_model_revision: str | None = None,
        collection: str | None = None,
    ) -> None:
        # Every argument is checked before any work: a refused session costs nothing.
        if not isinstance(strategy, str) or strategy not in RECIPE_NAMES:
            raise ValueError(f"unknown strategy {checks.shown(strategy)}; choose one of {', '.join(RECIPE_NAMES)}")
        batch_size = checks.integer(batch_size, "batch_size", low=1, high=MAX_BATCH_SIZE)
        prior_strength = check_prior_strength(prior_strength)
        if len(index) == 0:
            raise ValueError("the index is empty: build it from a collection before starting a session")
        prompt_vector = checks.unit_vector(prompt_vector, index.dim)
        if classifier is not None and classifier.dim != index.dim:
            raise ValueError(f"classifier takes {classifier.dim}-d embeddings but the index holds {index.dim}-d ones")
        self.index = index
        self.strategy = strategy
        self.batch_size = batch_size
        self.seed = seed
        # How the session was started, kept so that it can be saved and rebuilt (``to_saved``, ``from_saved``).
        self.prompt_vector = prompt_vector  # (D,) unit, read-only: the search direction the session began with
        self.prompt = prompt if prompt is not None else (classifier.prompt if classifier is not None else None)
        self.negative_prompt = negative_prompt or (classifier.negative_prompt if classifier is not None else None)
        self.collection = collection
        # None: a share of the collection (strategies.pool_size_for: 1,000 up to 8,000 items, 5,000 from 40,000).
        self.pool_size = max(pool_size_for(len(index)) if pool_size is None else pool_size, batch_size)
        self._select = get_strategy("top" if strategy == "original" else strategy)
        self._rng = np.random.default_rng(seed)
        self._labels: dict[str, float] = {}
        # The round in which each label was last given: shared labels say when, so others can replay the session.
        self._label_rounds: dict[str, int] = {}
        self._newest: dict[str, float] = {}  # labels given since the last round: all the "original" recipe trains on
        self._vectors: dict[str, np.ndarray] = {}  # embeddings read so far (labelled, picked, neighbours), once each
        self._seen: set[str] = set()
        # Audited items (see trainer/quality.py): id -> design weight. Held out: never trained on, never in a batch;
        # kept out of the undo checkpoints, so undoing a round never turns an audit label into a training label.
        self._audit: dict[str, float] = {}
        self._audit_labels: dict[str, float] = {}
        self._history: list[RoundStats] = []
        self._rounds_before = 0  # rounds trained before a saved copy was taken over (``from_saved``)
        self._candidates = np.empty(0)  # the logits of the unseen candidates the last search returned
        # The ids ``mixed`` picked from the top of each batch, oldest first: their labels set the next batches' make-up.
        # Not saved: a session rebuilt from a saved copy starts half/half again.
        self._top_picks: list[list[str]] = []
        # Undo's checkpoints, one a round: older ones kept as what the round changed (trainer/checkpoints.py).
        self._undo = Checkpoints(incremental=("labels", "label_rounds", "newest", "seen"))
        # Items of the batch drawn from outside the search (trainer/exploration.py), and why: the app marks them.
        self._explored: frozenset[str] = frozenset()
        self._explore_reason: str | None = None
        self.exhausted = False
        self._init_quality_checks()

        if classifier is None:
            pool = index.query(prompt_vector, self._pool_k())
            recipe = "original" if strategy == "original" else "balanced"
            scale, bias = (1.0, 0.0) if recipe == "original" else _calibrate([h.score for h in pool])
            classifier = LinearProbe.from_prompt(
                prompt_vector,
                scale=scale,
                bias=bias,
                recipe=recipe,
                prior_strength=prior_strength,
                prompt=prompt,
                negative_prompt=negative_prompt or None,
                base_model=base_model,
                base_model_revision=base_model_revision,
            )
            # The search ran on the unit prompt vector; the classifier's weight is that vector times ``scale``.
            pool = [Hit(h.id, h.score * scale) for h in pool]
        else:
            pool = index.query(classifier.weight, self._pool_k())
        self.classifier = classifier
        self._batch = self._choose(pool)

    # ------------------------------------------------------------------------------------------------- reading
    def batch(self) -> list[Hit]:
        """The batch to label now, with each item's current P(concept) as its score. Empty once exhausted."""
        return list(self._batch)

    @property
    def explored(self) -> frozenset[str]:
        """The items of :meth:`batch` drawn at random from outside the search's pool, not ranked by the classifier
        (``mixed`` and ``boundary``; on Pinecone from the session's sample of the collection: see
        trainer/exploration.py). Often empty."""
        return frozenset(h.id for h in self._batch if h.id in self._explored)

    @property
    def explore_reason(self) -> str | None:
        """Why :attr:`explored` is not empty: ``EXPLORE_EMPTY`` (the classifier expects no likely match among the
        search's candidates) or ``EXPLORE_FULL`` (it expects them to be mostly matches); None when it is empty."""
        return self._explore_reason if self.explored else None

    @property
    def round(self) -> int:
        """The round whose batch is on screen, 1-based, as the app numbers it; it carries on after ``from_saved``."""
        return self._rounds_before + len(self._history) + 1

    @property
    def rounds_trained(self) -> int:
        """Rounds trained so far (``round - 1``): those of :attr:`history`, and those before a saved copy."""
        return self.round - 1

    @property
    def labels(self) -> dict[str, float]:
        return dict(self._labels)

    @property
    def label_rounds(self) -> dict[str, int]:
        """For each labelled id, the (1-based) round whose batch it was labelled in (the latest, if relabelled);
        0 for labels taken over with :meth:`resume`."""
        return dict(self._label_rounds)

    @property
    def history(self) -> list[RoundStats]:
        return list(self._history)

    @property
    def can_undo(self) -> bool:
        """Whether :meth:`undo` has a round (or a resume) to take back."""
        return bool(self._undo)

    @property
    def seen(self) -> frozenset[str]:
        """Every item shown in this session: training batches and audits."""
        return frozenset(self._seen | self._audit.keys() | {h.id for h in self._batch})

    def scores(self, vectors: np.ndarray) -> np.ndarray:
        """P(concept) under the current classifier for any (n, D) embeddings."""
        return self.classifier.predict_proba(vectors)

    def record(self) -> SessionRecord:
        """What sharing this session's classifier carries (trainer/record.py): a snapshot, with its quality now."""
        return SessionRecord(
            classifier=copy.deepcopy(self.classifier),
            labels=self.labels,
            label_rounds=self.label_rounds,
            history=tuple(self._history),
            strategy=self.strategy,
            quality=self.quality(),
            audit_labels=self.audit_labels,
            rounds_trained=self.rounds_trained,
        )

    # ------------------------------------------------------------------------------------------------- writing
    def label(self, scores: Mapping[str, float]) -> None:
        """Record scores in [-1, 1] for items shown in this session (now or earlier). 0 = seen, no opinion.

        All-or-nothing: one bad entry refuses the whole call and changes nothing.
        """
        shown = self.seen
        unknown = [i for i in scores if i not in shown]
        if unknown:
            raise ValueError(
                f"{len(unknown)} id(s) were never shown in this session, so they cannot be labelled: "
                f"{checks.shown(unknown[:5])}"
            )
        clean = checks.label_scores(scores)
        audit = {i: v for i, v in clean.items() if i in self._audit}
        clean = {i: v for i, v in clean.items() if i not in self._audit}
        missing = [i for i in clean if i not in self._vectors and clean[i] != 0]
        if missing:
            # One read for the whole call; vectors are fetched before any state changes.
            self._vectors.update(zip(missing, self.index.fetch(missing), strict=True))
        self._audit_labels.update(audit)
        self._labels.update(clean)
        self._newest.update(clean)
        self._label_rounds.update(dict.fromkeys(clean, self.round))

    def train_and_requery(self, more_like: Sequence[str] = ()) -> list[Hit]:
        """Fit on every label so far, then return the next batch: items never shown in this session.

        ``more_like``: ids shown in this session ("more like this"); their nearest unseen neighbours fill the first
        half of the next batch, the strategy the rest.
        """
        # Before anything changes (a failed search loses nothing): the neighbours asked for, then those of the
        # explored match the classifier expected least among the session's sample of the collection, which costs no
        # call (trainer/exploration.py, ``follow_up``).
        neighbours = self._neighbours(more_like)
        explored = {h.id: h.score for h in self._batch if h.id in self._explored}
        followed = follow_up(explored, self._labels)
        drawn = self._drawn_collection() if followed else None
        if drawn is not None:
            neighbours += self._neighbours(followed, FOLLOW_UP, neighbours, within=drawn.local)
        fit, pool = self._refit_and_query(lambda: self._seen.update(h.id for h in self._batch))
        self._newest = {}
        taken = frozenset(h.id for h in neighbours)
        chosen = self._choose([h for h in pool if h.id not in taken], self.batch_size - len(neighbours), taken)
        self._batch = self._rescored(neighbours) + chosen
        positives = sum(v > 0 for v in self._labels.values())
        negatives = sum(v < 0 for v in self._labels.values())
        self._history.append(
            RoundStats(self.round, self.strategy, len(self._seen), positives + negatives, positives, negatives, fit)
        )
        if not self._batch:
            self.exhausted = True
            log.info("collection exhausted after %d rounds: every item has been shown", len(self._history))
        return self.batch()

    def resume(self, scores: Mapping[str, float], *, undoable: bool = True) -> list[Hit]:
        """Take over labels given earlier, elsewhere (a restarted app, a pulled classifier's labels.jsonl).

        The items count as shown, the classifier is fitted on every label, and a fresh batch is chosen, as after
        a round. All-or-nothing: unknown ids or bad scores refuse the whole call. ``undo`` takes it back, unless
        ``undoable`` is False: a session rebuilt from a saved copy starts where it was saved, and Undo stops there.
        """
        clean = checks.label_scores(scores)
        held_out = [i for i in clean if i in self._audit]
        if held_out:
            raise ValueError(
                f"cannot resume: {len(held_out)} label(s) are for audited items, held out: {checks.shown(held_out[:5])}"
            )
        ids = [i for i in clean if i not in self._vectors]
        self._vectors.update(zip(ids, fetch_known(self.index, ids), strict=True))  # a cache: harmless if it fails

        def take_over() -> None:
            self._labels.update(clean)
            self._label_rounds.update(dict.fromkeys(clean, 0))  # round 0: given before this session began
            self._seen.update(clean)

        _, pool = self._refit_and_query(take_over)
        if not undoable:
            self._undo.pop()
        self._batch = self._choose(pool)
        self.exhausted = not self._batch
        return self.batch()

    def undo(self) -> list[Hit]:
        """Return to the state just before the last ``train_and_requery``; the batch shown then comes back."""
        if not self._undo:
            raise ValueError("nothing to undo: no round has been trained yet")
        self._restore(self._undo.pop())
        return self.batch()

    def configure(
        self,
        *,
        strategy: str | None = None,
        batch_size: int | None = None,
        prior_strength: float | object | None = KEEP,
        prompt_vector: np.ndarray | None = None,
        negative_prompt: str | None = None,
    ) -> dict[str, tuple[object, object]]:
        """Change how the next rounds are chosen and trained; labels, seen items and the batch on screen stay.

        ``prompt_vector`` replaces the prior's direction, keeping its calibrated scale: the prompt pushed away from
        a new ``negative_prompt`` ("" for none), which the classifier records. ``prior_strength=None`` makes the
        strength automatic (``trainer/map_fit.py``); leave it out to keep it. Returns ``{setting: (old, new)}`` for
        what actually changed. All-or-nothing: a bad value changes nothing.
        """
        changes: dict[str, tuple[object, object]] = {}
        if strategy is not None and strategy != self.strategy:
            if strategy not in RECIPE_NAMES:
                raise ValueError(f"unknown strategy {strategy!r}; choose one of {', '.join(RECIPE_NAMES)}")
            if "original" in (strategy, self.strategy):
                raise ValueError(
                    "the 'original' recipe trains differently: start a new session to switch to or from it"
                )
            changes["strategy"] = (self.strategy, strategy)
        if batch_size is not None and batch_size != self.batch_size:
            if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
                raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}")
            changes["batch_size"] = (self.batch_size, batch_size)
        if prior_strength is not KEEP and prior_strength != self.classifier.prior_strength:
            if prior_strength is not None and (not np.isfinite(prior_strength) or prior_strength <= 0):
                raise ValueError(f"prior_strength must be a positive number; got {prior_strength!r}")
            changes["prior_strength"] = (
                self.classifier.prior_strength,
                None if prior_strength is None else float(prior_strength),  # type: ignore[arg-type]
            )
        prior = None
        if prompt_vector is not None:
            vector = np.asarray(prompt_vector, dtype=np.float32).reshape(-1)
            norm = float(np.linalg.norm(vector)) if np.isfinite(vector).all() else 0.0
            if vector.shape[0] != self.index.dim or norm == 0:
                raise ValueError(f"prompt vector must be {self.index.dim} finite numbers, not all 0")
            scale = float(self.classifier.prior_weight.norm())
            prior = vector / norm * scale
            if not np.allclose(prior, self.classifier.prior_weight.numpy(), atol=1e-6 * max(scale, 1.0)):
                changes["prompt"] = ("before", "after")
        if "strategy" in changes:
            self.strategy = strategy  # type: ignore[assignment]
            self._select = get_strategy(self.strategy)
        if "batch_size" in changes:
            self.batch_size = batch_size  # type: ignore[assignment]
            self.pool_size = max(self.pool_size, self.batch_size)
        if "prior_strength" in changes:
            self.classifier.prior_strength = changes["prior_strength"][1]  # type: ignore[assignment]
        if "prompt" in changes:
            self.classifier.prior_weight.copy_(torch.from_numpy(prior))
        if negative_prompt is not None and (negative_prompt or None) != self.classifier.negative_prompt:
            changes["negative_prompt"] = (self.classifier.negative_prompt or "", negative_prompt)
            self.classifier.negative_prompt = negative_prompt or None
        return changes

    def add_to_batch(self, ids: Sequence[str]) -> list[Hit]:
        """Put items of the collection on the current batch (a point picked on the map), so they can be labelled.

        Items already on the batch stay where they are; an item seen in an earlier round comes back with its label.
        """
        new = [i for i in dict.fromkeys(ids) if i not in {h.id for h in self._batch}]
        if new:
            self._batch = self._batch + self._rescored([Hit(i, 0.0) for i in new])  # KeyError for an unknown id
        return self.batch()

    # ------------------------------------------------------------------------------------------------- internals
    def _neighbours(
        self,
        ids: Sequence[str],
        each: int | None = None,
        taken: Sequence[Hit] = (),
        *,
        within: VectorIndex | None = None,
    ) -> list[Hit]:
        """Unseen items nearest to ``ids`` (items shown in this session), shared out evenly: with ``taken`` (found
        already, never found again) up to half a batch, and at most ``each`` an id when given; looked for in the
        session's index, or in ``within`` (the session's sample of the collection, an in-memory index of its own).

        Their vectors are fetched here, before a round changes anything, so the round itself needs no more reads.
        """
        search = self.index if within is None else within
        ids = list(dict.fromkeys(ids))
        want = (self.batch_size + 1) // 2 - len(taken)
        if each is not None:
            want = min(want, each * len(ids))
        if not ids or want <= 0:
            return []
        shown = self.seen
        unknown = [i for i in ids if i not in shown]
        if unknown:
            raise ValueError(
                f"'more like this' takes items shown in this session; never shown: {checks.shown(unknown[:5])}"
            )
        quota = -(-want // len(ids))  # ceil: the first items' neighbours fill what the last ones leave
        found: dict[str, Hit] = {}
        exclude = shown | {h.id for h in taken}
        for query in self._vectors_of(ids):
            hits = search.query(query, quota + len(found), exclude=exclude)
            fresh = [h for h in hits if h.id not in found][: min(quota, want - len(found))]
            found.update((h.id, h) for h in fresh)
        self._vectors_of(list(found), source=search)
        return list(found.values())

    def _rescored(self, hits: list[Hit]) -> list[Hit]:
        """``hits`` with the current classifier's P(concept) as their scores."""
        if not hits:
            return []
        proba = self.scores(self._vectors_of([h.id for h in hits]))
        return [Hit(h.id, float(p)) for h, p in zip(hits, proba, strict=True)]

    def _vectors_of(self, ids: list[str], source: VectorIndex | None = None) -> np.ndarray:
        """(n, D) embeddings of ``ids``, fetched in one read for those not fetched before (KeyError if unknown), from
        ``source`` where given (the session's sample of the collection, which holds its items' vectors: no read of
        the session's index), else from the index."""
        missing = [i for i in ids if i not in self._vectors]
        if missing:
            self._vectors.update(zip(missing, (self.index if source is None else source).fetch(missing), strict=True))
        if not ids:
            return np.empty((0, self.index.dim), np.float32)
        # One concatenation, not np.stack: half the time at 200 labels (each row would be expanded first).
        return np.concatenate([self._vectors[i] for i in ids]).reshape(len(ids), -1)

    def _refit_and_query(self, change: Callable[[], None]) -> tuple[FitReport, list[Hit]]:
        """Checkpoint for undo, apply ``change``, fit on every label and search the unseen items.

        Any failure (the index unreachable, say) restores the checkpoint: a failed round loses nothing.
        """
        self._undo.push(self._snapshot())
        try:
            change()
            fit = self._fit()
            pool = self.index.query(self.classifier.weight, self._pool_k(), exclude=self._seen | self._audit.keys())
        except Exception:
            self._restore(self._undo.pop())
            raise
        return fit, pool

    def _pool_k(self) -> int:
        # Random sampling wants the widest pool a single query allows; the others only look near the top.
        k = len(self.index) if self.strategy == "random" else self.pool_size
        return min(len(self.index), k, 10_000)

    def _choose(self, pool: list[Hit], k: int | None = None, taken: frozenset[str] = frozenset()) -> list[Hit]:
        """Pick the next batch (``k`` items, default a whole batch) from a pool whose scores are ``weight . x``: add
        the bias to get P(concept). ``mixed`` and ``boundary`` may add a few items from outside the pool, never one
        of ``taken`` (already on the batch): see trainer/exploration.py."""
        self._candidates = self._logits(pool)
        self._explored, self._explore_reason = frozenset(), None
        if not pool:
            return []
        k = self.batch_size if k is None else k
        proba = sigmoid(self._candidates)
        outside: list[str] = []
        if self.strategy in EXPLORING:
            shown = self._seen | self._audit.keys() | taken
            pool_ids = [h.id for h in pool]
            outside, self._explore_reason = explore(self._outside(), pool_ids, proba, k, shown, self._rng)
            self._explored = frozenset(outside)
            if self._explore_reason == EXPLORE_FULL:  # its boundary may lie beyond it: see exploration.beyond
                below = self._beyond([*pool_ids, *shown, *self._explored], k - len(outside))
                pool, proba = pool + below, np.concatenate([proba, sigmoid(self._logits(below))])
        options = {}
        if self.strategy == "mixed":  # the labels set the batch's make-up: see strategies.top_slots
            recent = [self._labels[i] > 0 for ids in self._top_picks[-TOP_WINDOW:] for i in ids if self._labels.get(i)]
            options["top_count"] = top_slots(k - len(outside), recent)
            self._top_picks.append([h.id for h in pool[: options["top_count"]]])
        positions = self._select(proba, k - len(outside), self._rng, **options)
        chosen = sorted(int(p) for p in positions)  # show in ranking order, best first
        below = [pool[p].id for p in chosen if p >= len(self._candidates)]
        if below:  # from the session's sample, which holds their vectors: no call
            self._vectors_of(below, source=self._collection.local)
        return [Hit(pool[p].id, float(proba[p])) for p in chosen] + self._rescored([Hit(i, 0.0) for i in outside])

    def _logits(self, hits: list[Hit]) -> np.ndarray:
        return np.asarray([h.score for h in hits], dtype=np.float64) + self.classifier.bias

    def _beyond(self, exclude: list[str], k: int) -> list[Hit]:
        """The session's sample's items below a full pool that the classifier is least sure of, none of ``exclude``
        (the pool, what was shown, what is on the batch): trainer/exploration.py, ``beyond``."""
        non_matches = sum(v < 0 for v in self._labels.values())
        drawn = self._drawn_collection() if looks_beyond(non_matches) else None  # no draw while the gate is closed
        if drawn is None:
            return []
        return beyond(drawn.local, self.classifier.weight, self.classifier.bias, exclude, k, non_matches)

    def _fit(self) -> FitReport:
        source = self._newest if self.classifier.recipe == "original" else self._labels
        ids = [i for i, v in source.items() if v != 0 or self.classifier.recipe == "original"]
        if not ids:
            return self.classifier.fit(np.empty((0, self.index.dim), np.float32), np.empty(0, np.float32))
        vectors = self._vectors_of(ids)
        automatic = self.classifier.recipe == "balanced" and self.classifier.prior_strength is None
        if automatic and len(ids) >= FROM_LABELS and self.classifier.stretch is None:
            axes = self.collection_axes()  # trainer/session_quality.py: None where the session has no sample
            self.classifier.stretch = None if axes is None else Stretch.along(axes.basis, self.prompt_vector)
        return self.classifier.fit(vectors, np.asarray([source[i] for i in ids], dtype=np.float32))

    def _snapshot(self) -> dict:
        return {
            "labels": dict(self._labels),
            "label_rounds": dict(self._label_rounds),
            "newest": dict(self._newest),
            "seen": set(self._seen),
            "batch": list(self._batch),
            "history": list(self._history),
            # clone(), not deepcopy: a fifth of the time (0.07 against 0.38 ms a round), and nothing here is shared.
            "classifier": {name: tensor.clone() for name, tensor in self.classifier.state_dict().items()},
            "rng": copy.deepcopy(self._rng.bit_generator.state),
            "exhausted": self.exhausted,
            "candidates": self._candidates,
            "top_picks": list(self._top_picks),
            "explored": (self._explored, self._explore_reason),
        }

    def _restore(self, state: dict) -> None:
        self._labels = state["labels"]
        self._label_rounds = state["label_rounds"]
        self._newest = state["newest"]
        self._seen = state["seen"]
        self._batch = state["batch"]
        self._history = state["history"]
        self.classifier.load_state_dict(state["classifier"])
        self._rng.bit_generator.state = state["rng"]
        self.exhausted = state["exhausted"]
        self._candidates = state["candidates"]
        self._top_picks = state["top_picks"]
        self._explored, self._explore_reason = state["explored"]


def _calibrate(scores: list[float]) -> tuple[float, float]:
    """Scale and bias for the zero-shot classifier from the prompt's top scores.

    Raw dot products of normalised CLIP vectors sit in a narrow band (about 0.2-0.3 for ViT-B/32), so ``sigmoid``
    of them says 0.55 for everything. We stretch the top of the ranking instead: within the best
    ``_CALIBRATION_SAMPLE`` hits the median gets P = 0.5, the 90th percentile 0.9 and the 10th 0.1. The ranking is
    untouched; the first fit learns the real bias from the labels.
    """
    sample = np.asarray(scores[:_CALIBRATION_SAMPLE], dtype=np.float64)
    median = float(np.median(sample)) if len(sample) else 0.0
    spread = float(np.quantile(sample, 0.9) - np.quantile(sample, 0.1)) if len(sample) > 1 else 0.0
    scale = 2 * np.log(9) / spread if spread > 1e-6 else 10.0
    return float(scale), float(-scale * median)
