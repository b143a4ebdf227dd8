"""Indexing on Ray Data: the local indexer's embeddings, computed by a Ray cluster (or by Ray on one machine).

``python -m trainer index --engine ray`` runs one streaming Ray Data pipeline per split:

    blocks of rows        one item per shard: its row range and ids (a few KB), made on the driver
    -> decode + prepare   CPU actors (``cpus_per_decode`` CPUs each) that each hold the collection's small
                          ``RowReader`` and the image processor: decode, convert to RGB and preprocess with the very
                          code the local indexer runs (``RowReader.decode``, ``trainer.indexing.prepare``); bad
                          images are skipped with their reason, as there
    -> embed              an actor pool, one model per actor: one GPU each and float16 when the cluster has GPUs,
                          else one CPU actor using every core of its node, float32
    -> write              a task per shard: ``<start>-<stop>.parquet`` with columns ``id`` and ``vector``, and the
                          rows skipped (id, reason) in the file's metadata

Then, on the driver, :meth:`RayRun.to_cache` streams the shards into the embeddings cache entry (the local
indexer's format, so an ``--engine local`` run or the app finds a plain cache hit), from which the local index or the
snapshot is built through ``trainer.index.factory``; or :meth:`RayIndexer.upsert` sends the shards to Pinecone from a
Ray stage (``PineconeIndex.upsert_all``: requests of at most 1,000 records and 2 MB, retried, resumable).

Resumable and exact. A shard is written to a temporary name and moved into place, so it exists whole or not at
all; a rerun (after a crash, a kill, or on purpose) lists the shards, embeds only the rows no shard covers, and
never rewrites a shard. The pixels are the local indexer's (same reader, same ``prepare``); on CPU the vectors match
it to float rounding (batches differ: ~1e-7), on GPU float16 to about 1e-3.

Cluster. Every worker opens what the driver opened at the same path: the model (a Hub id, or a folder), the
collection (an image folder or dataset folder, or the ``datasets`` cache a Hub dataset was downloaded to) and the
shard folder (``--shard-dir``, which may also be a URI such as ``s3://bucket/prefix``). Put them on storage every
node mounts. ``ray`` is imported only here, and this module only when ``--engine ray`` is chosen.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from trainer.progress import ProgressFn, no_progress
from trainer.shards import Shard, ShardPart, ShardStore, pending_ranges

if TYPE_CHECKING:
    from trainer.config import Settings
    from trainer.data import Collection
    from trainer.embed import Embedder
    from trainer.embedding_cache import Embeddings

__all__ = [
    "RayIndexer",
    "RayOptions",
    "RayRun",
    "ray_missing",
    "ray_session",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RayOptions:
    """How the Ray indexer uses the cluster. The defaults suit one machine and a cluster alike."""

    address: str | None = None  # None: start Ray on this machine; "auto": join the local cluster; "ray://host:10001"
    num_gpus: int | None = None  # embedding actors, one GPU each; None: every GPU of the cluster; 0: one CPU actor
    cpus_per_decode: float = 1.0  # CPUs reserved by each decoding actor
    rows_per_shard: int = 256  # rows a shard holds: the unit of work, of resumption and of a worker's memory
    batch_size: int = 64  # images per forward pass within a shard
    shard_root: str | None = None  # where shard folders go (a path or a pyarrow URI); None: the cache folder
    upsert_actors: int = 4  # Pinecone writers: 4-8 saturate a namespace's write rate limit

    def __post_init__(self) -> None:
        if self.rows_per_shard <= 0:
            raise ValueError(f"rows_per_shard (--shard-size) must be a positive integer; got {self.rows_per_shard}")
        if self.batch_size <= 0:
            raise ValueError(f"batch_size (--batch-size) must be a positive integer; got {self.batch_size}")
        if self.cpus_per_decode <= 0:
            raise ValueError(f"cpus_per_decode (--cpus-per-decode) must be positive; got {self.cpus_per_decode}")
        if self.num_gpus is not None and self.num_gpus < 0:
            raise ValueError(f"num_gpus (--num-gpus) must be 0 or more; got {self.num_gpus}")
        if self.upsert_actors <= 0:
            raise ValueError(f"upsert_actors must be positive; got {self.upsert_actors}")


# -------------------------------------------------------------------------------------------------------- the run
# (Worker processes import this module to run the stages below: it imports only numpy and pyarrow at the top, and
# torch or transformers only in the stages that need them.)
@dataclass(frozen=True)
class RayRun:
    """What one ``RayIndexer.embed`` left in its shard folder: every row of the collection, embedded or skipped."""

    store: ShardStore
    shards: tuple[Shard, ...]
    key: str
    dim: int
    embedded_now: int  # rows this run decoded and embedded (0 when every shard was already written)
    resumed_rows: int  # rows covered by shards an earlier run wrote
    seconds: float
    precision: str
    skipped_file: str  # every skipped row with its reason, as JSON

    def __len__(self) -> int:
        return sum(s.count for s in self.shards)

    @property
    def skipped(self) -> list[tuple[str, str]]:
        return [pair for shard in self.shards for pair in shard.skipped]

    def to_cache(self, embedder: Embedder, collection: Collection, cache_dir: str | Path) -> Embeddings:
        """Stream the shards into the embeddings cache entry of (``embedder``, ``collection``), and return it
        memory-mapped: what the local index, a snapshot and a later ``--engine local`` run read."""
        from trainer.embedding_cache import save_parts

        parts = [ShardPart(self.store, shard) for shard in self.shards]
        extra = {"engine": "ray", "shards": self.store.location, "precision": self.precision}
        return save_parts(embedder, collection, cache_dir, parts, extra=extra)


def ray_missing() -> str | None:
    """Why Ray cannot be used here (it is not installed: the app does not need it), or None."""
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        return "Ray is not installed: pip install -r requirements-ray.txt (ray[data]==2.60.0), here and on every node"
    return None


@contextmanager
def ray_session(address: str | None) -> Iterator[None]:
    """Join the Ray cluster at ``address`` (None: start Ray on this machine), unless this process is connected
    already; disconnect at the end only if this call connected."""
    import ray
    from ray.data import DataContext

    started = not ray.is_initialized()
    if started:
        if address:  # joining a cluster: ship this package, so that every node runs the driver's code
            options: dict[str, Any] = {"runtime_env": {"py_modules": [str(Path(__file__).resolve().parent)]}}
        else:  # a Ray of our own on this machine, whose workers share its files
            options = {"include_dashboard": False}
        ray.init(address=address, logging_level=logging.WARNING, **options)
    DataContext.get_current().enable_progress_bars = False  # the command draws its own bar
    try:
        yield
    finally:
        if started:
            ray.shutdown()


class RayIndexer:
    """Embeds collections and writes Pinecone from the Ray cluster this process is connected to (see
    :func:`ray_session`). Raises ValueError if the options ask for more than the cluster has."""

    def __init__(self, options: RayOptions) -> None:
        import ray

        self.options = options
        resources = ray.cluster_resources()
        self.cluster_cpus = float(resources.get("CPU", 0))
        cluster_gpus = int(resources.get("GPU", 0))
        gpus = cluster_gpus if options.num_gpus is None else options.num_gpus
        if gpus > cluster_gpus:
            raise ValueError(f"--num-gpus {gpus}: the Ray cluster has {cluster_gpus} GPU(s)")
        self.gpus = gpus
        log.info("Ray cluster: %g CPUs, %d GPUs; embedding on %s", self.cluster_cpus, cluster_gpus, self.describe())

    def describe(self) -> str:
        if self.gpus:
            return f"{self.gpus} GPU actor(s), float16"
        return "1 CPU actor (every core of its node), float32"

    def shard_store(self, embedder: Embedder, collection: Collection, cache_dir: str | Path) -> ShardStore:
        from trainer.embedding_cache import cache_key

        root = self.options.shard_root or str(Path(cache_dir).expanduser())
        return ShardStore(f"{root.rstrip('/')}/{cache_key(embedder, collection)}/ray-shards")

    def embed(
        self, embedder: Embedder, collection: Collection, cache_dir: str | Path, progress: ProgressFn | None = None
    ) -> RayRun:
        """Embed every row of ``collection`` no shard covers yet; ``embedder`` names the model every actor loads
        (and gives the dimension and the cache key). ``progress(done, total, message)`` after each shard."""
        import ray
        from ray.data import ActorPoolStrategy, TaskPoolStrategy

        from trainer.embedding_cache import cache_key

        report = progress or no_progress
        started = time.perf_counter()
        key, total = cache_key(embedder, collection), len(collection)
        store = self.shard_store(embedder, collection, cache_dir)
        existing = store.scan(key, total)
        ranges = pending_ranges(existing, total, self.options.rows_per_shard)
        resumed = sum(s.stop - s.start for s in existing)
        precision = "float16" if self.gpus else "float32"
        if resumed:
            log.info("Resuming %s: %d of %d rows are in %d shard(s) already", key, resumed, total, len(existing))
        report(
            resumed, total, f"{len(ranges)} shard(s) to embed on Ray" + (f", {resumed} rows resumed" if resumed else "")
        )
        done = resumed
        if ranges:
            items = [{"start": a, "stop": b, "ids": json.dumps(collection.ids[a:b])} for a, b in ranges]
            model = (embedder.model_id, embedder.revision)
            embed_actors = max(self.gpus, 1)
            free_cpus = max(self.cluster_cpus - embed_actors, self.options.cpus_per_decode)
            decoders = max(1, math.floor(free_cpus / self.options.cpus_per_decode))
            dataset = (
                ray.data.from_items(items, override_num_blocks=len(items))
                .map_batches(
                    _Decode,
                    fn_constructor_args=(collection.reader(), *model),
                    batch_size=1,
                    compute=ActorPoolStrategy(min_size=1, max_size=decoders),
                    num_cpus=self.options.cpus_per_decode,
                )
                .map_batches(
                    _Embed,
                    fn_constructor_args=(*model, self.options.batch_size, bool(self.gpus)),
                    batch_size=1,
                    compute=ActorPoolStrategy(size=embed_actors),
                    num_cpus=1,
                    num_gpus=1 if self.gpus else None,
                )
                # Writing a shard takes milliseconds of CPU but may wait on storage (an object store): two writers
                # per embedding actor, reserving no CPU, so that they never queue behind the actors, which hold
                # every CPU of a small machine for the whole run.
                .map_batches(
                    _write,
                    fn_kwargs={"store": store, "key": key},
                    batch_size=1,
                    compute=TaskPoolStrategy(size=min(len(items), 2 * embed_actors)),
                    num_cpus=0,
                )
            )
            for row in _rows_as_they_come(dataset):
                done += int(row["stop"]) - int(row["start"])
                rate = (done - resumed) / max(time.perf_counter() - started, 1e-9)
                report(done, total, f"embedded {done}/{total} images on Ray ({rate:.1f} images/s)")
        shards = store.scan(key, total)
        covered = sum(s.stop - s.start for s in shards)
        if covered != total or pending_ranges(shards, total, total):
            raise RuntimeError(f"the shards in {store.location} cover {covered} of {total} rows after the run")
        skipped_file = store.write_skipped(shards)
        seconds = time.perf_counter() - started
        return RayRun(
            store, tuple(shards), key, embedder.dim, total - resumed, resumed, seconds, precision, skipped_file
        )

    def upsert(self, run: RayRun, settings: Settings, namespace: str, progress: ProgressFn | None = None) -> int:
        """Write every record of ``run`` that is not in ``namespace`` of the settings' Pinecone index, from a Ray stage
        of ``upsert_actors`` writers (each connects once, then ``upsert_all`` per shard: batched, retried, resumable).
        The index is opened here first, so that a missing key or a wrong dimension fails before any work is sent.
        Returns how many records this call wrote."""
        import ray
        from ray.data import ActorPoolStrategy

        from trainer.index.factory import open_index

        report = progress or no_progress
        pinecone = replace(settings, backend="pinecone")
        client = pinecone_client()
        open_index(pinecone, run.dim, namespace, client=client)  # creates the index if needed; fails early
        key = os.environ.get("PINECONE_API_KEY")
        runtime_env = {"env_vars": {"PINECONE_API_KEY": key}} if key and client is None else None
        items = [{"shard": i} for i in range(len(run.shards))]
        dataset = ray.data.from_items(items, override_num_blocks=max(len(items), 1)).map_batches(
            _Upsert,
            fn_constructor_args=(run, pinecone, namespace, client),
            batch_size=1,
            compute=ActorPoolStrategy(min_size=1, max_size=self.options.upsert_actors),
            num_cpus=0.5,
            runtime_env=runtime_env,
        )
        written = done = 0
        for row in _rows_as_they_come(dataset):
            written += int(row["written"])
            done += int(row["rows"])
            report(done, len(run), f"{written:,} upserted, {done - written:,} already in {namespace}")
        return written


def _rows_as_they_come(dataset: Any) -> Iterator[dict[str, Any]]:
    """The dataset's rows, each as soon as its block is done: ``iter_rows`` holds a finished block back until the
    next one is ready (it prefetches), which would leave the progress bar a shard behind, or at 0 until the end."""
    for batch in dataset.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=0):
        for i in range(len(next(iter(batch.values())))):
            yield {key: values[i] for key, values in batch.items()}


def pinecone_client() -> Any:
    """The Pinecone client the writers use: None, so that each builds the SDK's from ``PINECONE_API_KEY``. Tests
    replace this with a picklable handle on an in-memory double."""
    return None


# ------------------------------------------------------------------------------------------------------- the stages
class _Decode:
    """CPU stage: decode a shard's rows, convert to RGB and preprocess: (n, 3, H, W) float32 pixels."""

    def __init__(self, reader: Any, model_id: str, revision: str | None) -> None:
        from trainer.embed import load_preprocessor

        self.reader, self.preprocessor = reader, load_preprocessor(model_id, revision)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        from trainer.indexing import prepare

        start, stop = int(batch["start"][0]), int(batch["stop"][0])
        prepared = prepare(self.preprocessor, self.reader.decode(start, stop, json.loads(batch["ids"][0])))
        return {
            "start": [start],
            "stop": [stop],
            "ids": [json.dumps(prepared.ids)],
            "skipped": [json.dumps(prepared.skipped)],
            "pixels": prepared.pixels.numpy()[None],  # (1, n, 3, H, W): one row per shard
        }


class _Embed:
    """Embedding stage: one model per actor; float16 on a GPU, float32 with every core of the node on a CPU."""

    def __init__(self, model_id: str, revision: str | None, batch_size: int, gpu: bool) -> None:
        import torch

        from trainer import embed

        if gpu:
            self.embedder = embed.load(model_id, revision, device="cuda")  # Ray set CUDA_VISIBLE_DEVICES
            self.embedder.model.half()
        else:
            # Ray limits a worker to the CPUs it reserved (one); the model is the only heavy work on this node's
            # cores while decoding is a few percent of it, so let the forward pass use them all, as locally.
            cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
            torch.set_num_threads(cores)
            self.embedder = embed.load(model_id, revision)
        self.batch_size = batch_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        import torch

        pixels = torch.from_numpy(np.array(batch["pixels"][0], dtype=np.float32))  # (n, 3, H, W), writable copy
        parts = [
            self.embedder.embed_pixels(pixels[i : i + self.batch_size]) for i in range(0, len(pixels), self.batch_size)
        ]
        vectors = np.concatenate(parts) if parts else np.empty((0, self.embedder.dim), np.float32)  # (n, D)
        return {k: batch[k] for k in ("start", "stop", "ids", "skipped")} | {"vectors": vectors[None]}


def _write(batch: dict[str, np.ndarray], *, store: ShardStore, key: str) -> dict[str, Any]:
    """Write stage: one shard file per row."""
    vectors = np.asarray(batch["vectors"][0], dtype=np.float32)
    ids, skipped = json.loads(batch["ids"][0]), [(str(a), str(b)) for a, b in json.loads(batch["skipped"][0])]
    shard = store.write(int(batch["start"][0]), int(batch["stop"][0]), ids, vectors, skipped, key)
    return {"start": [shard.start], "stop": [shard.stop], "count": [shard.count], "skipped": [len(shard.skipped)]}


class _Upsert:
    """Pinecone stage: one connection per actor, ``upsert_all`` per shard."""

    def __init__(self, run: RayRun, settings: Settings, namespace: str, client: Any) -> None:
        from trainer.index.factory import open_index
        from trainer.index.pinecone import PineconeIndex

        self.run = run
        self.index = cast(PineconeIndex, open_index(settings, run.dim, namespace, client=client))  # backend=pinecone

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        shard = self.run.shards[int(batch["shard"][0])]
        ids, vectors = self.run.store.read(shard)
        written = self.index.upsert_all(ids, vectors) if ids else 0
        return {"written": [written], "rows": [len(ids)]}
