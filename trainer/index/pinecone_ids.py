"""Which ids a Pinecone namespace holds, listed in a bounded number of calls, or a clear refusal.

A uniform sample of the collection (trainer/collection_sample.py) draws from every id of the namespace. The app and
the ``index`` command know them already (``PineconeIndex`` keeps the ids it wrote or found present); an index opened
on a namespace some other process filled does not, and lists them here: ``list_paginated``, 100 ids a call, serverless
indexes only (docs.pinecone.io, "List record IDs"; the SDK's ``LIST_LIMIT_MAX``). That is 100 calls for 10,000 ids and
10,000 for a million, so the listing stops at ``MAX_LIST_CALLS`` and says so instead. It never returns part of a
namespace: Pinecone lists ids in sorted order, so the first pages are whatever sorts first (one class of a collection
whose ids name their class), no sample of it.
"""

from __future__ import annotations

import math
from typing import Any

from . import IndexUnavailable
from .pinecone_calls import Caller

__all__ = ["LIST_PAGE", "MAX_LIST_CALLS", "list_namespace"]

LIST_PAGE = 100  # ids a list call returns at most (the SDK refuses a larger ``limit``)
# Calls one listing may take: 10,000 ids, once per process for every session (collection_sample.py keeps the draw).
MAX_LIST_CALLS = 100


def list_namespace(index: Any, call: Caller, namespace: str, count: int) -> list[str]:
    """Every id in ``namespace`` of the SDK's data-plane ``index``, once each, through ``call`` (the retry policy).

    ``count``: the records the namespace holds by ``describe_index_stats``. Refused with IndexUnavailable before any
    call when listing them would take more than ``MAX_LIST_CALLS`` calls, and after that many when the namespace
    turns out larger (Pinecone's count lags writes)."""
    if count > MAX_LIST_CALLS * LIST_PAGE:
        raise IndexUnavailable(_too_many(namespace, f"holds {count:,} records", math.ceil(count / LIST_PAGE)))
    ids: dict[str, None] = {}
    token: str | None = None
    for page in range(1, MAX_LIST_CALLS + 1):
        response = call(
            f"list the ids of namespace {namespace!r} (page {page})",
            lambda token=token: index.list_paginated(namespace=namespace, limit=LIST_PAGE, pagination_token=token),
        )
        ids.update((item.id, None) for item in response.vectors if item.id)
        token = response.pagination.next if response.pagination is not None else None
        if not token:
            return list(ids)
    raise IndexUnavailable(_too_many(namespace, f"holds more than {len(ids):,} records", f"more than {MAX_LIST_CALLS}"))


def _too_many(namespace: str, holds: str, calls: object) -> str:
    return (
        f"Pinecone namespace {namespace!r} {holds}: listing its ids for a sample of the collection takes {calls} "
        f"calls, over the {MAX_LIST_CALLS} allowed. Open it where its ids are known (the app, or the index command, "
        "which write the namespace) or use a local index."
    )
