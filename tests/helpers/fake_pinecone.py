"""An in-memory double of the Pinecone SDK (10.x): the ``Pinecone`` client's index calls and the data-plane ``Index``.

It answers with the SDK's own response models and raises the SDK's own exception classes, built with the arguments
``pinecone._internal.http_client._raise_for_status`` gives them, and it refuses what Pinecone refuses
(docs.pinecone.io, "Operation limits"; "MB"/"KB" read as 10**6/10**3 bytes, the stricter reading):

- upsert: more than 1,000 records -> 400 ``ApiError``; a body over 2 MB as the SDK encodes it (orjson) -> 413
  ``PayloadTooLargeError``; a vector of the wrong dimension, an all-zero vector, metadata over 40 KB or of a type
  Pinecone cannot store -> 400;
- query: ``top_k`` outside 1..10,000 -> ``PineconeValueError`` (the SDK checks it before sending); a vector of the
  wrong dimension, an unknown filter operator, ``$in``/``$nin`` over 10,000 values -> 400;
- fetch: no ids -> ``PineconeValueError``; more than 1,000 -> 400;
- list_paginated: ``limit`` outside 1..100 or a bad prefix -> ``PineconeValueError`` (the SDK checks before sending);
  ids in sorted order (bitwise "C" collation), a page of ``limit`` (default 100) with an opaque ``pagination.next``
  while more remain, none on the last page; a namespace nothing was written to lists nothing;
- delete_namespace: a namespace nothing was ever written to -> 404 ``NotFoundError``.

Scores are float32 dot products, best first; namespaces are isolated; upserts overwrite. Every request is logged in
``store.requests`` (shared by every ``Index`` object on one index, so a reopened index sees the same log), and
``fail(op, status, times, after)`` makes the next calls to ``op`` fail the way Pinecone fails.

``connect`` opens a ``PineconeIndex`` over the double: the one way the tests build one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import numpy as np
import orjson  # the SDK's own JSON encoder, so request sizes are measured as they would go on the wire
from pinecone import ServerlessSpec
from pinecone.errors.exceptions import (
    ApiError,
    ConflictError,
    ForbiddenError,
    NotFoundError,
    PayloadTooLargeError,
    PineconeTimeoutError,
    PineconeValueError,
    RateLimitError,
    ServiceError,
    UnauthorizedError,
)
from pinecone.models.indexes.deployment import ManagedDeployment
from pinecone.models.indexes.index import IndexModel, IndexStatus
from pinecone.models.indexes.list import IndexList
from pinecone.models.indexes.schema import DenseVectorField, IndexSchema
from pinecone.models.vectors.responses import (
    DescribeIndexStatsResponse,
    FetchResponse,
    ListItem,
    ListResponse,
    NamespaceSummary,
    Pagination,
    QueryResponse,
    UpsertResponse,
)
from pinecone.models.vectors.vector import ScoredVector, Vector

from tests.helpers.index_contract import DIM
from trainer.config import Settings
from trainer.index.pinecone import PineconeIndex, namespace_for

MAX_UPSERT_RECORDS = 1_000
MAX_UPSERT_BYTES = 2_000_000
MAX_METADATA_BYTES = 40_000
MAX_TOP_K = 10_000
MAX_FETCH_IDS = 1_000
MAX_LIST_LIMIT = 100  # ids a list page holds at most, and by default (the SDK's LIST_LIMIT_MAX)
MAX_FILTER_VALUES = 10_000

# What ``connect`` opens by default: an index the double creates on first use, and a namespace as the app names one.
SETTINGS = Settings(backend="pinecone", pinecone_index="ct-test", pinecone_cloud="gcp", pinecone_region="europe-west4")
NAMESPACE = namespace_for("test/tiny-clip", "test/shapes", "train")

_ERRORS = {
    401: UnauthorizedError,
    403: ForbiddenError,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
    429: RateLimitError,
}


def api_error(status: int, message: str, *, retry_after: float | None = None) -> ApiError:
    """The exception the SDK raises for an HTTP ``status`` answer, built as ``_raise_for_status`` builds it."""
    cls = _ERRORS.get(status, ServiceError if 500 <= status <= 599 else ApiError)
    body = {"error": {"code": str(status), "message": message}}
    kwargs: dict[str, Any] = dict(
        message=message,
        status_code=status,
        body=body,
        reason=None,
        headers={},
        error_code=str(status),
        request_id="req-fake",
    )
    if cls is RateLimitError:
        kwargs["retry_after"] = retry_after
    return cls(**kwargs)


@dataclass
class Request:
    op: str
    namespace: str
    detail: dict[str, Any]


@dataclass
class _Fault:
    op: str
    status: int | None  # None: a timeout
    times: int
    after: int  # calls to let through first
    message: str
    retry_after: float | None


@dataclass
class _Faults:
    pending: list[_Fault] = field(default_factory=list)

    def fail(
        self,
        op: str,
        status: int | None,
        times: int = 1,
        *,
        after: int = 0,
        message: str = "",
        retry_after: float | None = None,
    ) -> None:
        """The next ``times`` calls to ``op`` after ``after`` successful ones fail with ``status`` (None: timeout)."""
        self.pending.append(_Fault(op, status, times, after, message or f"fake {status}", retry_after))

    def check(self, op: str) -> None:
        for fault in self.pending:
            if fault.op != op or fault.times == 0:
                continue
            if fault.after:
                fault.after -= 1
                return
            fault.times -= 1
            if fault.status is None:
                raise PineconeTimeoutError("timed out; request to https://fake.svc.pinecone.io")
            raise api_error(fault.status, fault.message, retry_after=fault.retry_after)


class IndexStore:
    """Everything one Pinecone index holds, shared by every ``FakeIndex`` opened on it."""

    def __init__(self, name: str, dimension: int, metric: str, spec: ServerlessSpec | None) -> None:
        self.name, self.dimension, self.metric, self.spec = name, dimension, metric, spec
        self.host = f"https://{name}-fake0.svc.aped-4627-b74a.pinecone.io"
        self.namespaces: dict[str, dict[str, tuple[np.ndarray, dict[str, Any]]]] = {}
        self.requests: list[Request] = []
        self.faults = _Faults()

    def fail(self, op: str, status: int | None, times: int = 1, **kwargs: Any) -> None:
        self.faults.fail(op, status, times, **kwargs)

    def requests_of(self, op: str) -> list[Request]:
        return [r for r in self.requests if r.op == op]

    def model(self) -> IndexModel:
        spec = self.spec or ServerlessSpec(cloud="aws", region="us-east-1")
        return IndexModel(
            name=self.name,
            status=IndexStatus(ready=True, state="Ready"),
            # "_values" is the field name SDK 10 gives an index created with dimension= and metric=.
            schema=IndexSchema(fields={"_values": DenseVectorField(dimension=self.dimension, metric=self.metric)}),
            deployment=ManagedDeployment(cloud=spec.cloud, region=spec.region),
            deletion_protection="disabled",
            host=self.host,
        )


class FakeIndex:
    """The data-plane ``Index``: keyword-only calls, as in the SDK."""

    def __init__(self, store: IndexStore) -> None:
        self._store = store

    @property
    def host(self) -> str:
        return self._store.host

    def upsert(self, *, vectors: Sequence[Mapping[str, Any]], namespace: str = "", **_: Any) -> UpsertResponse:
        store = self._store
        body = {"vectors": [dict(v) for v in vectors], "namespace": namespace}
        size = len(orjson.dumps(body))
        store.requests.append(Request("upsert", namespace, {"records": len(vectors), "bytes": size}))
        store.faults.check("upsert")
        if len(vectors) > MAX_UPSERT_RECORDS:
            raise api_error(400, f"Batch size exceeds {MAX_UPSERT_RECORDS}: got {len(vectors)} vectors")
        if size > MAX_UPSERT_BYTES:
            raise api_error(413, f"Request size {size} exceeds the maximum of {MAX_UPSERT_BYTES} bytes")
        staged = {}
        for record in vectors:
            id_, values, metadata = record["id"], record["values"], record.get("metadata") or {}
            if not (isinstance(id_, str) and 0 < len(id_) <= 512 and id_.isascii()):
                raise api_error(400, f"Invalid vector id {id_!r}")
            if len(values) != store.dimension:
                raise api_error(
                    400, f"Vector dimension {len(values)} does not match the dimension of the index {store.dimension}"
                )
            if not any(values):
                raise api_error(400, "Dense vectors must contain at least one non-zero value")
            _check_metadata(id_, metadata)
            staged[id_] = (np.asarray(values, dtype=np.float32), dict(metadata))
        store.namespaces.setdefault(namespace, {}).update(staged)
        return UpsertResponse(upserted_count=len(staged))

    def query(
        self,
        *,
        top_k: int,
        vector: Sequence[float] | None = None,
        namespace: str = "",
        filter: Mapping[str, Any] | None = None,
        include_values: bool = False,
        include_metadata: bool = False,
        **_: Any,
    ) -> QueryResponse:
        store = self._store
        if not 1 <= top_k <= MAX_TOP_K:  # the SDK refuses before sending
            raise PineconeValueError(f"top_k must be between 1 and {MAX_TOP_K}, got {top_k}")
        detail = {"top_k": top_k, "filter": filter, "include_values": include_values}
        store.requests.append(Request("query", namespace, detail))
        store.faults.check("query")
        if vector is None or len(vector) != store.dimension:
            raise api_error(
                400, f"Vector dimension {len(vector or [])} does not match the dimension of the index {store.dimension}"
            )
        if filter is not None:
            _check_filter(filter)
        records = store.namespaces.get(namespace, {})
        kept = [(id_, v, m) for id_, (v, m) in records.items() if filter is None or _matches(m, filter)]
        if not kept:
            return QueryResponse(matches=[], namespace=namespace)
        scores = np.stack([v for _, v, _ in kept]) @ np.asarray(vector, dtype=np.float32)
        order = np.argsort(-scores, kind="stable")[:top_k]
        matches = [
            ScoredVector(
                id=kept[i][0],
                score=float(scores[i]),
                values=kept[i][1].tolist() if include_values else [],
                metadata=dict(kept[i][2]) if include_metadata else None,
            )
            for i in order
        ]
        return QueryResponse(matches=matches, namespace=namespace)

    def fetch(self, *, ids: Sequence[str], namespace: str = "", **_: Any) -> FetchResponse:
        store = self._store
        if not ids:
            raise PineconeValueError("ids must be a non-empty list")
        url_bytes = len(urlencode([("ids", i) for i in ids]))
        store.requests.append(Request("fetch", namespace, {"ids": len(ids), "url_bytes": url_bytes}))
        store.faults.check("fetch")
        if len(ids) > MAX_FETCH_IDS:
            raise api_error(400, f"Cannot fetch more than {MAX_FETCH_IDS} ids, got {len(ids)}")
        records = store.namespaces.get(namespace, {})
        found = {
            i: Vector(id=i, values=records[i][0].tolist(), metadata=dict(records[i][1])) for i in ids if i in records
        }
        return FetchResponse(vectors=found, namespace=namespace)

    def list_paginated(
        self,
        *,
        prefix: str | None = None,
        limit: int | None = None,
        pagination_token: str | None = None,
        namespace: str = "",
        timeout: float | None = None,
    ) -> ListResponse:
        store = self._store
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIST_LIMIT
        ):
            raise PineconeValueError(f"limit must be between 1 and {MAX_LIST_LIMIT}, got {limit}")
        if prefix is not None and (not isinstance(prefix, str) or not prefix.isascii() or "\x00" in prefix):
            raise PineconeValueError(f"prefix must be an ASCII string without NUL, got {prefix!r}")
        detail = {"limit": limit, "prefix": prefix, "token": pagination_token}
        store.requests.append(Request("list", namespace, detail))
        store.faults.check("list")
        # The token is opaque to callers; here it is the last id of the page before, behind a marker.
        after = pagination_token.removeprefix("fake-next:") if pagination_token else None
        if pagination_token is not None and not pagination_token.startswith("fake-next:"):
            raise api_error(400, "Invalid pagination token")
        ids = sorted(
            i
            for i in store.namespaces.get(namespace, {})
            if i.startswith(prefix or "") and (after is None or i > after)
        )
        page = ids[: limit or MAX_LIST_LIMIT]
        more = len(ids) > len(page)
        return ListResponse(
            vectors=[ListItem(id=i) for i in page],
            pagination=Pagination(next=f"fake-next:{page[-1]}") if more else None,
            namespace=namespace,
        )

    def delete_namespace(self, *, name: str, **_: Any) -> None:
        store = self._store
        store.requests.append(Request("delete_namespace", name, {}))
        store.faults.check("delete_namespace")
        if not store.namespaces.get(name):  # Pinecone makes a namespace on its first write, and has none before
            raise api_error(404, f"Namespace {name} not found")
        del store.namespaces[name]

    def describe_index_stats(self, **_: Any) -> DescribeIndexStatsResponse:
        store = self._store
        store.requests.append(Request("describe_index_stats", "", {}))
        store.faults.check("describe_index_stats")
        counts = {(ns or "__default__"): len(r) for ns, r in store.namespaces.items() if r}
        return DescribeIndexStatsResponse(
            namespaces={ns: NamespaceSummary(vector_count=n) for ns, n in counts.items()},
            dimension=store.dimension,
            total_vector_count=sum(counts.values()),
            metric=store.metric,
        )


class FakePinecone:
    """The ``Pinecone`` client's index calls. ``valid_key=False`` answers every call 401, as a wrong key does."""

    def __init__(self, *, valid_key: bool = True) -> None:
        self.valid_key = valid_key
        self.stores: dict[str, IndexStore] = {}
        self.calls: list[str] = []
        self.faults = _Faults()

    def fail(self, op: str, status: int | None, times: int = 1, **kwargs: Any) -> None:
        self.faults.fail(op, status, times, **kwargs)

    def _enter(self, op: str) -> None:
        self.calls.append(op)
        if not self.valid_key:
            raise api_error(401, "Invalid API Key")
        self.faults.check(op)

    def list_indexes(self) -> IndexList:
        self._enter("list_indexes")
        return IndexList([s.model() for s in self.stores.values()])

    def has_index(self, name: str) -> bool:
        self._enter("has_index")
        return name in self.stores

    def create_index(
        self,
        name: str,
        spec: ServerlessSpec | None = None,
        dimension: int | None = None,
        metric: str | None = "cosine",
        timeout: int | None = None,
        **_: Any,
    ) -> IndexModel:
        self._enter("create_index")
        if name in self.stores:
            raise api_error(409, f"Resource {name} already exists")
        if not dimension or dimension < 1 or metric not in {"cosine", "euclidean", "dotproduct"}:
            raise api_error(400, f"invalid dimension {dimension} or metric {metric}")
        self.stores[name] = IndexStore(name, dimension, metric, spec)
        return self.stores[name].model()

    def describe_index(self, name: str) -> IndexModel:
        self._enter("describe_index")
        if name not in self.stores:
            raise api_error(404, f"Resource {name} not found")
        return self.stores[name].model()

    def delete_index(self, name: str, timeout: int | None = None) -> None:
        self._enter("delete_index")
        if self.stores.pop(name, None) is None:
            raise api_error(404, f"Resource {name} not found")

    def Index(self, name: str = "", host: str = "", **_: Any) -> FakeIndex:  # capitalised as in the SDK
        self._enter("Index")
        for store in self.stores.values():
            if store.host == host or (not host and store.name == name):
                return FakeIndex(store)
        raise api_error(404, f"no index at {host or name}")

    def store(self, name: str) -> IndexStore:
        return self.stores[name]


def _check_metadata(id_: str, metadata: Mapping[str, Any]) -> None:
    for key, value in metadata.items():
        ok = isinstance(value, (str, bool, int, float)) or (
            isinstance(value, list) and all(isinstance(v, str) for v in value)
        )
        if not ok:
            raise api_error(400, f"Metadata value for field {key!r} of vector {id_!r} has an unsupported type")
    size = len(orjson.dumps(dict(metadata)))
    if size > MAX_METADATA_BYTES:
        raise api_error(400, f"Metadata size is {size} bytes, which exceeds the limit of {MAX_METADATA_BYTES} bytes")


_OPERATORS = {"$eq", "$ne", "$in", "$nin"}


def _check_filter(flt: Mapping[str, Any]) -> None:
    for key, cond in flt.items():
        if key in ("$and", "$or"):
            for sub in cond:
                _check_filter(sub)
            continue
        if key.startswith("$"):
            raise api_error(400, f"unsupported top-level filter operator {key}")
        for op, arg in cond.items() if isinstance(cond, Mapping) else [("$eq", cond)]:
            if op not in _OPERATORS:
                raise api_error(400, f"unsupported filter operator {op}")
            if op in ("$in", "$nin") and (not isinstance(arg, list) or len(arg) > MAX_FILTER_VALUES):
                raise api_error(400, f"{op} takes a list of at most {MAX_FILTER_VALUES} values")


def _matches(metadata: Mapping[str, Any], flt: Mapping[str, Any]) -> bool:
    for key, cond in flt.items():
        if key == "$and":
            if not all(_matches(metadata, sub) for sub in cond):
                return False
            continue
        if key == "$or":
            if not any(_matches(metadata, sub) for sub in cond):
                return False
            continue
        value = metadata.get(key)
        values = value if isinstance(value, list) else ([] if value is None else [value])
        for op, arg in cond.items() if isinstance(cond, Mapping) else [("$eq", cond)]:
            if not _holds(op, arg, values):
                return False
    return True


def _holds(op: str, arg: Any, values: list[Any]) -> bool:
    """One operator on a field's values (a list field matches when any element does; an absent field has none)."""
    if op == "$eq":
        return arg in values
    if op == "$ne":
        return arg not in values
    members = set(arg)
    return any(v in members for v in values) == (op == "$in")


def connect(client: FakePinecone, dim: int = DIM, namespace: str = NAMESPACE, **options: Any) -> PineconeIndex:
    """``PineconeIndex.connect`` over ``client`` (``client.store(SETTINGS.pinecone_index)`` holds its records), with
    ``options`` passed on; its retries never wait for real unless a ``sleep`` is given."""
    options.setdefault("sleep", lambda seconds: None)
    return PineconeIndex.connect(SETTINGS, dim, namespace, client=client, **options)
