"""The linear head: one weight vector and a bias over L2-normalised CLIP image embeddings.

Label semantics, and how they map onto binary cross-entropy
-----------------------------------------------------------
A label is a score ``y`` in [-1, 1]: its sign is the class and its magnitude the confidence.
Each labelled vector becomes one BCE term with target ``t = 1 if y > 0 else 0`` and weight ``|y|``, so ``+1`` is
"exactly it", ``-0.3`` is "probably not", and ``0`` ("seen, no opinion") contributes nothing. (The original
article passed ``y`` in -1..1 straight to ``BCEWithLogitsLoss``, whose targets must lie in 0..1; the ``"original"``
recipe reproduces it with the mapping it intended, ``t = (y + 1) / 2``.)

Training (recipe ``"balanced"``) is a MAP estimate: class-balanced weighted BCE over *every* label so far, plus an
L2 pull of the weights toward the prompt's prior. The pull is a fixed amount while the data term grows with each
label, so a handful of labels nudges the zero-shot classifier and many labels are free to overrule it. The problem
is convex and tiny; up to a few hundred labels it is solved exactly in label space (``trainer/map_fit.py``: n
unknowns, not d + 1), beyond that by a full-batch L-BFGS over the weights.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

from . import blas, checks, map_fit, prior_axes
from .logistic import sigmoid

__all__ = [
    "KERNEL_MAX_LABELS",
    "MAX_DIM",
    "MAX_PRIOR_STRENGTH",
    "RECIPES",
    "FitReport",
    "LinearProbe",
    "check_prior_strength",
    "label_targets",
]

RECIPES = ("balanced", "original")
# The widest CLIP embedding today is 1,280 (ViT-bigG). A config asking for far more is broken or hostile: refused
# before anything is allocated (a dim of 500,000,000 used to build a 2 GB layer before any check).
MAX_DIM = 16_384
# How strongly training pulls toward the prompt, in labels' worth (see ``fit``). Beyond a million the pull swamps
# any labelling, and a huge value overflows the fit's arithmetic.
MAX_PRIOR_STRENGTH = 1e6
# base_model (a Hub id or a portable name) and base_model_revision (a branch, tag or commit) are short.
MAX_NAME_CHARS = 256
# Up to this many labels a fit takes exact Newton steps in label space (``trainer/map_fit.py``); beyond, each step's
# n x n solve costs more than L-BFGS over the d + 1 weights, which takes over.
KERNEL_MAX_LABELS = 400


@dataclass(frozen=True)
class FitReport:
    labels_used: int  # labels with a non-zero score, i.e. the ones that trained anything
    positives: int
    negatives: int
    loss: float


def label_targets(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map scores in [-1, 1] to (BCE targets in {0, 1}, per-label weights ``|y|``). See the module docstring."""
    labels = np.asarray(labels, dtype=np.float32)
    if labels.ndim != 1:
        raise ValueError(f"labels must be a 1-D array of scores; got shape {labels.shape}")
    if not np.isfinite(labels).all() or np.abs(labels).max(initial=0) > 1:
        bad = labels[~np.isfinite(labels) | (np.abs(labels) > 1)]
        raise ValueError(f"label scores must be finite and within [-1, 1]; got {bad[:5].tolist()}")
    return (labels > 0).astype(np.float32), np.abs(labels)


def check_prior_strength(value: object) -> float | None:
    """``prior_strength`` as a float, or None ("automatic": the labels choose it each fit, see
    ``trainer/map_fit.py``), or a ValueError: a finite number > 0, at most ``MAX_PRIOR_STRENGTH``."""
    if value is None:
        return None
    return checks.number(value, "prior_strength (the pull toward the prompt)", above=0, high=MAX_PRIOR_STRENGTH)


class LinearProbe(
    nn.Module,
    PyTorchModelHubMixin,
    library_name="concept-trainer",
    tags=["clip", "linear-probe", "concept-trainer", "image-classification"],
):
    """``logit = w . x + b`` over L2-normalised CLIP image embeddings ``x``; ``sigmoid(logit)`` = P(concept).

    The constructor's arguments are what ``save_pretrained`` writes to config.json, so a pulled classifier knows
    which CLIP model its inputs must come from.
    """

    def __init__(
        self,
        dim: int = 512,
        base_model: str | None = None,
        base_model_revision: str | None = None,
        prompt: str | None = None,
        recipe: str = "balanced",
        negative_prompt: str | None = None,
        prior_strength: float | None = 10.0,
        threshold: float = 0.5,
    ) -> None:
        super().__init__()
        # Every argument is checked before the layer is allocated: these values may come from a stranger's config.
        if not isinstance(recipe, str) or recipe not in RECIPES:
            raise ValueError(f"unknown recipe {checks.shown(recipe)}; choose one of {', '.join(RECIPES)}")
        self.dim = checks.integer(dim, "dim", low=1, high=MAX_DIM)
        self.base_model = _optional_name(base_model, "base_model")
        self.base_model_revision = _optional_name(base_model_revision, "base_model_revision")
        self.prompt = None if prompt is None else checks.prompt_text(prompt, "prompt", allow_empty=True) or None
        # What the prior was pushed away from, if anything.
        self.negative_prompt = (
            None
            if negative_prompt is None
            else checks.prompt_text(negative_prompt, "negative_prompt", allow_empty=True) or None
        )
        self.recipe = recipe
        self.prior_strength = check_prior_strength(prior_strength)
        # The strength the last fit used: ``prior_strength``, or the one the labels chose when that is None.
        self.last_strength = self.prior_strength or map_fit.candidate_strengths(1)[0]
        self._gram_cache = map_fit.GramCache()  # the labels' Gram matrix, kept between fits (not saved)
        self._last_fit: map_fit.MapFit | None = None  # the last label-space fit, its optimum for leave-one-out
        # What the last label-space fit was made of, (x, t, c, w0, b0) in float64: leave-one-out logits of exactly
        # these are the ones the fit computed (``map_fit.leave_one_out_logits``'s ``same_rows``).
        self._fitted_on: tuple[np.ndarray, ...] = ()
        # The collection's leading axes, along which an automatic fit may let the labels move the weights more freely
        # (trainer/prior_axes.py): set by the session that knows the collection, not saved. ``_last_stretch``: the
        # stretch the last fit was made under (its optimum is in that stretch's variables), if any.
        self.stretch: prior_axes.Stretch | None = None
        self._last_stretch: prior_axes.Stretch | None = None
        self.threshold = checks.number(threshold, "threshold", low=0, high=1)
        self.linear = nn.Linear(self.dim, 1)
        # The prompt's prior travels with the weights, so a pulled classifier can keep training toward it.
        self.register_buffer("prior_weight", torch.zeros(self.dim))  # (D,)
        self.register_buffer("prior_bias", torch.zeros(()))

    @classmethod
    def from_pretrained(  # type: ignore[override]
        cls,
        pretrained_model_name_or_path: str | os.PathLike[str],
        *,
        force_download: bool = False,
        token: str | bool | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        local_files_only: bool = False,
        revision: str | None = None,
    ) -> LinearProbe:
        """Load a probe that ``save_pretrained`` wrote, from a folder or a Hub repo id, strictly.

        The mixin's own loader builds a layer of whatever size config.json asks for and takes NaN weights and
        missing or extra tensors in silence; this one checks everything before allocating (see
        ``trainer/probe_files.py``, the same code ``trainer.hub.load_classifier`` uses) and raises
        ``InvalidClassifier``, a ValueError naming the file and what is wrong. From the Hub, config.json is
        downloaded and checked before the weights are.
        """
        from . import probe_files  # it imports this module

        source = str(pretrained_model_name_or_path)
        folder = Path(source).expanduser()
        if folder.is_dir():
            missing = [n for n in (probe_files.CONFIG_NAME, probe_files.WEIGHTS_NAME) if not (folder / n).is_file()]
            if missing:
                raise probe_files.InvalidClassifier(f"{source} is not a classifier: {' and '.join(missing)} missing")
            return probe_files.load_files(folder / probe_files.CONFIG_NAME, folder / probe_files.WEIGHTS_NAME, source)
        from huggingface_hub import hf_hub_download

        def download(name: str) -> str:
            options = dict(revision=revision, cache_dir=cache_dir, force_download=force_download, token=token)
            return hf_hub_download(source, name, local_files_only=local_files_only, **options)

        config = probe_files.read_config(download(probe_files.CONFIG_NAME), source)
        probe = probe_files.probe_from_config(config, source)
        probe_files.load_weights(probe, download(probe_files.WEIGHTS_NAME), source)
        return probe

    @classmethod
    def from_prompt(cls, prompt_vector: np.ndarray, *, scale: float, bias: float, **config: object) -> LinearProbe:
        """A classifier whose ranking is exactly the prompt's: ``w = scale * p``, ``b = bias``."""
        vector = np.asarray(prompt_vector, dtype=np.float32).reshape(-1)
        if not np.isfinite(vector).all() or not np.isfinite([scale, bias]).all():
            raise ValueError("prompt vector, scale and bias must be finite")
        probe = cls(dim=vector.shape[0], **config)  # type: ignore[arg-type]
        with torch.no_grad():
            probe.prior_weight.copy_(torch.tensor(vector) * scale)
            probe.prior_bias.fill_(bias)
            probe.reset_to_prior()
        return probe

    def reset_to_prior(self) -> None:
        with torch.no_grad():
            self.linear.weight.copy_(self.prior_weight[None, :])
            self.linear.bias.fill_(float(self.prior_bias))

    # ------------------------------------------------------------------------------------------------- inference
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).squeeze(-1)  # (B, D) -> (B,)

    @property
    def weight(self) -> np.ndarray:
        """The weight vector (D,): the query vector for dot-product search (the bias does not change a ranking)."""
        return self.linear.weight.detach()[0].numpy().copy()

    @property
    def bias(self) -> float:
        return float(self.linear.bias.detach()[0])

    def logits(self, vectors: np.ndarray) -> np.ndarray:
        vectors = self._check_vectors(vectors)
        return (vectors @ self.weight + self.bias).astype(np.float32)

    def predict_proba(self, vectors: np.ndarray) -> np.ndarray:
        """P(concept) for each row of ``vectors`` (n, D), as float32 (n,)."""
        return sigmoid(self.logits(vectors))  # float32 in, float32 out

    def _check_vectors(self, vectors: np.ndarray) -> np.ndarray:
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise ValueError(
                f"this classifier takes ({self.dim},)-dimensional embeddings of {self.base_model or 'its CLIP model'}"
                f"; got shape {vectors.shape}"
            )
        # NaN in would be NaN scores out, and one NaN row in ``fit`` would turn every weight into NaN.
        bad = ~np.isfinite(vectors).all(axis=1)
        if bad.any():
            raise ValueError(f"{int(bad.sum())} embedding(s) contain NaN or inf (first at row {int(np.argmax(bad))})")
        return vectors

    # ------------------------------------------------------------------------------------------------- training
    def fit(self, vectors: np.ndarray, labels: np.ndarray, *, max_iter: int = 50) -> FitReport:
        """Train on ``vectors`` (n, D) with scores ``labels`` (n,) in [-1, 1], using this probe's recipe.

        ``"balanced"`` starts from the prior every time, so the result depends only on the labels given, never on
        how many rounds they came in. ``"original"`` continues from the current weights, as the article did.
        """
        vectors = self._check_vectors(vectors)
        if len(vectors) != len(labels):
            raise ValueError(f"got {len(vectors)} vectors for {len(labels)} labels")
        if self.recipe == "original":
            return self._fit_original(vectors, np.asarray(labels, dtype=np.float32))
        targets, weights = label_targets(labels)
        used = weights > 0
        report = dict(labels_used=int(used.sum()), positives=int((used & (targets == 1)).sum()))
        report["negatives"] = report["labels_used"] - report["positives"]
        self.reset_to_prior()
        self._last_fit, self._fitted_on = None, ()
        if not used.any():
            return FitReport(loss=0.0, **report)
        c = _balanced_weights(targets[used], weights[used])
        # The pull is measured relative to the prior's own size, so ``prior_strength`` means the same whatever
        # scale the calibration chose: roughly, how many labels it takes to turn the prior by a radian.
        # The bias gets a much weaker pull: it must be free to move when every label so far is of one class.
        if used.sum() <= KERNEL_MAX_LABELS:
            # In numpy, not torch: torch's conversions wake its thread pool, which stalls for milliseconds on a
            # busy machine (measured 4 ms per .double() of a 200 x 512 tensor at load 11).
            problem = (
                vectors[used].astype(np.float64),
                targets[used].astype(np.float64),
                c.astype(np.float64),
                self.prior_weight.numpy().astype(np.float64),
                float(self.prior_bias),
            )
            fitted, stretch = self._fit_map(*problem, self._gram_cache, max_iter=max_iter)
            self.last_strength, self._last_fit, self._last_stretch = fitted.strength, fitted, stretch
            self._fitted_on = (*problem[:4], np.float64(problem[4]))
            with blas.one_blas_thread():  # a small product: BLAS threads would only wait on each other
                weight = fitted.weight if stretch is None else stretch.weights(fitted.weight)
            with torch.no_grad():
                self.linear.weight.copy_(torch.from_numpy(weight)[None, :])
                self.linear.bias.fill_(fitted.bias)
            return FitReport(loss=fitted.loss, **report)
        # Beyond the label-space limit: L-BFGS in weight space, at the given strength or, when it is automatic, at
        # the one chosen last (a session reaches this many labels one round at a time, through label space).
        self.last_strength = self.prior_strength or self.last_strength
        x, t, c = torch.from_numpy(vectors[used]), torch.from_numpy(targets[used]), torch.from_numpy(c)
        norm2 = float(self.prior_weight.square().sum()) or 1.0
        pull_w, pull_b = self.last_strength / norm2, self.last_strength * 0.01 / norm2
        weight, bias = self.linear.weight, self.linear.bias  # (1, D), (1,)
        prior_w, prior_b = self.prior_weight, self.prior_bias  # (D,), ()
        optimizer = torch.optim.LBFGS([weight, bias], lr=1, max_iter=max_iter, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            # Loss and gradient written out by hand: for d + 1 parameters autograd's bookkeeping costs more than
            # the arithmetic, and its backward pass stalls for milliseconds on thread hand-offs when the cores are
            # busy. softplus(z) - t * z is binary_cross_entropy_with_logits(z, t); its derivative is sigmoid(z) - t.
            with torch.no_grad():
                z = torch.addmv(bias, x, weight[0])  # (n,)
                data = (c * (nn.functional.softplus(z) - t * z)).sum()
                dw, db = weight[0] - prior_w, bias[0] - prior_b
                loss = data + pull_w * dw.square().sum() + pull_b * db.square()
                residual = c * (torch.sigmoid(z) - t)  # d data / dz, (n,)
                weight.grad = (residual @ x + 2 * pull_w * dw)[None, :]
                bias.grad = (residual.sum() + 2 * pull_b * db).reshape(1)
            return loss

        self.train()
        optimizer.step(closure)
        self.eval()
        return FitReport(loss=float(closure()), **report)  # step() returns the loss it started from, not the fit's

    def leave_one_out_logits(self, vectors: np.ndarray, labels: np.ndarray) -> np.ndarray | None:
        """Each label's logit under this classifier fitted without it, (n,) float64: in closed form from the last
        fit's optimum (``trainer/map_fit.py``), held within the trust region as this classifier's weights are. No fit
        when this probe was last fitted on exactly these labels; one fit on the side (the probe unchanged) otherwise.
        Labels of 0 are not allowed (they have no class). None where there is no closed form: the ``"original"``
        recipe, or more labels than the label-space fit takes (``KERNEL_MAX_LABELS``)."""
        vectors = self._check_vectors(vectors)
        if len(vectors) != len(labels):
            raise ValueError(f"got {len(vectors)} vectors for {len(labels)} labels")
        targets, weights = label_targets(labels)
        if (weights == 0).any():
            raise ValueError("a label of 0 has no class: leave it out before asking for held-out logits")
        if self.recipe == "original" or len(labels) > KERNEL_MAX_LABELS:
            return None
        if not len(labels):
            return np.empty(0)
        x, t = vectors.astype(np.float64), targets.astype(np.float64)
        c = _balanced_weights(targets, weights).astype(np.float64)
        prior = (self.prior_weight.numpy().astype(np.float64), float(self.prior_bias))
        if self._last_fit is not None:
            given = (x, t, c, prior[0], np.float64(prior[1]))
            same = len(given) == len(self._fitted_on) and all(map(np.array_equal, given, self._fitted_on))
            held_out = _held_out(x, t, c, self._last_fit, self._last_stretch, prior, self._gram_cache, same)
            if held_out is not None:
                return held_out
        # Fitted on other labels (some given since, or an undo back to earlier weights): the fit on these, on the
        # side, its Gram matrix starting from a copy of this probe's.
        side = copy.copy(self._gram_cache)
        fit, stretch = self._fit_map(x, t, c, *prior, side)
        return _held_out(x, t, c, fit, stretch, prior, side, same_rows=True)

    def _fit_map(
        self,
        x: np.ndarray,
        t: np.ndarray,
        c: np.ndarray,
        w0: np.ndarray,
        b0: float,
        cache: map_fit.GramCache,
        *,
        max_iter: int = 50,
    ) -> tuple[map_fit.MapFit, prior_axes.Stretch | None]:
        """The label-space fit at this probe's strength; an automatic one may take the stretched prior of
        ``self.stretch`` (trainer/prior_axes.py), and says so: (fit, the stretch it was made under or None).
        ``cache``: the labels' Gram matrix."""
        if self.prior_strength is not None or self.stretch is None:
            return map_fit.fit_map(x, t, c, w0, b0, self.prior_strength, cache=cache, max_iter=max_iter), None
        return prior_axes.fit(x, t, c, w0, b0, self.stretch, cache=cache, max_iter=max_iter)

    def _fit_original(self, vectors: np.ndarray, labels: np.ndarray) -> FitReport:
        """The article's update: 5 SGD steps at lr 0.2 on the newest batch, targets (y + 1) / 2."""
        label_targets(labels)  # same range checks as ours
        if not len(labels):  # nothing to step on: the mean loss of no labels is NaN
            return FitReport(0, 0, 0, 0.0)
        targets = torch.from_numpy((labels + 1) / 2)
        x = torch.from_numpy(vectors)
        optimizer = torch.optim.SGD(self.parameters(), lr=0.2)
        loss = torch.zeros(())
        self.train()
        for _ in range(5):
            optimizer.zero_grad()
            loss = nn.functional.binary_cross_entropy_with_logits(self(x), targets)
            loss.backward()
            optimizer.step()
        self.eval()
        positives = int((labels > 0).sum())
        return FitReport(len(labels), positives, int((labels < 0).sum()), float(loss.detach()))


def _held_out(
    x: np.ndarray,
    t: np.ndarray,
    c: np.ndarray,
    fit: map_fit.MapFit,
    stretch: prior_axes.Stretch | None,
    prior: tuple[np.ndarray, float],
    cache: map_fit.GramCache,
    same_rows: bool = False,
) -> np.ndarray | None:
    """``map_fit.leave_one_out_logits`` of ``fit``, in the stretch's variables where it was made under one (the
    held-out logits are the same numbers: ``x S . v = x . S v``); ``cache``: the labels' Gram matrix (the stretched
    rows' is computed where it is needed: a fit under the stretch keeps its held-out logits, so only a probe asked
    about labels it was not fitted on but whose fit it still is needs it); ``same_rows``: ``fit`` was made of exactly
    ``x``, ``t``, ``c`` and ``prior`` (its own held-out logits serve)."""
    if stretch is None:
        return map_fit.leave_one_out_logits(x, t, c, fit, *prior, cache=cache, same_rows=same_rows)
    with blas.one_blas_thread():
        rows, w0 = stretch.rows(x), stretch.prior(prior[0])
    return map_fit.leave_one_out_logits(rows, t, c, fit, w0, prior[1], same_rows=same_rows)


def _optional_name(value: object, name: str) -> str | None:
    return None if value is None else checks.text(value, name, max_chars=MAX_NAME_CHARS) or None


def _balanced_weights(targets: np.ndarray, confidence: np.ndarray) -> np.ndarray:
    """Per-label weights: confidence, rescaled so each present class carries half of the total weight.

    The total stays equal to the confidence sum, so the data term still grows with the number of labels.
    """
    weights = confidence.astype(np.float32).copy()
    total = weights.sum()
    classes = [targets == 1, targets == 0]
    present = [m for m in classes if weights[m].sum() > 0]
    for mask in present:
        weights[mask] *= total / (len(present) * weights[mask].sum())
    return weights
