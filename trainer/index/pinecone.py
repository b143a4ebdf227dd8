"""Pinecone serverless backend: the LocalIndex protocol over a remote index, for collections beyond one machine.

Layout. One Pinecone index (``settings.pinecone_index``, metric ``dotproduct``, dimension = the model's) holds one
namespace per (model, collection), named by :func:`namespace_for`. A record is ``{id, values, metadata}`` and its
metadata always carries the id again under :data:`ID_FIELD`, because Pinecone filters on metadata only: that copy is
what lets ``query(..., exclude=seen)`` skip a user's seen images without writing anything for that user.

Cost. A labelling round is one ``query`` call and zero writes. Nothing per user is ever stored in Pinecone (the
original article kept a shared "seen" flag in the index, so one visitor's labelling hid images from everyone else).
A uniform sample of the collection (trainer/collection_sample.py) needs its ids: :meth:`PineconeIndex.list_ids`
answers from the ids this object wrote or found present (``upsert_all``, as the app and the ``index`` command build
the namespace: no call), else lists the namespace, a bounded number of calls (trainer/index/pinecone_ids.py).

Limits (docs.pinecone.io, "Operation limits"): an upsert carries at most 1,000 records and 2 MB, a record's metadata
at most 40 KB, a query's ``top_k`` at most 10,000, a fetch at most 1,000 ids. "MB" and "KB" are read as 10**6 and
10**3 bytes, the stricter reading. Upserts are sized from the exact bytes the SDK will send.

Failures. Every SDK call goes through ``trainer.index.pinecone_calls`` (bounded retries of rate limits and server
errors; anything else an :class:`~trainer.index.IndexUnavailable` that says what to do, without the API key).

``pinecone`` is imported inside the functions that talk to it, so choosing ``backend=local`` never imports it.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import random
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

import numpy as np

from ..progress import ProgressFn
from . import Hit, IndexUnavailable, check_ids, check_norms, check_query, check_vectors
from .pinecone_calls import Caller, RetryPolicy, make_client
from .pinecone_ids import list_namespace

if TYPE_CHECKING:
    from trainer.config import Settings

__all__ = [
    "ID_FIELD",
    "METRIC",
    "PineconeIndex",
    "namespace_for",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

METRIC = "dotproduct"  # scores are raw dot products: classifier weights as the query vector rank like the probe does
ID_FIELD = "cid"  # metadata key holding the record id, so that `exclude` can be a metadata filter
MAX_UPSERT_RECORDS = 1_000
MAX_UPSERT_BYTES = 2_000_000
MAX_METADATA_BYTES = 40_000
MAX_TOP_K = 10_000  # without values or metadata in the response, which this backend never asks for
MAX_FETCH_IDS = 1_000
MAX_ID_LENGTH = 512
# fetch sends its ids in the URL query string. Pinecone documents no URL limit, so stay well under the 8 KB that
# common proxies accept: about 300 ids of 15 characters a request.
FETCH_URL_BYTES = 6_000
# Up to this many excluded ids go into a `$nin` filter; the rest are over-fetched and dropped here (see query()).
# Every filtered id travels with every query, 20-40 bytes each: the cap keeps a round's request under about 40 KB.
DEFAULT_FILTER_LIMIT = 1_000
# add() and upsert_all() walk the vectors in chunks this big, so a 10M-row memory-mapped array is never copied whole.
_CHUNK_ROWS = MAX_UPSERT_RECORDS
_CREATE_TIMEOUT_S = 300  # a serverless index is usually ready in well under a minute
_MISSING_KEY = (
    "The Pinecone backend needs an API key. Set PINECONE_API_KEY (an environment variable, or a secret in the "
    "Space settings) or choose backend=local (CT_BACKEND=local)."
)


class PineconeIndex:
    """The index protocol over one namespace of a Pinecone serverless index. Build it with :meth:`connect`.

    ``index`` is the SDK's data-plane object (``Pinecone(...).Index(host=...)``) or a test double of it.
    """

    def __init__(
        self,
        index: Any,
        *,
        dim: int,
        namespace: str,
        retry: RetryPolicy | None = None,
        filter_limit: int = DEFAULT_FILTER_LIMIT,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        secret: str | None = None,
    ) -> None:
        _check_target(dim, namespace)
        if filter_limit < 0:
            raise ValueError(f"filter_limit must be >= 0; got {filter_limit}")
        self._index = index
        self._dim = dim
        self._namespace = namespace
        self._filter_limit = filter_limit
        self._call = Caller(retry or RetryPolicy(), sleep, rng or random.Random(), secret)
        # Ids this object wrote or found present, in that order (repeats possible): what list_ids answers from when
        # they are as many as the namespace holds. A list: 8 bytes an id, the strings being the caller's own.
        self._known: list[str] = []

    # ----------------------------------------------------------------------------------------------- construction
    @classmethod
    def connect(
        cls,
        settings: Settings,
        dim: int,
        namespace: str,
        api_key: str | None = None,
        client: Any = None,
        *,
        retry: RetryPolicy | None = None,
        filter_limit: int = DEFAULT_FILTER_LIMIT,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> PineconeIndex:
        """Open ``namespace`` of the index named in ``settings``, creating the index when it does not exist.

        The index must hold vectors of dimension ``dim`` under the ``dotproduct`` metric; an existing index that does
        not is refused with a message naming both, never silently used. ``api_key`` defaults to ``PINECONE_API_KEY``.
        ``client`` replaces the SDK's ``Pinecone`` client (tests pass an in-memory double).
        """
        _check_target(dim, namespace)  # before any request: a bad dim must never create an index
        key = api_key or os.environ.get("PINECONE_API_KEY", "")
        if client is None:
            if not key:
                raise IndexUnavailable(_MISSING_KEY)
            client = make_client(key)
        call = Caller(retry or RetryPolicy(), sleep, rng or random.Random(), key)
        name = settings.pinecone_index
        if not call(f"look up Pinecone index {name!r}", lambda: client.has_index(name)):
            _create_index(client, call, settings, dim)
        description = call(f"describe Pinecone index {name!r}", lambda: client.describe_index(name))
        _check_description(description, name, dim)
        host = description.host
        index = call(f"open Pinecone index {name!r}", lambda: client.Index(host=host))
        return cls(
            index,
            dim=dim,
            namespace=namespace,
            retry=retry,
            filter_limit=filter_limit,
            sleep=sleep,
            rng=rng,
            secret=key,
        )

    # ----------------------------------------------------------------------------------------------- the protocol
    @property
    def dim(self) -> int:
        return self._dim

    @property
    def namespace(self) -> str:
        return self._namespace

    def __len__(self) -> int:
        """Records in this namespace, from ``describe_index_stats``. Pinecone counts lag writes by a few seconds."""
        stats = self._call("read index statistics", lambda: self._index.describe_index_stats())
        summary = stats.namespaces.get(self._namespace)
        return int(summary.vector_count) if summary is not None else 0

    def add(
        self,
        ids: Sequence[str],
        vectors: np.ndarray,
        metadata: Sequence[Mapping[str, Any]] | None = None,
        *,
        normalize: bool = False,
    ) -> None:
        """Add new records. Everything is checked first, ids already in the namespace included, so a refused call
        writes nothing. A failure part-way (the service going away) leaves earlier batches written; rerunning with
        :meth:`upsert_all` finishes the job."""
        ids, rows = self._check_records(ids, vectors, metadata, normalize)
        check_ids(ids, self._present(ids))  # the same refusal, worded the same, as every backend's
        self._write(ids, rows, metadata, normalize, skip_present=False, progress=None)

    def upsert_all(
        self,
        ids: Sequence[str],
        vectors: np.ndarray,
        metadata: Sequence[Mapping[str, Any]] | None = None,
        *,
        progress: ProgressFn | None = None,
        normalize: bool = False,
    ) -> int:
        """Write every record that is not in the namespace yet; return how many were written.

        Resumable: each chunk of 1,000 ids is first looked up with ``fetch`` and only the missing ones are upserted,
        so a rerun after an interruption (on this machine or another one) continues where the last one stopped and
        a rerun after success writes nothing. The lookup costs read units only for records already there.
        ``progress(done, total, message)`` is called after each chunk.
        """
        ids, rows = self._check_records(ids, vectors, metadata, normalize)
        return self._write(ids, rows, metadata, normalize, skip_present=True, progress=progress)

    def query(self, vector: np.ndarray, top_k: int, exclude: Iterable[str] | None = None) -> list[Hit]:
        """The ``top_k`` records with the highest dot product with ``vector``, best first, skipping ``exclude``.

        One ``query`` request, no writes. Up to ``filter_limit`` excluded ids travel in a ``$nin`` filter on
        :data:`ID_FIELD`, which is exact; the rest are handled by asking for that many more results and dropping
        them here, which stays exact while ``top_k`` plus the overflow fits Pinecone's ``top_k`` cap of 10,000.
        Past that cap fewer than ``top_k`` hits may come back, and a warning is logged. ``top_k`` itself is capped at
        10,000.
        """
        query = check_query(vector, self._dim, top_k)
        if top_k == 0:
            return []
        excluded = {i for i in exclude if isinstance(i, str)} if exclude else set()
        in_filter = sorted(excluded)[: self._filter_limit]
        overflow = len(excluded) - len(in_filter)
        ask = min(int(top_k) + overflow, MAX_TOP_K)
        where = {ID_FIELD: {"$nin": in_filter}} if in_filter else None
        response = self._call(
            f"query namespace {self._namespace!r}",
            lambda: self._index.query(
                vector=query.tolist(),
                top_k=ask,
                namespace=self._namespace,
                filter=where,
                include_values=False,
                include_metadata=False,
            ),
        )
        matches = response.matches
        hits = [Hit(m.id, float(m.score)) for m in matches if m.id not in excluded][:top_k]
        if len(hits) < min(top_k, MAX_TOP_K) and len(matches) == ask and overflow:
            log.warning(
                "query: %d excluded ids exceed the filter limit (%d) and over-fetching is capped at top_k=%d, "
                "so only %d of %d hits came back",
                len(excluded),
                self._filter_limit,
                MAX_TOP_K,
                len(hits),
                top_k,
            )
        return hits

    def fetch(self, ids: Sequence[str]) -> np.ndarray:
        """Stored vectors for ``ids`` as (n, d) float32, in the order asked; ``KeyError`` names any missing."""
        ids = list(ids)
        found: dict[str, list[float]] = {}
        wanted = [i for i in dict.fromkeys(ids) if _is_storable_id(i)]
        for batch in _id_batches(wanted):
            response = self._call(
                f"fetch {len(batch)} records from namespace {self._namespace!r}",
                lambda batch=batch: self._index.fetch(ids=batch, namespace=self._namespace),
            )
            found.update((id_, record.values) for id_, record in response.vectors.items())
        missing = [i for i in ids if i not in found]
        if missing:
            raise KeyError(
                f"{len(missing)} id(s) not in Pinecone namespace {self._namespace!r}: "
                f"{missing[:5]}{' ...' if len(missing) > 5 else ''}"
            )
        return np.asarray([found[i] for i in ids], dtype=np.float32).reshape(len(ids), self._dim)

    def list_ids(self) -> list[str]:
        """Every id in the namespace, once each: the ids this object wrote or found present (``add``,
        ``upsert_all``) when they are as many as the namespace's count (one ``describe_index_stats`` call), else
        listed from Pinecone in at most ``pinecone_ids.MAX_LIST_CALLS`` calls (serverless indexes only). Past that
        bound, or when Pinecone refuses, :class:`~trainer.index.IndexUnavailable` says why: never a partial list,
        since a list comes in id order and its first pages are no sample of the collection."""
        count = len(self)
        known = list(dict.fromkeys(self._known))
        if known and len(known) >= count:  # >=: Pinecone's count lags writes by a few seconds
            return known
        listed = list_namespace(self._index, self._call, self._namespace, count)
        self._known = listed
        return list(listed)

    def __repr__(self) -> str:
        return f"PineconeIndex(namespace={self._namespace!r}, dim={self._dim})"

    # ----------------------------------------------------------------------------------------------- writing
    def _check_records(
        self, ids: Sequence[str], vectors: np.ndarray, metadata: Sequence[Mapping[str, Any]] | None, normalize: bool
    ) -> tuple[list[str], np.ndarray]:
        """Check everything a write needs, chunk by chunk so that a memory-mapped array is never copied whole."""
        ids = check_ids(ids)
        for id_ in ids:
            _check_id(id_)
        rows = np.asarray(vectors)
        if rows.ndim != 2 or rows.shape[0] != len(ids) or len(ids) <= _CHUNK_ROWS:
            check_norms(check_vectors(rows, self._dim, len(ids)), normalize=normalize)
        else:
            for start in range(0, len(ids), _CHUNK_ROWS):
                try:
                    check_norms(check_vectors(rows[start : start + _CHUNK_ROWS], self._dim), normalize=normalize)
                except ValueError as err:
                    raise ValueError(f"in rows {start}..{start + _CHUNK_ROWS - 1}: {err}") from None
        if metadata is not None:
            if len(metadata) != len(ids):
                raise ValueError(f"got {len(metadata)} metadata records for {len(ids)} ids")
            for id_, meta in zip(ids, metadata, strict=True):
                _record_metadata(id_, meta)
        return ids, rows

    def _write(
        self,
        ids: list[str],
        rows: np.ndarray,
        metadata: Sequence[Mapping[str, Any]] | None,
        normalize: bool,
        *,
        skip_present: bool,
        progress: ProgressFn | None,
    ) -> int:
        written = skipped = 0
        budget = MAX_UPSERT_BYTES - len(_json({"vectors": [], "namespace": self._namespace}))
        for start in range(0, len(ids), _CHUNK_ROWS):
            chunk_ids = ids[start : start + _CHUNK_ROWS]
            chunk = check_norms(check_vectors(rows[start : start + _CHUNK_ROWS], self._dim), normalize=normalize)
            present = self._present(chunk_ids) if skip_present else set()
            records = [
                {
                    "id": id_,
                    "values": row.tolist(),
                    "metadata": _record_metadata(id_, metadata[start + i] if metadata is not None else {}),
                }
                for i, (id_, row) in enumerate(zip(chunk_ids, chunk, strict=True))
                if id_ not in present
            ]
            for batch in _batches(records, max_count=MAX_UPSERT_RECORDS, max_bytes=budget, size=_record_bytes):
                self._call(
                    f"upsert {len(batch)} records into namespace {self._namespace!r} "
                    f"({written:,} of {len(ids):,} written so far)",
                    lambda batch=batch: self._index.upsert(vectors=batch, namespace=self._namespace),
                )
                written += len(batch)
            skipped += len(present)
            self._known.extend(chunk_ids)  # every id of the chunk is in the namespace now, written or found there
            if progress is not None:
                done = start + len(chunk_ids)
                progress(done, len(ids), f"{written:,} upserted, {skipped:,} already in {self._namespace}")
        return written

    def _present(self, ids: Sequence[str]) -> set[str]:
        present: set[str] = set()
        for batch in _id_batches(list(ids)):
            response = self._call(
                f"look up {len(batch)} ids in namespace {self._namespace!r}",
                lambda batch=batch: self._index.fetch(ids=batch, namespace=self._namespace),
            )
            present.update(response.vectors)
        return present


def namespace_for(model_id: str, dataset: str, split: str, *, config: str | None = None) -> str:
    """A Pinecone-safe namespace for one (model, collection): readable, stable, and distinct for distinct inputs.

    ``namespace_for("openai/clip-vit-base-patch32", "frgfm/imagenette", "train", config="320px")`` gives
    ``"openai-clip-vit-base-patch32.frgfm-imagenette.320px.train.<8 hex>"``. The hash covers the exact strings, so
    ids that slug alike ("a/b" and "a-b") still get different namespaces. A local model path is part of the name,
    so index from the same path every replica uses.
    """
    parts = [model_id, dataset, *([config] if config else []), split]
    for part in parts:
        if not isinstance(part, str) or not part:
            raise ValueError(f"namespace parts must be non-empty strings; got {part!r} in {parts}")
    digest = hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:8]
    return ".".join([*(_slug(p) for p in parts), digest])


# --------------------------------------------------------------------------------------------------- connecting
def _create_index(client: Any, call: Caller, settings: Settings, dim: int) -> None:
    from pinecone import ServerlessSpec

    name, cloud, region = settings.pinecone_index, settings.pinecone_cloud, settings.pinecone_region
    log.info("creating Pinecone index %r (dimension %d, %s, %s/%s)", name, dim, METRIC, cloud, region)
    call(
        f"create Pinecone index {name!r} in {cloud}/{region}",
        lambda: client.create_index(
            name=name,
            dimension=dim,
            metric=METRIC,
            spec=ServerlessSpec(cloud=cloud, region=region),
            timeout=_CREATE_TIMEOUT_S,
        ),
        tolerate={409},  # another replica created it between our look-up and our create: use theirs
    )


def _check_description(description: Any, name: str, dim: int) -> None:
    # getattr: SDK 10 raises AttributeError for indexes with no single dense field (document indexes).
    have_dim, have_metric = getattr(description, "dimension", None), getattr(description, "metric", None)
    if have_dim != dim or have_metric != METRIC:
        raise ValueError(
            f"Pinecone index {name!r} has dimension {have_dim} and metric {have_metric}, but this model needs "
            f"dimension {dim} and metric {METRIC}. Set CT_PINECONE_INDEX to another name (a missing index is "
            "created on first use) or delete this index."
        )
    status = getattr(description, "status", None)
    if not description.host or (status is not None and not status.ready):
        raise IndexUnavailable(f"Pinecone index {name!r} is still initialising; try again in a minute")


# --------------------------------------------------------------------------------------------------- records
def _check_target(dim: int, namespace: str) -> None:
    if not isinstance(dim, int) or isinstance(dim, bool) or dim <= 0:
        raise ValueError(f"dim must be a positive integer; got {dim!r}")
    if not isinstance(namespace, str) or not namespace or not namespace.isascii() or "\x00" in namespace:
        raise ValueError(f"namespace must be a non-empty ASCII string without NUL; got {namespace!r}")
    if len(namespace) > 512:
        raise ValueError(f"namespace must be at most 512 characters; got {len(namespace)}")


def _is_storable_id(id_: object) -> bool:
    return isinstance(id_, str) and 0 < len(id_) <= MAX_ID_LENGTH and id_.isascii() and "\x00" not in id_


def _check_id(id_: str) -> None:
    if not _is_storable_id(id_):
        raise ValueError(
            f"Pinecone ids must be ASCII, without NUL, at most {MAX_ID_LENGTH} characters; got {id_[:80]!r}"
            f"{f' ({len(id_)} characters)' if len(id_) > 80 else ''}"
        )


def _record_metadata(id_: str, meta: Mapping[str, Any]) -> dict[str, Any]:
    """The metadata stored with ``id_``: the caller's, checked against Pinecone's rules, plus the id under ID_FIELD."""
    if not isinstance(meta, Mapping):
        raise ValueError(f"metadata for id {id_!r} must be a mapping; got {type(meta).__name__}")
    if meta.get(ID_FIELD, id_) != id_:
        raise ValueError(f"metadata key {ID_FIELD!r} is reserved: it holds the record id, which `exclude` filters on")
    for key, value in meta.items():
        scalar = isinstance(value, (str, bool, int)) or (isinstance(value, float) and math.isfinite(value))
        strings = isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)
        if not isinstance(key, str) or not (scalar or strings):
            raise ValueError(
                f"metadata for id {id_!r}: {key!r} holds {value!r:.40}, a {type(value).__name__}; Pinecone stores "
                "only strings, finite numbers, booleans and lists of strings"
            )
    record = {**meta, ID_FIELD: id_}
    size = len(_json(record))
    if size > MAX_METADATA_BYTES:
        raise ValueError(
            f"metadata for id {id_!r} is {size:,} bytes of JSON; Pinecone keeps at most {MAX_METADATA_BYTES:,} a "
            "record. Keep large fields (captions, thumbnails) out of the index and look them up by id."
        )
    return record


def _json(obj: Any) -> bytes:
    """``obj`` encoded exactly as the SDK encodes a request body, so that batches can be filled to the limit.

    The SDK uses orjson, not the json module: it writes numbers between 1e-5 and 1e-4 one byte longer than Python
    does, which adds up to a few KB in a 2 MB request of CLIP vectors.
    """
    import orjson  # installed with the pinecone SDK, the only caller of this module's network code

    return orjson.dumps(obj)


def _record_bytes(record: Mapping[str, Any]) -> int:
    return len(_json(record)) + 1  # the comma between records


def _batches(items: Sequence[T], *, max_count: int, max_bytes: int, size: Callable[[T], int]) -> Iterator[list[T]]:
    """Consecutive runs of ``items`` with at most ``max_count`` items and ``max_bytes`` of ``size`` each."""
    batch: list[T] = []
    used = 0
    for item in items:
        n = size(item)
        if n > max_bytes:
            raise ValueError(f"one record is {n:,} bytes, over the {max_bytes:,} a Pinecone request can carry")
        if batch and (len(batch) == max_count or used + n > max_bytes):
            yield batch
            batch, used = [], 0
        batch.append(item)
        used += n
    if batch:
        yield batch


def _id_batches(ids: Sequence[str]) -> Iterator[list[str]]:
    return _batches(
        ids, max_count=MAX_FETCH_IDS, max_bytes=FETCH_URL_BYTES, size=lambda i: len(quote(i, safe="")) + 5
    )  # "ids=...&"


def _slug(text: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[-48:].lstrip("-") or "x"  # the tail of a long path or id is the part that tells them apart
