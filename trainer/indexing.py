"""Collection -> embeddings: batched, overlapped, cached on disk, resumable.

``build_embeddings(embedder, collection, cache_dir)`` returns an :class:`Embeddings` (ids, vectors, skipped).

- Throughput: a worker thread decodes and preprocesses batch i+1 while the model runs batch i (torch releases the
  GIL during compute), so the model rarely waits for Pillow.
- Cache: one entry per (model, collection) (trainer/embedding_cache.py); a second run finds it complete and does
  no model forward at all.
- Resume: while running, every ``shard_size`` images (whole batches) go to ``shards/<start>-<stop>.npz``, each
  written to a temp file and renamed into place, so a kill -9 at any moment leaves only whole shards. A rerun
  keeps the contiguous run of shards from row 0 and continues after it, with the same batch boundaries as before,
  so the result equals one clean run exactly: no duplicate ids, nothing lost.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from PIL import Image

from trainer.data import Collection, DecodedBatch
from trainer.embed import Embedder, to_rgb
from trainer.embedding_cache import Embeddings, cache_key, load_cached, save_parts
from trainer.files import atomic_write
from trainer.progress import ProgressFn, no_progress

__all__ = ["Prepared", "Preprocessor", "build_embeddings", "embed_in_memory", "prepare"]

logger = logging.getLogger(__name__)

_SHARD_NAME = re.compile(r"(\d{10})-(\d{10})\.npz")


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
    cached = load_cached(embedder, collection, cache_dir)
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


@dataclass(frozen=True)
class _NpzShard:
    path: Path

    def ids(self) -> list[str]:
        return _read_shard(self.path, "ids").tolist()

    def skipped(self) -> list[tuple[str, str]]:
        return [(str(a), str(b)) for a, b in _read_shard(self.path, "skipped").tolist()]

    def vectors(self) -> np.ndarray:
        return _read_shard(self.path, "vectors")


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
