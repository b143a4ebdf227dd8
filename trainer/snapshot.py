"""Embedding snapshots: an index's vectors published as a Hub dataset repo, so that a restarted Space is ready in
seconds instead of re-embedding its collection (minutes for imagenette on a free CPU Space).

A snapshot is a folder (and, once pushed, a Hub *dataset* repository) holding

    data/<split>.parquet   one row per embedded image: ``id`` (string, the image's id in its collection, which is all
                           the app needs to find and show the image) and ``vector`` (list<float32>, L2-normalised)
    README.md              a dataset card: YAML metadata (under ``concept_trainer``: model id, revision and commit,
                           dimension, normalisation, dtype, collection, config, revision, per-split counts, how it was
                           made) that the loader checks, and the same facts in words

This module says what a snapshot is and reads one: ``trainer.snapshot_publish`` writes and pushes them. At start-up
``trainer.workspace.seed_cache`` fetches the configured snapshot (``Settings.snapshot``: a repo id or a local
folder), checks it strictly and writes each matching split into the local embeddings cache with
``trainer.embedding_cache.save_embeddings``. The workspace then builds as usual and finds a plain cache hit, so the
rest of start-up (local or Pinecone index, 2-D map) has one code path whatever the vectors' origin, and a second
start on the same disk does not even download. Why the cache rather than loading the parquet directly: the cache
entry is memory-mapped, already validated, and keyed by the exact model weights and collection content, which a
snapshot's name alone cannot promise.

Refusals. A snapshot is used only if it matches the loaded model (id, commit when both are known, dimension) and
collection (dataset, config, split, revision), if its data are sound (a readable parquet file, one vector of the
model's size per row, all finite and unit length, ids unique and all in the collection, counts equal to the card's),
and if re-embedding two of its images with the loaded model gives the same vectors (which catches weights that
differ under the same name). Anything else raises ``SnapshotError`` naming what was expected and what was found;
``seed_cache`` logs it, returns it as a note for the app's header, and the workspace indexes locally instead.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml
from huggingface_hub import metadata_load, snapshot_download

from .data import Collection, UndecodableImage
from .embed import Embedder
from .embedding_cache import Embeddings, save_embeddings
from .files import is_local_path, shown_name
from .hub_calls import (
    LIBRARY_NAME,
    HubRetry,
    call_hub,
    validate_repo_id,
)

__all__ = [
    "CARD_KEY",
    "SNAPSHOT_FORMAT",
    "Snapshot",
    "SnapshotError",
    "SnapshotMismatch",
    "collection_facts",
    "fetch_snapshot",
    "install_snapshot",
    "model_facts",
    "read_snapshot",
    "read_split",
    "split_file",
    "split_name",
]

log = logging.getLogger(__name__)

SNAPSHOT_FORMAT = 1  # bump when the files or their meaning change; a loader refuses formats it does not know
CARD_KEY = "concept_trainer"  # the card metadata block a snapshot is recognised by
CARD_NAME = "README.md"
DATA_DIR = "data"
NORM_TOLERANCE = 1e-3  # float32 rows normalised in float32 are within ~1e-6 of unit length; 1e-3 means "not L2"
# Re-embedding a few snapshot images must reproduce their vectors: same weights give cosine ~1 (up to float noise
# across CPUs and GPUs, ~1e-4); other weights of the same size give far less.
SPOT_CHECK_ROWS = 2
SPOT_CHECK_MIN_COSINE = 0.99
_HEX40 = re.compile(r"[0-9a-f]{40}")


class SnapshotError(ValueError):
    """A snapshot cannot be used: unreadable, inconsistent, or made for something else. The message says which."""


class SnapshotMismatch(SnapshotError):
    """A sound snapshot of another model or collection than the one loaded; the message names both."""


@dataclass(frozen=True)
class Snapshot:
    """A snapshot folder on disk and its card's metadata (checked for shape, not yet against a model)."""

    source: str  # what was asked for: a repo id or a folder, for messages
    folder: Path
    commit: str | None  # the Hub commit it was downloaded at, when known
    model: dict[str, Any]
    collection: dict[str, Any]
    splits: dict[str, dict[str, Any]]  # split -> {file, count, skipped}

    @property
    def dim(self) -> int:
        return int(self.model["dim"])

    def describe(self) -> str:
        config = f" ({self.collection['config']})" if self.collection.get("config") else ""
        return (
            f"{self.model['id']} ({self.dim}-d) on {self.collection['dataset']}{config}, split {'/'.join(self.splits)}"
        )


# ---------------------------------------------------------------------------------------------------- identity
def _same_name(recorded: str, current: str) -> bool:
    # A local path differs from machine to machine (the snapshot's maker vs the Space), so a folder is compared by
    # its name only (the spot check guards the weights themselves); Hub ids are case-insensitive.
    return shown_name(recorded).casefold() == shown_name(current).casefold()


def model_facts(embedder: Embedder) -> dict[str, Any]:
    local = is_local_path(embedder.model_id)
    return {
        "id": shown_name(embedder.model_id),
        "local": local,
        "revision": None if local else (embedder.revision or "main"),
        "commit": embedder.commit_hash,
        "dim": embedder.dim,
        "normalization": "l2",  # each vector on its own: a dot product is a cosine similarity
        "dtype": "float32",
    }


def collection_facts(collection: Collection) -> dict[str, Any]:
    return {
        "dataset": _dataset_name(collection),
        "local": is_local_path(collection.source),
        "config": collection.config,
        "revision": collection.revision,
        "image_column": collection.image_column,
    }


def _dataset_name(collection: Collection) -> str:
    """The dataset a split belongs to. A folder with split subfolders opens ``photos/train`` as the collection of
    split "train": the dataset is ``photos``, the same for all its splits."""
    path = Path(collection.source)
    if is_local_path(collection.source) and collection.split and path.name == collection.split:
        return path.parent.name
    return shown_name(collection.source)


def split_name(collection: Collection) -> str:
    return collection.split or "train"  # a plain image folder has no split: the whole folder is "train"


def split_file(split: str) -> str:
    return f"{DATA_DIR}/{re.sub(r'[^A-Za-z0-9_.-]+', '_', split)}.parquet"


# -------------------------------------------------------------------------------------------------------- read
def fetch_snapshot(source: str, *, revision: str | None = None, retry: HubRetry | None = None) -> Path:
    """A local snapshot folder as it is, or a Hub dataset repo downloaded (card and parquet files only).

    The download uses this machine's token if there is one (on a Space: the owner's HF_TOKEN secret, which is right
    here: the owner configured the snapshot, no visitor asked for it), so a private snapshot works too.
    """
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    if is_local_path(source):
        raise SnapshotError(f"no snapshot folder at {source!r}")
    repo_id = validate_repo_id(source)
    folder = call_hub(
        lambda: snapshot_download(
            repo_id,
            repo_type="dataset",
            revision=revision,
            allow_patterns=[CARD_NAME, f"{DATA_DIR}/*.parquet"],
            library_name=LIBRARY_NAME,
        ),
        what=f"downloading the embedding snapshot '{repo_id}'",
        repo_id=repo_id,
        token=None,
        retry=retry,
        repo_type="dataset",
    )
    return Path(folder)


def read_snapshot(folder: str | Path, *, source: str | None = None) -> Snapshot:
    """Read and check a snapshot folder's card (not its data: see ``install_snapshot``)."""
    folder = Path(folder)
    source = source or str(folder)
    try:
        metadata = metadata_load(folder / CARD_NAME) or {}
    except FileNotFoundError:
        raise SnapshotError(f"{source} is not an embedding snapshot: it has no {CARD_NAME}") from None
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as err:
        raise SnapshotError(f"the card ({CARD_NAME}) of snapshot {source} cannot be read: {err}") from None
    facts = metadata.get(CARD_KEY)
    if not isinstance(facts, dict):
        raise SnapshotError(f"{source} is not a Concept Trainer embedding snapshot: its card has no {CARD_KEY!r} block")
    if facts.get("format") != SNAPSHOT_FORMAT:
        raise SnapshotError(
            f"snapshot {source} has format {facts.get('format')!r}; this version reads format {SNAPSHOT_FORMAT}. "
            "Publish it again with this version of the app."
        )
    model, collection, splits = facts.get("model"), facts.get("collection"), facts.get("splits")
    problems = []
    if not isinstance(model, dict) or not isinstance(model.get("id"), str) or not _positive_int(model.get("dim")):
        problems.append("model (needs an id and a positive dim)")
    elif (model.get("normalization"), model.get("dtype")) != ("l2", "float32"):
        problems.append(f"vectors ({model.get('normalization')}, {model.get('dtype')}; expected l2, float32)")
    if not isinstance(collection, dict) or not isinstance(collection.get("dataset"), str):
        problems.append("collection (needs a dataset)")
    if not isinstance(splits, dict) or not splits:
        problems.append("splits (none listed)")
    else:
        for split, info in splits.items():
            if not (
                isinstance(info, dict)
                and isinstance(info.get("file"), str)
                and _positive_int(info.get("count"))
                and isinstance(info.get("skipped"), int)
            ):
                problems.append(f"split {split!r} (needs file, count and skipped)")
    if problems:
        raise SnapshotError(f"the card of snapshot {source} is incomplete: {'; '.join(problems)}")
    commit = folder.name if _HEX40.fullmatch(folder.name) else None  # huggingface_hub's snapshots/<commit> folders
    return Snapshot(source, folder, commit, model, collection, splits)  # type: ignore[arg-type]


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def read_split(snapshot: Snapshot, split: str) -> tuple[list[str], np.ndarray]:
    """The ids and (N, D) vectors of one split, after every check of the data against the card."""
    info = snapshot.splits[split]
    path = snapshot.folder / info["file"]
    where = f"{info['file']} of snapshot {snapshot.source}"
    try:
        table = pq.read_table(path)
    except FileNotFoundError:
        raise SnapshotError(f"{where} is missing (the card lists it)") from None
    except (pa.ArrowException, OSError) as err:
        raise SnapshotError(f"{where} is not a readable parquet file (truncated or corrupted?): {err}") from None
    missing = {"id", "vector"} - set(table.column_names)
    if missing:
        raise SnapshotError(f"{where} lacks the column(s) {sorted(missing)}; it has {table.column_names}")
    if table.num_rows != info["count"]:
        raise SnapshotError(f"{where} has {table.num_rows:,} rows but the card says {info['count']:,} (truncated?)")
    id_column, vector_column = table.column("id"), table.column("vector").combine_chunks()
    if not pa.types.is_string(id_column.type) or id_column.null_count:
        raise SnapshotError(
            f"{where}: 'id' must be non-null strings; got {id_column.type} ({id_column.null_count} null)"
        )
    ids = id_column.to_pylist()
    if len(set(ids)) != len(ids):
        repeated = sorted(i for i, n in Counter(ids).items() if n > 1)
        raise SnapshotError(f"{where} holds duplicate ids ({len(repeated):,} repeated, e.g. {repeated[:5]})")
    kind = vector_column.type
    if not (pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)):
        raise SnapshotError(f"{where}: 'vector' must be a list of float32; got {kind}")
    if not pa.types.is_float32(kind.value_type):
        raise SnapshotError(f"{where}: 'vector' must hold float32 values; got {kind.value_type}")
    if vector_column.null_count:
        raise SnapshotError(f"{where}: {vector_column.null_count} row(s) have no vector")
    lengths = pc.list_value_length(vector_column).to_numpy(zero_copy_only=False)
    wrong = np.flatnonzero(lengths != snapshot.dim)
    if len(wrong):
        first = int(wrong[0])
        raise SnapshotError(
            f"{where}: {len(wrong):,} vector(s) are not of size {snapshot.dim} (the card's), e.g. {ids[first]!r} has "
            f"{int(lengths[first])} values"
        )
    flat = pc.list_flatten(vector_column).to_numpy(zero_copy_only=False)  # nulls inside a vector come out as NaN
    vectors = np.asarray(flat, dtype=np.float32).reshape(len(ids), snapshot.dim)  # (N, D)
    finite = np.isfinite(vectors).all(axis=1)
    if not finite.all():
        bad = [ids[i] for i in np.flatnonzero(~finite)[:5]]
        raise SnapshotError(f"{where}: {int((~finite).sum()):,} vector(s) hold NaN or infinite values, e.g. {bad}")
    norms = np.linalg.norm(vectors, axis=1)
    off = np.flatnonzero(np.abs(norms - 1) > NORM_TOLERANCE)
    if len(off):
        raise SnapshotError(
            f"{where}: {len(off):,} vector(s) are not L2-normalised, e.g. {ids[int(off[0])]!r} has norm "
            f"{float(norms[off[0]]):.4f}"
        )
    return ids, vectors


# ----------------------------------------------------------------------------------------------------- install
def check_matches(snapshot: Snapshot, embedder: Embedder, collection: Collection) -> None:
    """Raise ``SnapshotMismatch``, naming both sides, unless the snapshot was made for this model and collection."""
    split = split_name(collection)
    model, recorded = model_facts(embedder), snapshot.model
    data, wanted = collection_facts(collection), snapshot.collection
    differences = []
    if not _same_name(recorded["id"], model["id"]):
        differences.append(f"model {recorded['id']} (snapshot) vs {model['id']} (loaded)")
    elif recorded.get("commit") and model["commit"] and recorded["commit"] != model["commit"]:
        differences.append(f"model commit {recorded['commit']} (snapshot) vs {model['commit']} (loaded)")
    elif not (recorded.get("commit") and model["commit"]) and recorded.get("revision") != model["revision"]:
        differences.append(f"model revision {recorded.get('revision')} (snapshot) vs {model['revision']} (loaded)")
    if snapshot.dim != embedder.dim:
        differences.append(f"embedding size {snapshot.dim} (snapshot) vs {embedder.dim} (loaded)")
    if wanted["dataset"].casefold() != data["dataset"].casefold():
        differences.append(f"dataset {wanted['dataset']} (snapshot) vs {data['dataset']} (loaded)")
    for key in ("config", "revision"):
        if wanted.get(key) != data[key]:
            differences.append(f"dataset {key} {wanted.get(key)} (snapshot) vs {data[key]} (loaded)")
    if wanted.get("image_column") and data["image_column"] and wanted["image_column"] != data["image_column"]:
        differences.append(f"image column {wanted['image_column']} (snapshot) vs {data['image_column']} (loaded)")
    if split not in snapshot.splits:
        differences.append(f"split {'/'.join(snapshot.splits)} (snapshot) vs {split} (loaded)")
    if differences:
        raise SnapshotMismatch(
            f"snapshot {snapshot.source} was made for {snapshot.describe()}, but the app loaded {embedder.model_id} "
            f"({embedder.dim}-d) on {collection.source} split {split}: {'; '.join(differences)}"
        )


def install_snapshot(
    snapshot: Snapshot, embedder: Embedder, collection: Collection, cache_dir: str | Path
) -> Embeddings:
    """Check ``snapshot`` against the model and collection, then write its split into the embeddings cache."""
    check_matches(snapshot, embedder, collection)
    split = split_name(collection)
    ids, vectors = read_split(snapshot, split)
    where = f"split {split} of snapshot {snapshot.source}"
    positions = {id_: row for row, id_ in enumerate(collection.ids)}
    unknown = [i for i in ids if i not in positions]
    if unknown:
        raise SnapshotMismatch(
            f"{where} holds {len(unknown):,} id(s) that are not in {collection!r}, e.g. {unknown[:3]}: it was made "
            "from another version of the collection"
        )
    expected_skipped = snapshot.splits[split]["skipped"]
    if len(collection) - len(ids) != expected_skipped:
        raise SnapshotMismatch(
            f"{where} covers {len(ids):,} of the collection's {len(collection):,} images but records "
            f"{expected_skipped:,} skipped: it was made from another version of the collection"
        )
    order = np.argsort([positions[i] for i in ids], kind="stable")  # the cache keeps collection order
    ids, vectors = [ids[i] for i in order], vectors[order]
    _spot_check(where, embedder, collection, ids, vectors)
    covered = set(ids)
    skipped = [
        (i, f"not in snapshot {snapshot.source} (undecodable when it was made)")
        for i in collection.ids
        if i not in covered
    ]
    origin = {"snapshot": snapshot.source, "commit": snapshot.commit, "split": split}
    return save_embeddings(embedder, collection, cache_dir, ids, vectors, skipped, origin=origin)


def _spot_check(where: str, embedder: Embedder, collection: Collection, ids: list[str], vectors: np.ndarray) -> None:
    """Re-embed a few images: the snapshot's vectors must be this model's, not another's of the same size."""
    rows = sorted({int(r) for r in np.linspace(0, len(ids) - 1, SPOT_CHECK_ROWS)})
    try:
        images = [collection.image(ids[r]) for r in rows]
    except (KeyError, UndecodableImage) as err:
        raise SnapshotMismatch(f"{where}: cannot re-embed an image it lists to check it ({err})") from None
    fresh = embedder.embed_images(images)  # (k, D)
    cosines = np.sum(fresh * vectors[rows], axis=1)
    if float(cosines.min()) < SPOT_CHECK_MIN_COSINE:
        raise SnapshotMismatch(
            f"{where}: its vectors are not what {embedder.model_id} gives for the same images (cosine "
            f"{float(cosines.min()):.3f} < {SPOT_CHECK_MIN_COSINE} for {ids[rows[int(np.argmin(cosines))]]!r}): "
            "it was made with other weights"
        )
