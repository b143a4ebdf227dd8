"""Collection -> embeddings: batched, overlapped, cached on disk, resumable.

``build_embeddings(embedder, collection, cache_dir)`` returns an :class:`Embeddings` (ids, vectors, skipped).

- Throughput: a worker thread decodes and preprocesses batch i+1 while the model runs batch i (torch releases the
  GIL during compute), so the model rarely waits for Pillow.
- Cache: one folder per (model + revision + weights, dataset + config + split + revision + image column + content),
  named ``<readable slug>-<hash>``. A complete entry holds ``vectors.npy`` (memory-mapped on load), ``ids.json``,
  ``skipped.json`` and ``manifest.json``, written last: an entry without a manifest is not complete. A second run
  finds the manifest and does no model forward at all.
- Resume: while running, every ``shard_size`` images (whole batches) go to ``shards/<start>-<stop>.npz``, each
  written to a temp file and renamed into place, so a kill -9 at any moment leaves only whole shards. A rerun
  keeps the contiguous run of shards from row 0 and continues after it, with the same batch boundaries as before,
  so the result equals one clean run exactly: no duplicate ids, nothing lost.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from PIL import Image

from trainer.data import Collection, DecodedBatch, folder_signature
from trainer.embed import Embedder, to_rgb
from trainer.files import atomic_write
from trainer.progress import ProgressFn, no_progress

__all__ = [
    "Embeddings",
    "EntryPart",
    "Prepared",
    "Preprocessor",
    "build_embeddings",
    "cache_key",
    "embed_in_memory",
    "load_cached",
    "prepare",
    "save_embeddings",
    "save_parts",
]

logger = logging.getLogger(__name__)

_CACHE_FORMAT = 1  # bump when the files or the vectors' meaning change: old entries then simply miss
_SHARD_NAME = re.compile(r"(\d{10})-(\d{10})\.npz")


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


def build_embeddings(
    embedder: Embedder,
    collection: Collection,
    cache_dir: str | Path,
    batch_size: int = 64,
    progress: ProgressFn | None = None,
    *,
    shard_size: int = 1024,
) -> Embeddings:
    """Embed every decodable image of ``collection``, or load the result of an earlier run (see the module doc).

    ``progress`` counts the rows handled so far (skipped ones included) of the rows in the collection.
    """
    if batch_size <= 0 or shard_size <= 0:
        raise ValueError(f"batch_size and shard_size must be positive; got {batch_size} and {shard_size}")
    report = progress or no_progress
    total = len(collection)
    key = cache_key(embedder, collection)
    entry = Path(cache_dir) / key
    cached = _load_entry(entry, embedder.dim)
    if cached is not None:
        logger.info("Cache hit: %d vectors from %s", len(cached), entry)
        report(total, total, "cache hit: embeddings loaded from disk")
        return cached

    shard_dir = entry / "shards"
    shard_dir.mkdir(parents=True, exist_ok=True)
    batch_size = _run_batch_size(shard_dir, key, total, batch_size)
    shards = _completed_shards(shard_dir, total)
    resume_at = shards[-1][1] if shards else 0
    if resume_at:
        logger.info("Resuming %s at row %d of %d (%d shard(s) on disk)", key, resume_at, total, len(shards))
    report(resume_at, total, f"resuming at image {resume_at}" if resume_at else "embedding images")

    def write(start: int, stop: int, vectors: list[np.ndarray], ids: list[str], skipped: list[tuple[str, str]]) -> None:
        _write_shard(shard_dir, start, stop, vectors, ids, skipped, embedder.dim)

    _embed_rows(embedder, collection, write, resume_at, batch_size, max(1, shard_size // batch_size), report)
    return _consolidate(entry, key, embedder, collection, batch_size)


def embed_in_memory(
    embedder: Embedder, collection: Collection, batch_size: int = 64, progress: ProgressFn | None = None
) -> Embeddings:
    """Embed every decodable image with nothing written to disk: the fallback when the cache cannot be written.

    Same pipeline and batch boundaries as ``build_embeddings``, so the vectors are the ones a cache would hold; but
    nothing survives the process, and a restart embeds the collection again.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive; got {batch_size}")
    report = progress or no_progress
    parts: list[np.ndarray] = []
    ids: list[str] = []
    skipped: list[tuple[str, str]] = []

    def keep(
        start: int, stop: int, vectors: list[np.ndarray], batch_ids: list[str], bad: list[tuple[str, str]]
    ) -> None:
        parts.extend(vectors)
        ids.extend(batch_ids)
        skipped.extend(bad)

    report(0, len(collection), "embedding images (in memory: the cache folder is not writable)")
    _embed_rows(embedder, collection, keep, 0, batch_size, 1, report)
    vectors = np.concatenate(parts) if parts else np.empty((0, embedder.dim), dtype=np.float32)
    return Embeddings(ids, vectors.astype(np.float32, copy=False), skipped, cache_hit=False, path=None)


# ------------------------------------------------------------------------------------------------- the pipeline
class Preprocessor(Protocol):
    """Anything that turns images into the model's pixel values: an ``Embedder``, or an ``ImagePreprocessor`` alone."""

    def preprocess_images(self, images: Sequence[Image.Image]) -> torch.Tensor: ...


@dataclass(frozen=True)
class Prepared:
    """Decoded rows ready for the model: the ids and pixels of the good images, the ``(id, reason)`` of the rest."""

    ids: list[str]
    pixels: torch.Tensor  # (B, 3, H, W)
    skipped: list[tuple[str, str]]


def prepare(preprocessor: Preprocessor, batch: DecodedBatch) -> Prepared:
    """Convert decoded images to RGB and preprocess them; an image either step fails on is skipped, with why.

    Every engine's one copy of this step: the local indexer runs it on a worker thread, the Ray indexer on its CPU
    workers, so both give the model the same pixels.
    """
    skipped = list(batch.skipped)
    ids, images = [], []
    for id_, image in zip(batch.ids, batch.images, strict=True):
        try:
            images.append(to_rgb(image))
            ids.append(id_)
        # An exotic mode Pillow cannot convert is one bad image, reported by id; it must not end the run.
        except Exception as err:
            skipped.append((id_, f"cannot convert a {image.mode} image to RGB: {type(err).__name__}: {err}"))
    try:
        pixels = preprocessor.preprocess_images(images)
    # The processor works on the whole batch; if one odd image (say, a 1x40000 strip) breaks it, redo the batch
    # image by image so that only that image is skipped, with its reason.
    except Exception:
        kept, tensors = [], []
        for id_, image in zip(ids, images, strict=True):
            try:
                tensors.append(preprocessor.preprocess_images([image]))
                kept.append(id_)
            except Exception as err:
                skipped.append((id_, f"image processor failed: {type(err).__name__}: {err}"))
        ids = kept
        pixels = torch.cat(tensors) if tensors else preprocessor.preprocess_images([])
    return Prepared(ids, pixels, skipped)


ShardWriter = Callable[[int, int, list[np.ndarray], list[str], list[tuple[str, str]]], None]
"""``write(start, stop, vectors, ids, skipped)``: where a finished run of rows goes (a shard file, or memory)."""


def _embed_rows(
    embedder: Embedder,
    collection: Collection,
    write: ShardWriter,
    resume_at: int,
    batch_size: int,
    batches_per_shard: int,
    report: ProgressFn,
) -> None:
    total = len(collection)
    starts = list(range(resume_at, total, batch_size))
    if not starts:
        return
    shard_start, vectors, ids, skipped, batches = resume_at, [], [], [], 0
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ct-preprocess") as pool:

        def submit(start: int) -> Future[Prepared]:
            stop = min(start + batch_size, total)
            return pool.submit(lambda: prepare(embedder, collection.decode_range(start, stop)))

        pending = submit(starts[0])
        for k in range(len(starts)):
            prepared = pending.result()
            stop = min(starts[k] + batch_size, total)
            if k + 1 < len(starts):
                pending = submit(starts[k + 1])  # preprocess the next batch while the model runs this one
            vectors.append(embedder.embed_pixels(prepared.pixels))  # (B, D)
            ids.extend(prepared.ids)
            skipped.extend(prepared.skipped)
            batches += 1
            if batches == batches_per_shard or stop == total:
                write(shard_start, stop, vectors, ids, skipped)
                shard_start, vectors, ids, skipped, batches = stop, [], [], [], 0
            rate = (stop - resume_at) / max(time.perf_counter() - started, 1e-9)
            report(stop, total, f"embedded {stop}/{total} images ({rate:.1f} images/s)")


# ------------------------------------------------------------------------------------------------------- shards
def _write_shard(
    shard_dir: Path,
    start: int,
    stop: int,
    vectors: list[np.ndarray],
    ids: list[str],
    skipped: list[tuple[str, str]],
    dim: int,
) -> None:
    rows = np.concatenate(vectors) if vectors else np.empty((0, dim), dtype=np.float32)
    arrays = {
        "vectors": rows.astype(np.float32, copy=False),
        "ids": np.array(ids, dtype=np.str_),
        "skipped": np.array(skipped, dtype=np.str_).reshape(-1, 2),
    }
    atomic_write(shard_dir / f"{start:010d}-{stop:010d}.npz", lambda f: np.savez(f, **arrays))


def _read_shard(path: Path, part: str) -> np.ndarray:
    try:
        with np.load(path, allow_pickle=False) as shard:
            return shard[part]
    except (OSError, ValueError, KeyError) as err:
        raise ValueError(f"cache shard {path} is unreadable ({err}); delete it and run again to redo its rows") from err


def _run_batch_size(shard_dir: Path, key: str, total: int, batch_size: int) -> int:
    """The batch size of the run the shards belong to: resuming with it keeps batch boundaries, hence the vectors."""
    run_file = shard_dir / "run.json"
    if run_file.exists():
        run = json.loads(run_file.read_text())
        if run.get("total") == total and run.get("key") == key:
            if run["batch_size"] != batch_size:
                logger.info(
                    "Resuming with the interrupted run's batch size %d (not %d) so its vectors stay identical",
                    run["batch_size"],
                    batch_size,
                )
            return int(run["batch_size"])
        logger.warning("Shards in %s belong to another run (%s): starting over", shard_dir, run)
        for stale in shard_dir.glob("*.npz"):
            stale.unlink()
    run = {"key": key, "total": total, "batch_size": batch_size}
    atomic_write(run_file, lambda f: f.write(json.dumps(run).encode()))
    return batch_size


def _completed_shards(shard_dir: Path, total: int) -> list[tuple[int, int, Path]]:
    """The shards that cover rows 0..k without a gap. Anything else (impossible unless edited by hand) is dropped."""
    found = []
    for path in shard_dir.glob("*.npz"):
        match = _SHARD_NAME.fullmatch(path.name)
        if match:
            found.append((int(match[1]), int(match[2]), path))
    chain, expected = [], 0
    for start, stop, path in sorted(found):
        if start == expected and start < stop <= total:
            chain.append((start, stop, path))
            expected = stop
        else:
            logger.warning("Dropping cache shard %s: it does not continue the rows before it", path.name)
            path.unlink()
    return chain


# ------------------------------------------------------------------------------------------------ cache entries
class EntryPart(Protocol):
    """Consecutive rows of a collection's embeddings, read on demand: one shard, whichever engine wrote it."""

    def ids(self) -> list[str]: ...

    def skipped(self) -> list[tuple[str, str]]: ...

    def vectors(self) -> np.ndarray: ...  # (len(ids()), D)


@dataclass(frozen=True)
class _NpzShard:
    path: Path

    def ids(self) -> list[str]:
        return _read_shard(self.path, "ids").tolist()

    def skipped(self) -> list[tuple[str, str]]:
        return [(str(a), str(b)) for a, b in _read_shard(self.path, "skipped").tolist()]

    def vectors(self) -> np.ndarray:
        return _read_shard(self.path, "vectors")


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


def _consolidate(entry: Path, key: str, embedder: Embedder, collection: Collection, batch_size: int) -> Embeddings:
    """Join the local indexer's shards into the cache entry, then drop them."""
    shard_dir = entry / "shards"
    shards = _completed_shards(shard_dir, len(collection))
    covered = shards[-1][1] if shards else 0
    if covered != len(collection):
        raise RuntimeError(f"internal error: shards in {shard_dir} cover {covered} of {len(collection)} rows")
    parts = [_NpzShard(path) for _, _, path in shards]
    embeddings = save_parts(embedder, collection, entry.parent, parts, extra={"batch_size": batch_size})
    shutil.rmtree(shard_dir, ignore_errors=True)
    return embeddings


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
