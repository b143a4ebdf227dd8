"""The embeddings cache on disk: one entry per (model, collection), written whole, loaded memory-mapped.

An entry is a folder named ``<readable slug>-<hash>`` (``cache_key``) for what the vectors depend on: the model
(id, revision, weights) and the collection (dataset, config, split, revision, image column, content). A complete
entry holds ``vectors.npy`` (memory-mapped on load), ``ids.json``, ``skipped.json`` and ``manifest.json``, written
last: an entry without a manifest is not complete. The local indexer's shards (trainer/indexing.py), the Ray
indexer's (trainer/shards.py) and a published snapshot all become an entry through ``save_parts``, so every later
``build_embeddings`` of the pair is a plain cache hit.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from trainer.data import Collection, folder_signature
from trainer.embed import Embedder
from trainer.files import atomic_write

__all__ = ["Embeddings", "EntryPart", "cache_key", "load_cached", "save_embeddings", "save_parts"]

logger = logging.getLogger(__name__)

_CACHE_FORMAT = 1  # bump when the files or the vectors' meaning change: old entries then simply miss


@dataclass(frozen=True)
class Embeddings:
    """One L2-normalised float32 row per indexed image, in collection order; undecodable images in ``skipped``."""

    ids: list[str]
    vectors: np.ndarray  # (N, D) float32; memory-mapped read-only when it comes from the cache
    skipped: list[tuple[str, str]]  # (id, reason)
    cache_hit: bool = False
    path: Path | None = None  # the cache entry folder
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def __len__(self) -> int:
        return len(self.ids)


def cache_key(embedder: Embedder, collection: Collection) -> str:
    """``<slug>-<hash>`` naming what the vectors depend on: the model (id, revision, weights) and the collection."""
    parts = _key_parts(embedder, collection)
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:12]
    names = (Path(embedder.model_id).name, Path(collection.source).name, collection.config, collection.split)
    name = "__".join(str(v) for v in names if v)
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")[:80]
    return f"{slug}-{digest}"


def _key_parts(embedder: Embedder, collection: Collection) -> dict[str, Any]:
    model_dir = Path(embedder.model_id).expanduser()
    if model_dir.is_dir():
        # A local folder has no revision (from_pretrained ignores one) and can be rebuilt in place (the bundle):
        # its files' signature is what identifies the weights.
        revision, weights = None, folder_signature(model_dir)
    else:
        revision, weights = embedder.revision or "main", embedder.commit_hash  # None and "main" are one revision
    return {
        "format": _CACHE_FORMAT,
        "model": embedder.model_id,
        "model_revision": revision,
        "model_content": weights,
        **collection.identity(),
    }


class EntryPart(Protocol):
    """Consecutive rows of a collection's embeddings, read on demand: one shard, whichever engine wrote it."""

    def ids(self) -> list[str]: ...

    def skipped(self) -> list[tuple[str, str]]: ...

    def vectors(self) -> np.ndarray: ...  # (len(ids()), D)


@dataclass(frozen=True)
class _InMemory:
    rows_ids: list[str]
    rows: np.ndarray
    rows_skipped: list[tuple[str, str]]

    def ids(self) -> list[str]:
        return self.rows_ids

    def skipped(self) -> list[tuple[str, str]]:
        return self.rows_skipped

    def vectors(self) -> np.ndarray:
        return self.rows


def save_parts(
    embedder: Embedder,
    collection: Collection,
    cache_dir: str | Path,
    parts: Sequence[EntryPart],
    *,
    extra: dict[str, Any],
) -> Embeddings:
    """Write the cache entry of (``embedder``, ``collection``) from ``parts`` in collection order, and load it.

    Every row of the collection must be in exactly one part, embedded or skipped. ids and skipped are gathered
    first, then the vectors are streamed part by part (never the whole matrix in memory), and the manifest goes
    last, as the mark of a complete entry. ``extra`` goes into the manifest (how the vectors were made). The local
    indexer's shards, a snapshot and the Ray indexer's shards all become a cache entry here, so that every later
    ``build_embeddings`` of the pair is a plain cache hit.
    """
    key = cache_key(embedder, collection)
    entry = Path(cache_dir) / key
    entry.mkdir(parents=True, exist_ok=True)
    (entry / "manifest.json").unlink(missing_ok=True)  # incomplete from here until the new manifest lands
    ids: list[str] = []
    skipped: list[tuple[str, str]] = []
    for part in parts:
        ids.extend(part.ids())
        skipped.extend(part.skipped())
    if len(set(ids)) != len(ids):
        raise RuntimeError(f"internal error: duplicate ids in the embeddings for {entry}")
    if len(ids) + len(skipped) != len(collection):
        raise RuntimeError(
            f"internal error: {len(ids)} embedded + {len(skipped)} skipped rows for a collection of {len(collection)}"
        )
    dim = embedder.dim

    def write_vectors(f: Any) -> None:  # streamed part by part: never the whole matrix in memory
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype("<f4")), "fortran_order": False}
        np.lib.format.write_array_header_2_0(f, {**header, "shape": (len(ids), dim)})
        for part in parts:
            rows = np.ascontiguousarray(part.vectors(), dtype="<f4")  # (n, D)
            if rows.ndim != 2 or rows.shape[1] != dim:
                raise ValueError(f"expected vectors of size {dim}; got an array of shape {rows.shape}")
            f.write(rows.tobytes())

    atomic_write(entry / "vectors.npy", write_vectors)
    _write_entry_files(entry, key, embedder, collection, ids, skipped, extra)
    for leftover in entry.glob(".*.tmp"):  # temp files of runs killed mid-write; ours were all renamed
        leftover.unlink(missing_ok=True)
    loaded = _load_entry(entry, dim)
    if loaded is None:
        raise RuntimeError(f"internal error: the cache entry just written at {entry} does not load")
    return replace(loaded, cache_hit=False)


def _write_entry_files(
    entry: Path,
    key: str,
    embedder: Embedder,
    collection: Collection,
    ids: list[str],
    skipped: list[tuple[str, str]],
    extra: dict[str, Any],
) -> None:
    """ids, skipped, then the manifest: the one place that decides what a complete entry records."""
    atomic_write(entry / "ids.json", lambda f: f.write(json.dumps(ids).encode()))
    atomic_write(entry / "skipped.json", lambda f: f.write(json.dumps(skipped).encode()))
    manifest = {
        "format": _CACHE_FORMAT,
        "key": key,
        **_key_parts(embedder, collection),
        "dim": embedder.dim,
        "count": len(ids),
        "skipped": len(skipped),
        **extra,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "versions": {"torch": torch.__version__, "transformers": _version("transformers")},
    }
    atomic_write(entry / "manifest.json", lambda f: f.write(json.dumps(manifest, indent=2).encode()))


def load_cached(embedder: Embedder, collection: Collection, cache_dir: str | Path) -> Embeddings | None:
    """The complete cache entry for (``embedder``, ``collection``) if there is one, memory-mapped; else None."""
    return _load_entry(Path(cache_dir) / cache_key(embedder, collection), embedder.dim)


def save_embeddings(
    embedder: Embedder,
    collection: Collection,
    cache_dir: str | Path,
    ids: list[str],
    vectors: np.ndarray,
    skipped: list[tuple[str, str]],
    *,
    origin: dict[str, Any],
) -> Embeddings:
    """Store embeddings made elsewhere (a published snapshot) as this pair's cache entry, so that every later
    ``build_embeddings`` is a plain cache hit. The caller vouches that they are what ``build_embeddings`` would have
    computed; ``origin`` (where they came from) is kept in the manifest so that nobody mistakes them for local work.
    """
    rows = np.ascontiguousarray(vectors, dtype="<f4")  # (N, D)
    if rows.shape != (len(ids), embedder.dim):
        raise ValueError(f"expected {len(ids)} vectors of size {embedder.dim}; got an array of shape {rows.shape}")
    # Half-done shards of an earlier local run are superseded.
    shutil.rmtree(Path(cache_dir) / cache_key(embedder, collection) / "shards", ignore_errors=True)
    return save_parts(embedder, collection, cache_dir, [_InMemory(ids, rows, skipped)], extra={"origin": origin})


def _load_entry(entry: Path, dim: int) -> Embeddings | None:
    """A complete cache entry, memory-mapped; None if there is none (or it is damaged: then it is rebuilt)."""
    manifest_file = entry / "manifest.json"
    if not manifest_file.exists():
        return None
    try:
        manifest = json.loads(manifest_file.read_text())
        vectors = np.load(entry / "vectors.npy", mmap_mode="r")
        ids = json.loads((entry / "ids.json").read_text())
        skipped = [(str(a), str(b)) for a, b in json.loads((entry / "skipped.json").read_text())]
    except (OSError, ValueError) as err:
        logger.warning("Cache entry %s is damaged (%s): rebuilding it", entry, err)
        manifest_file.unlink(missing_ok=True)
        return None
    expected = (manifest.get("count"), dim)
    if manifest.get("format") != _CACHE_FORMAT or vectors.shape != expected or len(ids) != expected[0]:
        logger.warning(
            "Cache entry %s is inconsistent (manifest %s, vectors %s, %d ids, model dim %d): rebuilding it",
            entry,
            expected,
            vectors.shape,
            len(ids),
            dim,
        )
        manifest_file.unlink(missing_ok=True)
        return None
    shutil.rmtree(entry / "shards", ignore_errors=True)  # left by a run killed after its manifest was written
    return Embeddings(ids, vectors, skipped, cache_hit=True, path=entry, manifest=manifest)


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None
