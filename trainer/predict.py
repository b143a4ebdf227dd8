"""Score a folder of images with a shared classifier: the engine of ``python -m trainer predict``.

The classifier (an export folder or a Hub repo) is loaded with ``trainer.hub``'s strict checks, its own base CLIP
model embeds the images, and one CSV row per image says its probability and whether it clears the classifier's
threshold. An image that cannot be decoded is reported by name and skipped; it never stops the run.
"""

from __future__ import annotations

import csv
import logging
import os
import struct
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image

from .classifier import LinearProbe
from .hub import HubError, check_compatible, load_classifier

__all__ = ["CSV_COLUMNS", "Embedder", "PredictReport", "list_images", "predict_folder"]

log = logging.getLogger(__name__)

CSV_COLUMNS = ("path", "probability", "above_threshold")
# What a broken or hostile file can raise while Pillow opens and decodes it.
_DECODE_ERRORS = (OSError, ValueError, EOFError, SyntaxError, struct.error, Image.DecompressionBombError)


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


def list_images(folder: str | os.PathLike[str]) -> list[Path]:
    """Every non-hidden file under ``folder`` whose extension Pillow can open, in a stable (sorted) order."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"no image folder at {root}")
    extensions = {ext.lower() for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}
    found: list[Path] = []
    for here, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))  # in place: prunes the walk and fixes its order
        found.extend(
            Path(here) / n for n in sorted(names) if not n.startswith(".") and Path(n).suffix.lower() in extensions
        )
    return found


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
    root = Path(images)
    files = list_images(root)
    if not files:
        raise FileNotFoundError(f"no image files under {root}")
    if embedder is None:
        embedder = _load_embedder(probe, model)
    if model is not None and model != probe.base_model:
        log.warning("The classifier was trained on %s; scoring with %s as asked", probe.base_model, model)
        check_compatible(probe, dim=embedder.dim)
    else:
        check_compatible(probe, base_model=embedder.model_id, dim=embedder.dim)

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial-{uuid.uuid4().hex[:8]}")
    unreadable: list[tuple[str, str]] = []
    scored = above = 0
    try:
        with partial.open("w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(CSV_COLUMNS)
            for names, batch in _decoded_batches(root, files, batch_size, unreadable):
                proba = probe.predict_proba(embedder.embed_images(batch))  # (B,)
                for name, p in zip(names, proba, strict=True):
                    writer.writerow((name, f"{p:.6f}", "true" if p >= probe.threshold else "false"))
                scored += len(names)
                above += int((proba >= probe.threshold).sum())
        partial.replace(out)
    finally:
        partial.unlink(missing_ok=True)
    for name, why in unreadable:
        log.warning("Skipped %s: %s", name, why)
    log.info("Scored %d images (%d above %g) into %s", scored, above, probe.threshold, out)
    return PredictReport(out, scored, above, unreadable)


def _load_embedder(probe: LinearProbe, model: str | None) -> Embedder:
    if model is None and not probe.base_model:
        raise HubError("The classifier does not record its base CLIP model; pass the model to embed with.")
    from . import embed  # imported here: loading transformers is only worth it once there is work to do

    if model is not None:
        return embed.load(model)
    return embed.load(probe.base_model, revision=probe.base_model_revision)


def _decoded_batches(
    root: Path, files: list[Path], batch_size: int, unreadable: list[tuple[str, str]]
) -> Iterator[tuple[list[str], list[Image.Image]]]:
    """Decode ``files`` a batch at a time; a file that fails goes to ``unreadable`` with the reason."""
    names: list[str] = []
    batch: list[Image.Image] = []
    for path in files:
        name = path.relative_to(root).as_posix()
        try:
            with Image.open(path) as image:
                image.load()  # decode now: a truncated file fails here, not inside the model call
                batch.append(image.copy())
        except _DECODE_ERRORS as err:
            unreadable.append((name, f"{type(err).__name__}: {err}"))
            continue
        names.append(name)
        if len(batch) == batch_size:
            yield names, batch
            names, batch = [], []
    if batch:
        yield names, batch
