"""The Pinecone double refuses what Pinecone refuses, with the SDK's exception types: a lenient double would let the
backend's batching and validation go untested."""

from __future__ import annotations

import numpy as np
import pytest
from pinecone.errors.exceptions import (
    ApiError,
    NotFoundError,
    PayloadTooLargeError,
    PineconeValueError,
    RateLimitError,
    ServiceError,
    UnauthorizedError,
)

from tests.helpers.fake_pinecone import FakePinecone

DIM = 4


@pytest.fixture
def index():
    client = FakePinecone()
    client.create_index(name="ix", dimension=DIM, metric="dotproduct")
    return client.Index(host=client.describe_index("ix").host)


def record(i: int, dim: int = DIM, **metadata) -> dict:
    return {"id": f"r{i}", "values": [1.0] + [0.0] * (dim - 1), "metadata": metadata}


def test_more_than_1000_records_in_one_upsert_is_a_400(index):
    with pytest.raises(ApiError) as err:
        index.upsert(vectors=[record(i) for i in range(1001)], namespace="n")
    assert err.value.status_code == 400
    index.upsert(vectors=[record(i) for i in range(1000)], namespace="n")


def test_an_upsert_body_over_2mb_is_a_413():
    client = FakePinecone()
    client.create_index(name="wide", dimension=20_000, metric="dotproduct")
    wide = client.Index(host=client.describe_index("wide").host)
    values = np.full(20_000, 0.1234567, dtype=np.float64).tolist()
    with pytest.raises(PayloadTooLargeError):
        wide.upsert(vectors=[{"id": f"w{i}", "values": values} for i in range(12)], namespace="n")  # ~2.4 MB


@pytest.mark.parametrize(
    "bad",
    [
        {"id": "a", "values": [1.0, 0.0]},  # wrong dimension
        {"id": "a", "values": [0.0] * DIM},  # all zero
        record(0, caption="x" * 40_001),  # metadata over 40 KB
        record(0, nested={"a": 1}),  # a type Pinecone cannot store
        {"id": "ä", "values": [1.0] * DIM},  # not ASCII
    ],
)
def test_records_pinecone_refuses_are_a_400(index, bad):
    with pytest.raises(ApiError) as err:
        index.upsert(vectors=[bad], namespace="n")
    assert err.value.status_code == 400


@pytest.mark.parametrize("top_k", [0, 10_001])
def test_top_k_outside_1_to_10000_is_refused_as_the_sdk_does(index, top_k):
    with pytest.raises(PineconeValueError):
        index.query(vector=[1.0] * DIM, top_k=top_k, namespace="n")


def test_fetch_of_more_than_1000_ids_is_a_400(index):
    with pytest.raises(ApiError) as err:
        index.fetch(ids=[f"r{i}" for i in range(1001)], namespace="n")
    assert err.value.status_code == 400


def test_filters_scores_and_namespaces_behave_like_pinecone(index):
    index.upsert(
        vectors=[
            {"id": "a", "values": [1.0, 0, 0, 0], "metadata": {"cid": "a", "tags": ["x", "y"]}},
            {"id": "b", "values": [0.5, 0.5, 0, 0], "metadata": {"cid": "b"}},
            {"id": "c", "values": [0, 1.0, 0, 0]},
        ],
        namespace="n",
    )
    index.upsert(vectors=[{"id": "z", "values": [9.0, 0, 0, 0]}], namespace="other")
    query = [2.0, 1.0, 0, 0]

    def ids(**kwargs):
        return [(m.id, m.score) for m in index.query(vector=query, top_k=10, namespace="n", **kwargs).matches]

    assert ids() == [("a", 2.0), ("b", 1.5), ("c", 1.0)]
    assert [i for i, _ in ids(filter={"cid": {"$nin": ["a"]}})] == ["b", "c"]  # no cid at all: not excluded
    assert [i for i, _ in ids(filter={"cid": {"$in": ["a", "c"]}})] == ["a"]
    assert [i for i, _ in ids(filter={"tags": {"$eq": "y"}})] == ["a"]
    with pytest.raises(ApiError):
        ids(filter={"cid": {"$regex": "a"}})
    assert index.describe_index_stats().namespaces["other"].vector_count == 1


def test_faults_are_raised_as_the_sdk_raises_them(index):
    client = FakePinecone(valid_key=False)
    with pytest.raises(UnauthorizedError):
        client.has_index("ix")
    with pytest.raises(NotFoundError):
        FakePinecone().describe_index("missing")
    index._store.fail("query", 429, retry_after=3.0)
    index._store.fail("query", 503, after=1)
    with pytest.raises(RateLimitError) as err:
        index.query(vector=[1.0] * DIM, top_k=1, namespace="n")
    assert err.value.retry_after == 3.0
    index.query(vector=[1.0] * DIM, top_k=1, namespace="n")  # `after=1` lets one through
    with pytest.raises(ServiceError) as err:
        index.query(vector=[1.0] * DIM, top_k=1, namespace="n")
    assert err.value.status_code == 503


def test_list_pages_ids_in_sorted_order_100_at_most_as_the_sdk_and_pinecone_do(index):
    index.upsert(vectors=[record(i) for i in (5, 30, 12, 250, 7)], namespace="n")
    first = index.list_paginated(namespace="n", limit=2)
    assert [v.id for v in first.vectors] == ["r12", "r250"]  # sorted as bytes: "r12" < "r250" < "r30" < "r5"
    second = index.list_paginated(namespace="n", limit=2, pagination_token=first.pagination.next)
    last = index.list_paginated(namespace="n", limit=2, pagination_token=second.pagination.next)
    assert [v.id for v in second.vectors] + [v.id for v in last.vectors] == ["r30", "r5", "r7"]
    assert last.pagination is None  # the last page carries no token
    assert [v.id for v in index.list_paginated(namespace="n", prefix="r2").vectors] == ["r250"]
    assert index.list_paginated(namespace="empty").vectors == []
    for limit in (0, 101):
        with pytest.raises(PineconeValueError):  # the SDK refuses before sending
            index.list_paginated(namespace="n", limit=limit)
