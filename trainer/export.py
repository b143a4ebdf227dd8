"""Export a classifier: everything another person needs, written into one folder, and that folder zipped.

The folder is the unit of sharing. ``export_classifier`` writes

    model.safetensors   the head: ``linear.weight`` (1, D), ``linear.bias`` (1,) and the prompt prior buffers
    config.json         LinearProbe's constructor arguments: base CLIP model id and revision, dim, prompt, recipe, ...
    README.md           a model card (YAML metadata + how it was trained, how good it is, how to use it, limitations)
    labels.jsonl/.csv   every label (collection id, score in [-1, 1], round) so anyone can retrain or continue

The app's "Export" zips that folder (``zip_export``); a push (``trainer.hub.push_classifier``) uploads it.
Nothing local is deleted on failure: an earlier export stays where it was.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from .card import REPO_PLACEHOLDER, CardFacts, model_card
from .classifier import LinearProbe
from .files import atomic_file, atomic_folder
from .hub_calls import HubError, validate_repo_id
from .probe_files import CONFIG_KEYS, CONFIG_NAME, WEIGHTS_NAME
from .quality import Quality
from .record import RoundStats, SessionRecord, Shareable
from .spreadsheet import read_cell, safe_cell

__all__ = [
    "CARD_NAME",
    "DEFAULT_LICENSE",
    "EXPORT_FILES",
    "LABELS_CSV",
    "LABELS_JSONL",
    "LabelRecord",
    "export_classifier",
    "export_facts",
    "read_labels",
    "require_export",
    "write_export",
    "write_scores",
    "zip_export",
]

log = logging.getLogger(__name__)

CARD_NAME = "README.md"
LABELS_JSONL = "labels.jsonl"
LABELS_CSV = "labels.csv"
EXPORT_FILES = (WEIGHTS_NAME, CONFIG_NAME, CARD_NAME, LABELS_JSONL, LABELS_CSV)
DEFAULT_LICENSE = "apache-2.0"


class LabelRecord(NamedTuple):
    id: str  # the item's id in its image collection
    score: float  # in [-1, 1]: sign = class, magnitude = confidence, 0 = seen, no opinion
    round: int | None  # the labelling round it was given in, when known
    audit: bool = False  # an audit label: held out to measure quality, never to be trained on


def export_classifier(
    source: Shareable | SessionRecord | LinearProbe, folder: str | os.PathLike[str], **options: Any
) -> Path:
    """Write weights, config, model card and labels into ``folder`` and return its path.

    ``source`` and ``options`` are ``export_facts``'s: a Session, its record or a bare LinearProbe, and what the
    card should say besides. The folder is built beside the target and moved into place, so it is never left
    half-written. An existing earlier export there is replaced; any other non-empty folder is refused.
    """
    return write_export(export_facts(source, **options), folder)


def export_facts(
    source: Shareable | SessionRecord | LinearProbe,
    *,
    labels: Mapping[str, float] | None = None,
    label_rounds: Mapping[str, int] | None = None,
    history: Sequence[RoundStats] | None = None,
    strategy: str | None = None,
    held_out_ap: float | None = None,
    held_out_note: str | None = None,
    collection: str | None = None,
    quality: Quality | None = None,
    repo_id: str | None = None,
    license: str = DEFAULT_LICENSE,  # the model card's own field name, shadowing the builtin on purpose
    tags: Sequence[str] = (),
) -> CardFacts:
    """What an export of ``source`` says, every value checked; nothing is written (``write_export`` does that).

    ``source`` is a Session or its ``record()`` (its classifier, labels, label rounds, history, strategy, audit
    labels and quality estimate are used; passing any of those too is an error) or a bare LinearProbe (pass what you
    have; what is missing is reported as unknown).
    ``held_out_ap`` is the average precision measured on images never labelled, if the caller has one; the card
    says plainly when none was measured. ``collection`` names the image collection the label ids refer to.
    ``repo_id`` fills the card's code snippets; without it they show a placeholder that a push replaces.
    """
    from_session = dict(labels=labels, label_rounds=label_rounds, history=history, strategy=strategy, quality=quality)
    if isinstance(source, Shareable | SessionRecord):
        doubled = [name for name, value in from_session.items() if value is not None]
        if doubled:
            raise TypeError(f"{', '.join(doubled)} come from the Session; pass them only with a bare LinearProbe")
        record = source.record() if isinstance(source, Shareable) else source
    elif isinstance(source, LinearProbe):
        record = SessionRecord.of_probe(source, **from_session)
    else:
        raise TypeError(f"export a Session, its record or a LinearProbe; got {type(source).__name__}")
    probe = record.classifier
    if not probe.base_model:
        raise ValueError(
            "this classifier does not record its base CLIP model (base_model is None), so nobody could use it: "
            "create the Session or LinearProbe with base_model=<the CLIP model id>"
        )
    clean_labels = {str(k): float(v) for k, v in record.labels.items()}
    bad = {k: v for k, v in clean_labels.items() if not (math.isfinite(v) and -1 <= v <= 1)}
    if bad:
        raise ValueError(f"label scores must be finite and within [-1, 1]; got {dict(list(bad.items())[:5])}")
    if held_out_ap is not None and not (math.isfinite(held_out_ap) and 0 <= held_out_ap <= 1):
        raise ValueError(f"held_out_ap must be an average precision in [0, 1]; got {held_out_ap!r}")
    return CardFacts(
        probe=probe,
        labels=clean_labels,
        label_rounds={str(k): int(v) for k, v in record.label_rounds.items()},
        history=list(record.history),
        trained_rounds=record.trained_rounds,
        strategy=record.strategy,
        held_out_ap=held_out_ap,
        held_out_note=held_out_note,
        collection=collection,
        quality=record.quality,
        audit_labels=dict(record.audit_labels),
        repo_id=validate_repo_id(repo_id) if repo_id else REPO_PLACEHOLDER,
        license=license or DEFAULT_LICENSE,
        tags=tuple(tags),
    )


def write_export(facts: CardFacts, folder: str | os.PathLike[str]) -> Path:
    """Write ``facts`` (from ``export_facts``) as an export folder; see ``export_classifier``."""
    folder = Path(folder)
    _check_replaceable(folder)
    with atomic_folder(folder) as staging:
        _write_export(facts, staging)
    log.info("Exported the classifier for %r to %s", facts.probe.prompt, folder)
    return folder


def _check_replaceable(folder: Path) -> None:
    if not folder.exists():
        return
    if not folder.is_dir():
        raise FileExistsError(f"{folder} exists and is not a folder; choose another export folder")
    names = {p.name for p in folder.iterdir()}
    if names and not (names <= set(EXPORT_FILES) and CONFIG_NAME in names):
        raise FileExistsError(
            f"{folder} is not empty and is not an earlier export ({sorted(names - set(EXPORT_FILES))[:5]}); "
            "choose an empty or new folder"
        )


def _write_export(facts: CardFacts, folder: Path) -> None:
    # The card first: save_pretrained writes the mixin's generic card only where no README.md exists yet.
    files = dict(weights=WEIGHTS_NAME, config=CONFIG_NAME, jsonl=LABELS_JSONL, csv=LABELS_CSV)
    model_card(facts, files=files).save(folder / CARD_NAME)
    facts.probe.save_pretrained(folder, config=_probe_config(facts.probe))
    records = [LabelRecord(i, s, facts.label_rounds.get(i)) for i, s in facts.labels.items()]
    records += [LabelRecord(i, s, None, audit=True) for i, s in facts.audit_labels.items()]
    with (folder / LABELS_JSONL).open("w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r._asdict(), ensure_ascii=False) + "\n")
    with (folder / LABELS_CSV).open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(LabelRecord._fields)
        writer.writerows((safe_cell(r.id), r.score, "" if r.round is None else r.round, int(r.audit)) for r in records)


def _probe_config(probe: LinearProbe) -> dict[str, Any]:
    """LinearProbe's constructor arguments, read from the probe now (the threshold may have moved since init)."""
    return {name: getattr(probe, name) for name in CONFIG_KEYS}


def read_labels(path: str | os.PathLike[str]) -> list[LabelRecord]:
    """The labels of an export: ``path`` is its folder, its labels.jsonl or its labels.csv."""
    path = Path(path)
    if path.is_dir():
        path = path / LABELS_JSONL
    if not path.is_file():
        raise FileNotFoundError(f"no labels file at {path}")
    if path.suffix == ".csv":
        with path.open(encoding="utf-8", newline="") as f:
            rows: list[dict[str, Any]] = list(csv.DictReader(f))
        cell = read_cell  # ids written by safe_cell
    else:
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        cell = str
    try:
        return [
            LabelRecord(
                cell(str(r["id"])),
                float(r["score"]),
                None if r.get("round") in (None, "") else int(r["round"]),
                str(r.get("audit", "")).lower() in ("1", "true"),
            )
            for r in rows
        ]
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{path} is not a labels file (columns id, score, round): {err}") from None


def zip_export(folder: str | os.PathLike[str], zip_path: str | os.PathLike[str] | None = None) -> Path:
    """Zip an export folder for download (default: ``<folder>.zip`` beside it); it unzips to a folder of that name."""
    folder = Path(folder)
    require_export(folder)
    target = Path(zip_path) if zip_path is not None else folder.with_name(folder.name + ".zip")
    with atomic_file(target) as f, zipfile.ZipFile(f, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in EXPORT_FILES:
            if (folder / name).is_file():
                archive.write(folder / name, f"{folder.name}/{name}")
    return target


def write_scores(ids: Sequence[str], scores: np.ndarray, path: str | os.PathLike[str]) -> Path:
    """Every item's id and score (a classifier's P(concept)), best first, as a CSV file ``id,score`` at ``path``."""
    if len(ids) != len(scores):
        raise ValueError(f"{len(ids)} ids but {len(scores)} scores")
    order = np.argsort(-np.asarray(scores), kind="stable")
    with atomic_file(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "score"])
        writer.writerows((safe_cell(ids[i]), f"{scores[i]:.6f}") for i in order)
    return Path(path)


def require_export(folder: Path) -> None:
    if not folder.is_dir():
        raise HubError(f"No classifier folder at {folder}: export one first.")
    missing = [n for n in (WEIGHTS_NAME, CONFIG_NAME, CARD_NAME) if not (folder / n).is_file()]
    if missing:
        raise HubError(f"{folder} is not a classifier export: {', '.join(missing)} missing. Export it again.")
