"""Score a folder of images with a shared classifier: the engine of ``python -m trainer predict``.

The classifier (an export folder or a Hub repo) is loaded with ``trainer.hub``'s strict checks, its own base CLIP
model embeds the images, and one CSV row per image says its probability and whether it clears the classifier's
threshold. The folder is read as an image collection by ``trainer.data``, so images are listed and decoded exactly
as indexing does (same ids, same EXIF handling); one that cannot be decoded is reported by name and skipped.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image

from .classifier import LinearProbe
from .data import Collection
from .files import atomic_file
from .hub import ClassifierMismatch, check_compatible, load_classifier
from .hub_calls import HubError
from .spreadsheet import safe_cell

__all__ = ["CSV_COLUMNS", "Embedder", "PredictReport", "load_embedder", "predict_folder"]

log = logging.getLogger(__name__)

CSV_COLUMNS = ("path", "probability", "above_threshold")


class Embedder(Protocol):
    """The part of ``trainer.embed.Embedder`` this module uses (tests pass a fake)."""

    model_id: str
    dim: int

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray: ...


@dataclass(frozen=True)
class PredictReport:
    out: Path  # the CSV written
    scored: int
    above_threshold: int
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (path relative to the folder, why)


def predict_folder(
    classifier: str | os.PathLike[str] | LinearProbe,
    images: str | os.PathLike[str],
    out: str | os.PathLike[str] = "scores.csv",
    *,
    embedder: Embedder | None = None,
    model: str | None = None,
    batch_size: int = 32,
    token: str | bool | None = None,
) -> PredictReport:
    """Score every image under ``images`` and write ``out`` (CSV: path, probability, above_threshold).

    The images are embedded with the classifier's own base model (at its recorded revision), or with ``model`` if
    given, or with ``embedder`` if one is passed; a classifier for another embedding size is refused with
    ``ClassifierMismatch``. The CSV is written whole or not at all.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer; got {batch_size}")
    probe = classifier if isinstance(classifier, LinearProbe) else load_classifier(classifier, token=token)
    if not Path(images).is_dir():
        raise FileNotFoundError(f"no image folder at {images}")
    collection = Collection.open(str(images), split=None)  # ids: paths relative to the folder
    if embedder is None:
        embedder = load_embedder(probe, model)
    try:
        check_compatible(probe, base_model=embedder.model_id, dim=embedder.dim)
    except ClassifierMismatch:
        if model is None:
            raise
        log.warning("The classifier was trained on %s; scoring with %s as asked", probe.base_model, model)
        check_compatible(probe, dim=embedder.dim)

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    scored = above = 0
    with atomic_file(out, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_COLUMNS)
        for names, batch in collection.batches(batch_size):
            proba = probe.predict_proba(embedder.embed_images(batch))  # (B,)
            for name, p in zip(names, proba, strict=True):
                writer.writerow((safe_cell(name), f"{p:.6f}", "true" if p >= probe.threshold else "false"))
            scored += len(names)
            above += int((proba >= probe.threshold).sum())
    unreadable = list(collection.skipped)  # filled as the batches were decoded
    for name, why in unreadable:
        log.warning("Skipped %s: %s", name, why)
    log.info("Scored %d images (%d above %g) into %s", scored, above, probe.threshold, out)
    return PredictReport(out, scored, above, unreadable)


def load_embedder(probe: LinearProbe, model: str | None) -> Embedder:
    """The CLIP model to score with: ``model`` if given, else the one the classifier records (HubError if none)."""
    if model is None and not probe.base_model:
        raise HubError("The classifier does not record its base CLIP model; pass the model to embed with.")
    from . import embed  # imported here: loading transformers is only worth it once there is work to do

    if model is not None:
        return embed.load(model)
    if embed.is_local_identity(probe.base_model):
        raise HubError(
            f"The classifier was made with a local CLIP model folder, {probe.base_model}: pass that folder as the "
            "model to embed with (--model <folder>)."
        )
    return embed.load(probe.base_model, revision=probe.base_model_revision)
