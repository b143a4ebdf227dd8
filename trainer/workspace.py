"""Everything every visitor shares, assembled once at start-up: model, collection, embeddings, index, 2-D map.

A Workspace is read-only after it is built, so one instance serves all browser tabs; each tab's own state is a
Session. ``WorkspaceLoader`` builds it in a background thread so the app can serve a page (and show progress)
while a first start embeds the collection.
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import hashlib
import json
import logging
import re
import shlex
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .checks import prompt_text
from .classifier import LinearProbe
from .config import Settings
from .data import Collection
from .embed import Embedder, model_identity
from .embed import load as load_embedder
from .embedding_cache import Embeddings, load_cached
from .files import is_local_path, shown_name
from .hub_calls import HubError
from .index import VectorIndex
from .index.factory import build_index
from .indexing import build_embeddings, embed_in_memory
from .progress import ProgressFn, no_progress
from .session import Session
from .snapshot import SnapshotError, fetch_snapshot, install_snapshot, read_snapshot, split_name
from .sources import hub_reachable, open_collection, open_held_out, resolve_source
from .thumbnails import THUMBNAIL_PX, Thumbnails

__all__ = [
    "EvalSplit",
    "Projection",
    "Workspace",
    "WorkspaceLoader",
    "load_workspace",
    "project_2d",
    "publish_command",
    "seed_cache",
]

log = logging.getLogger(__name__)

# The start-up bar counts thousandths of the whole start: loading the model and fetching a snapshot take its first
# 5%, embedding the next 90%, building the index and the map the rest.
STARTUP_STEPS = 1000
# Collections up to this size get all their thumbnails made at start-up (the bundle's 2,500 in ~5 s, imagenette's
# 9,469 in about a minute, once: later starts map the pack); larger ones make each on first use.
PACK_LIMIT = 20_000
# The 2-D map plots at most this many points: enough to show the collection's shape, few enough to draw fast.
MAP_POINTS = 2000
# Why a cache folder cannot be written: read-only, no permission, disk or quota full.
_STORAGE_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT})
# How far a negative prompt pushes the prior away from what it describes.
NEGATIVE_PROMPT_WEIGHT = 0.5


@dataclass(frozen=True)
class EvalSplit:
    """A held-out split: only ever classified, never labelled."""

    name: str
    collection: Collection
    embeddings: Embeddings


@dataclass(frozen=True)
class Projection:
    """A PCA map fitted on a sample of the collection; ``project`` places any other vector on the same map."""

    rows: np.ndarray  # (M,) rows of the collection drawn on the map
    xy: np.ndarray  # (M, 2) their coordinates
    mean: np.ndarray  # (D,)
    axes: np.ndarray  # (2, D)

    def project(self, vectors: np.ndarray) -> np.ndarray:
        return ((np.asarray(vectors, dtype=np.float32) - self.mean) @ self.axes.T).astype(np.float32)  # (n, 2)


@dataclass(frozen=True)
class Workspace:
    settings: Settings  # resolved: the model and dataset actually in use
    embedder: Embedder
    collection: Collection
    embeddings: Embeddings
    index: VectorIndex
    eval: EvalSplit | None
    projection: Projection  # the 2-D map
    load_seconds: float
    notes: tuple[str, ...] = ()  # what start-up wants the header to say (snapshot used, refused, or how to publish one)
    hub_online: bool = True  # whether the Hugging Face Hub answered at start-up (pushes and pulls need it)

    @property
    def map_rows(self) -> np.ndarray:
        return self.projection.rows

    @property
    def map_xy(self) -> np.ndarray:
        return self.projection.xy

    def project(self, vectors: np.ndarray) -> np.ndarray:
        return self.projection.project(vectors)

    @property
    def offline_bundle(self) -> bool:
        return self.settings.source == "bundle"

    @property
    def model_name(self) -> str:
        """The model as people read it: a Hub id, or a local folder's name (never where it lies on the server)."""
        return shown_name(self.settings.model_id)

    @property
    def dataset_name(self) -> str:
        return shown_name(self.settings.dataset)

    @property
    def base_model(self) -> str:
        """What a classifier made here records as its base model: the Hub id, or for a local model folder its name
        and a hash of its files (``embed.model_identity``), portable to any machine that has the same model."""
        return model_identity(self.settings.model_id)

    @functools.cached_property
    def _rows(self) -> dict[str, int]:
        return {id_: row for row, id_ in enumerate(self.embeddings.ids)}

    def vectors_of(self, ids: list[str]) -> np.ndarray:
        """(n, D) embeddings of indexed items, from the local copy every backend keeps: no index call."""
        try:
            rows = [self._rows[i] for i in ids]
        except KeyError as err:
            raise KeyError(f"no item {err.args[0]!r} in {self.dataset_name}") from None
        return np.asarray(self.embeddings.vectors[rows], dtype=np.float32).reshape(len(rows), -1)

    @functools.cached_property
    def thumbnails(self) -> Thumbnails:
        """Thumbnails of the indexed collection, made once each for every visitor (packed at start-up)."""
        thumbnails = Thumbnails(self.collection.image)
        thumbnails.open_pack(thumbnail_pack_path(self.settings, self.collection))
        return thumbnails

    @functools.cached_property
    def held_out_thumbnails(self) -> Thumbnails | None:
        return Thumbnails(self.eval.collection.image) if self.eval else None

    def new_session(
        self,
        prompt: str,
        negative: str = "",
        *,
        query: np.ndarray | None = None,
        strategy: str | None = None,
        batch_size: int | None = None,
        prior_strength: float | None = None,
    ) -> Session:
        """A labelling session over this collection, started from a prompt, or from ``query``: an embedding to
        search near, such as an uploaded image's (:meth:`image_vector`; ``prompt`` then only names it). Either way
        pushed away from ``negative``. ``strategy`` and ``batch_size`` default to the settings (``CT_STRATEGY``,
        ``CT_BATCH_SIZE``). Bad values raise ValueError naming them."""
        vector = self.away_from(query, negative) if query is not None else self.prompt_vector(prompt, negative)
        return Session(
            self.index,
            vector,
            strategy=self.settings.strategy if strategy is None else strategy,
            batch_size=self.settings.batch_size if batch_size is None else batch_size,
            seed=self.settings.seed,
            prior_strength=prior_strength,
            prompt=prompt.strip() or None,
            negative_prompt=negative.strip() or None,
            base_model=self.base_model,
            collection=self.collection_name,
        )

    def session_from(self, probe: LinearProbe) -> Session:
        """A session that continues a trained classifier (a pulled or loaded one), its prompt prior kept as the
        prior to train toward."""
        prior = probe.prior_weight.numpy()
        norm = float(np.linalg.norm(prior))
        prompt_vector = prior / norm if norm > 0 else probe.weight / np.linalg.norm(probe.weight)
        return Session(
            self.index,
            prompt_vector,
            strategy=self.settings.strategy,
            batch_size=self.settings.batch_size,
            seed=self.settings.seed,
            classifier=probe,
            prompt=probe.prompt,
            base_model=self.base_model,
            collection=self.collection_name,
        )

    def resume_offer(self, saved: object) -> dict[str, object] | None:
        """What can be resumed from a browser's saved copy (``Session.to_saved()``): ``{"labels": n, "checks": m,
        "prompt"}`` when it holds labels or quality-check labels for this model and collection, else None. Only
        looks; :meth:`session_from_saved` checks every field."""
        if not isinstance(saved, dict):
            return None
        labels, checks = (saved.get(k) if isinstance(saved.get(k), dict) else {} for k in ("labels", "audit_labels"))
        if not labels and not checks:
            return None
        if (saved.get("base_model"), saved.get("collection")) != (self.base_model, self.collection_name):
            return None
        return {"labels": len(labels), "checks": len(checks), "prompt": str(saved.get("prompt", ""))[:200]}

    def session_from_saved(self, saved: object, *, max_batch_size: int) -> Session:
        """The session a browser's saved copy describes: the same prior and settings, every label taken over. The
        copy comes from the browser, so it is untrusted: a ValueError says what is wrong with it, or that it is for
        another model or collection (see :meth:`resume_offer`)."""
        if self.resume_offer(saved) is None:
            raise ValueError("there is no saved session for this model and collection")
        return Session.from_saved(
            self.index,
            saved,
            base_model=self.base_model,
            collection=self.collection_name,
            max_batch_size=max_batch_size,
            seed=self.settings.seed,
        )

    def prior_for(self, query: str | np.ndarray, negative: str | None = None) -> np.ndarray:
        """The prior a session starts from: a prompt's (:meth:`prompt_vector`) or an embedding's (:meth:`away_from`),
        pushed away from ``negative``."""
        return self.prompt_vector(query, negative) if isinstance(query, str) else self.away_from(query, negative)

    def image_vector(self, image: Image.Image) -> np.ndarray:
        """An image's embedding (D,), unit: a query for "more like this picture"."""
        return self.embedder.embed_images([image])[0]

    def away_from(self, vector: np.ndarray, negative: str | None) -> np.ndarray:
        """A query ``vector`` (D,) pushed away from what a negative prompt describes, as a unit vector."""
        if negative and negative.strip():
            vector = vector - NEGATIVE_PROMPT_WEIGHT * self.embedder.embed_text([negative])[0]
        return (vector / np.linalg.norm(vector)).astype(np.float32)

    @property
    def collection_name(self) -> str:
        """The collection and split the index holds, as people read it: what label ids refer to."""
        return f"{self.dataset_name} ({self.settings.split})"

    def prompt_vector(self, prompt: str, negative: str | None = None) -> np.ndarray:
        """The prior for a prompt: its text embedding, pushed away from an optional negative prompt. (D,) unit.

        Both are checked before any work (length, control characters, valid Unicode): a ValueError names which.
        """
        prompt = prompt_text(prompt)
        negative = prompt_text(negative or "", "The negative prompt", allow_empty=True)
        texts = [prompt] + ([negative] if negative else [])
        vectors = self.embedder.embed_text(texts)
        vector = vectors[0] - NEGATIVE_PROMPT_WEIGHT * vectors[1] if len(vectors) > 1 else vectors[0]
        return (vector / np.linalg.norm(vector)).astype(np.float32)


def load_workspace(settings: Settings | None = None, progress: ProgressFn | None = None) -> Workspace:
    """Resolve the source (real defaults or the offline bundle), load the model, embed (or load) and index."""
    started = time.perf_counter()
    report = progress or no_progress

    def at(fraction: float, message: str) -> None:
        report(round(fraction * STARTUP_STEPS), STARTUP_STEPS, message)

    requested = settings or Settings.from_env()
    settings = resolve_source(requested)
    # "auto" fell back to the bundle only because the Hub did not answer: no need to ask it again.
    hub_online = not (requested.source == "auto" and settings.source == "bundle") and hub_reachable()
    at(0.02, f"loading {settings.model_id}")
    embedder = load_embedder(
        settings.model_id, revision=None if settings.source == "bundle" else settings.model_revision
    )
    collection = open_collection(settings)
    eval_collection = open_held_out(settings, "Classify will cover the indexed split only")
    total = len(collection) + (len(eval_collection) if eval_collection else 0)
    # A matching snapshot fills the cache, so the build_embeddings calls below are cache hits; else they embed.
    collections = [c for c in (collection, eval_collection) if c is not None]
    notes = list(seed_cache(settings, embedder, collections, lambda _done, _total, message: at(0.03, message)))

    def embedding_progress(offset: int, label: str) -> ProgressFn:
        def hook(done: int, _total: int, message: str) -> None:
            at(0.05 + 0.9 * (offset + done) / max(total, 1), f"{label}: {done:,}/{_total:,} images ({message})")

        return hook

    embeddings = _embed(embedder, collection, settings, embedding_progress(0, settings.split), notes)
    eval_split = None
    if eval_collection is not None:
        progress_hook = embedding_progress(len(collection), eval_collection.split or "eval")
        eval_embeddings = _embed(embedder, eval_collection, settings, progress_hook, notes)
        eval_split = EvalSplit(eval_collection.split or "eval", eval_collection, eval_embeddings)
    at(0.95, f"building the {settings.backend} index")
    index = build_index(settings, collection, embeddings.ids, embeddings.vectors).index  # Pinecone: skips what is there
    projection = project_2d(embeddings.vectors, MAP_POINTS, seed=settings.seed)
    workspace = Workspace(
        settings,
        embedder,
        collection,
        embeddings,
        index,
        eval_split,
        projection,
        0.0,
        tuple(dict.fromkeys(notes)),
        hub_online,
    )
    _pack_thumbnails(workspace, lambda done, total, message: at(0.96 + 0.035 * done / max(total, 1), message))
    seconds = time.perf_counter() - started
    at(1.0, f"ready in {seconds:.1f} s")
    log.info("workspace ready in %.1f s: %s on %s, %d images", seconds, settings.model_id, settings.dataset, len(index))
    return dataclasses.replace(workspace, load_seconds=seconds)


def thumbnail_pack_path(settings: Settings, collection: Collection) -> Path:
    """Where a collection's thumbnails are packed: in the cache folder, named by what they depend on."""
    identity = json.dumps({**collection.identity(), "size": THUMBNAIL_PX}, sort_keys=True)
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", f"{Path(collection.source).name}-{collection.split}").strip("-.")[:60]
    return settings.cache_dir / "thumbnails" / f"{name}-{hashlib.sha256(identity.encode()).hexdigest()[:12]}"


def _pack_thumbnails(workspace: Workspace, progress: ProgressFn) -> None:
    """Make every thumbnail of the indexed collection once, at start-up, so that no round waits for one.

    Skipped for collections larger than ``PACK_LIMIT`` (their thumbnails are made on first use) and when the
    cache folder cannot be written (the same, with a note in the log: nothing else depends on the pack)."""
    thumbnails, collection = workspace.thumbnails, workspace.collection
    if thumbnails.packed or len(collection) > PACK_LIMIT:
        return
    try:
        path = thumbnail_pack_path(workspace.settings, collection)
        thumbnails.write_pack(path, collection.batches(64), len(collection), progress)
    except OSError as err:
        log.warning(
            "thumbnails cannot be packed in %s (%s): each is made on first use", workspace.settings.cache_dir, err
        )


def _embed(
    embedder: Embedder,
    collection: Collection,
    settings: Settings,
    progress: ProgressFn,
    notes: list[str],
) -> Embeddings:
    """The collection's embeddings from the disk cache; in memory, with a note, when the cache cannot be written.

    A read-only or full cache folder must not take the app down: the vectors are the same either way, only the next
    start is slower. Any other error is a real fault and propagates.
    """
    try:
        return build_embeddings(embedder, collection, settings.cache_dir, settings.embed_batch_size, progress)
    except OSError as err:
        if err.errno not in _STORAGE_ERRNOS:
            raise
        log.warning("cache folder %s is not writable (%s): embedding in memory instead", settings.cache_dir, err)
        notes.append(
            f"The cache folder is not writable ({err.strerror or err}), so the embeddings are kept in memory only: "
            "the app works as usual, but the next start embeds the collection again."
        )
        return embed_in_memory(embedder, collection, settings.embed_batch_size, progress)


def project_2d(vectors: np.ndarray, limit: int, seed: int = 0) -> Projection:
    """A PCA map of up to ``limit`` rows (a fixed random sample of the collection)."""
    n = len(vectors)
    rows = np.arange(n) if n <= limit else np.sort(np.random.default_rng(seed).choice(n, limit, replace=False))
    sample = np.asarray(vectors[rows], dtype=np.float32)  # (M, D)
    mean = sample.mean(axis=0)
    axes = np.zeros((2, sample.shape[1]), np.float32)
    if len(sample) > 1:
        components = np.linalg.svd(sample - mean, full_matrices=False)[2]  # (K, D), best first
        axes[: min(2, len(components))] = components[:2]
    projection = Projection(rows, np.empty((0, 2), np.float32), mean, axes)
    return Projection(rows, projection.project(sample), mean, axes)


class WorkspaceLoader:
    """Builds a Workspace in a background thread and reports how far it got; the app polls it."""

    def __init__(self, build: Callable[[ProgressFn], Workspace]) -> None:
        self._build = build
        self._lock = threading.Lock()
        self._fraction = 0.0
        self._message = "starting"
        self._workspace: Workspace | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="workspace-loader", daemon=True)

    def start(self) -> WorkspaceLoader:
        self._thread.start()
        return self

    def wait(self, timeout: float | None = None) -> Workspace:
        self._thread.join(timeout)
        return self.get()

    def _progress(self, done: int, total: int, message: str) -> None:
        with self._lock:
            self._fraction, self._message = done / total if total else 0.0, message

    def _run(self) -> None:
        try:
            workspace = self._build(self._progress)
        except Exception as err:  # reported to every visitor by status(); the thread must not die silently
            log.exception("loading the workspace failed")
            with self._lock:
                self._error = err
            return
        with self._lock:
            self._workspace = workspace

    def status(self) -> tuple[bool, float, str]:
        """(ready, fraction done, message). A failure is reported as not ready with the error's message."""
        with self._lock:
            if self._error is not None:
                return False, self._fraction, f"Start-up failed: {self._error}"
            return self._workspace is not None, self._fraction, self._message

    @property
    def failed(self) -> bool:
        with self._lock:
            return self._error is not None

    def get(self) -> Workspace:
        with self._lock:
            if self._workspace is not None:
                return self._workspace
            if self._error is not None:
                raise RuntimeError(f"start-up failed: {self._error}") from self._error
            raise RuntimeError(f"still preparing the collection ({self._fraction:.0%}: {self._message})")


# ------------------------------------------------------------------------------------------------ snapshots
def seed_cache(
    settings: Settings,
    embedder: Embedder,
    collections: Sequence[Collection],
    progress: ProgressFn | None = None,
) -> tuple[str, ...]:
    """Before the workspace embeds ``collections``, fill the cache from ``settings.snapshot`` where it can.

    Returns notes for the app's header (also logged): a refused or unreachable snapshot and the local indexing that
    replaces it, or, with no snapshot configured and local indexing ahead, how to publish one. A collection already
    in the cache needs nothing: no download, no note.
    """
    report = progress or no_progress
    missing = [c for c in collections if load_cached(embedder, c, settings.cache_dir) is None]
    if not missing:
        return ()
    if not settings.snapshot:
        if settings.source == "bundle":  # the bundle embeds in seconds: nothing worth publishing
            return ()
        note = (
            f"No embedding snapshot configured: embedding {sum(len(c) for c in missing):,} images locally. To start "
            f"in seconds next time, publish one: `{publish_command(settings, missing[0])}`, then set "
            "CT_SNAPSHOT=<you>/<name>."
        )
        log.warning(note)
        return (note,)
    if settings.source == "bundle" and not Path(settings.snapshot).expanduser().is_dir():
        note = f"Embedding snapshot {settings.snapshot} not used: this start runs on the offline bundle."
        log.warning(note)
        return (note,)
    report(0, 1, f"fetching embedding snapshot {settings.snapshot}")
    try:
        folder = fetch_snapshot(settings.snapshot, revision=settings.snapshot_revision)
        snapshot = read_snapshot(folder, source=settings.snapshot)
    except (HubError, SnapshotError) as err:
        return (_fallback(f"Embedding snapshot {settings.snapshot} could not be loaded: {err}"),)
    notes = []
    for collection in missing:
        try:
            embeddings = install_snapshot(snapshot, embedder, collection, settings.cache_dir)
        except SnapshotError as err:
            notes.append(_fallback(f"Embedding snapshot refused: {err}"))
            continue
        except OSError as err:  # a read-only or full cache folder: the workspace then embeds in memory
            notes.append(_fallback(f"Embedding snapshot could not be written to the cache ({err.strerror or err})"))
            continue
        log.info(
            "Embedding snapshot %s: %d vectors of split %s installed",
            snapshot.source,
            len(embeddings),
            collection.split,
        )
        notes.append(f"Embeddings of {split_name(collection)} loaded from snapshot {snapshot.source}.")
    return tuple(notes)


def _fallback(reason: str) -> str:
    note = f"{reason}. Indexing locally instead (this takes longer)."
    log.warning(note)
    return note


def publish_command(settings: Settings, collection: Collection) -> str:
    """The one command that publishes a snapshot of ``collection`` (opened from ``settings``) with ``settings``'
    model and held-out split. Run it where embedding is fast; the flags make it independent of CT_* variables."""
    parts = ["--model", settings.model_id]
    if not is_local_path(settings.model_id) and settings.model_revision:
        parts += ["--model-revision", settings.model_revision]
    parts += ["--dataset", settings.dataset]
    for flag, value in (
        ("--config", collection.config),  # as opened: a local folder has none, whatever the settings say
        ("--split", collection.split),
        ("--eval-split", settings.eval_split),
        ("--revision", collection.revision),
        ("--image-column", settings.image_column),
    ):
        if value:
            parts += [flag, value]
    return " ".join(["python -m trainer index", *map(shlex.quote, parts), "--push-to-hub", "<you>/<name>"])
