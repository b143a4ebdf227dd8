"""PineconeIndex against a real Pinecone project: the checks the in-memory double cannot make (the real SDK, real
HTTP, real errors). Skipped unless ``PINECONE_API_KEY`` is set.

It works in a fresh namespace of ``CT_PINECONE_TEST_INDEX`` when that names an index of dimension 8 and metric
dotproduct, and otherwise creates a throwaway serverless index (``CT_PINECONE_CLOUD`` / ``CT_PINECONE_REGION``,
default aws / us-east-1), which takes up to a minute. Everything it made is deleted at the end. Cost: a few hundred
read and write units.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable

import numpy as np
import pytest

from tests.helpers.index_contract import DIM, brute_force, unit_rows
from trainer.config import Settings
from trainer.index import IndexUnavailable
from trainer.index.pinecone import PineconeIndex

pytestmark = pytest.mark.skipif(
    not os.environ.get("PINECONE_API_KEY"), reason="needs PINECONE_API_KEY for a real Pinecone project"
)

N = 50


def eventually(condition: Callable[[], bool], timeout: float = 90.0) -> None:
    """Pinecone is eventually consistent: writes show up in stats and queries after a few seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(2)


@pytest.fixture(scope="module")
def live():
    from pinecone import Pinecone

    client = Pinecone()
    name = os.environ.get("CT_PINECONE_TEST_INDEX") or f"ct-live-test-{secrets.token_hex(3)}"
    created = not client.has_index(name)
    settings = Settings.from_env(backend="pinecone", pinecone_index=name)
    namespace = f"live-test-{secrets.token_hex(4)}"
    try:
        index = PineconeIndex.connect(settings, DIM, namespace, client=client)
        ids, vectors = [f"live-{i:03d}" for i in range(N)], unit_rows(N)
        index.add(ids, vectors, [{"n": i} for i in range(N)])
        eventually(lambda: len(index) == N)
        yield settings, index, ids, vectors
    finally:
        if not client.has_index(name):
            pass  # creating it failed: nothing to clean up
        elif created:
            client.delete_index(name, timeout=-1)
        else:
            client.Index(host=client.describe_index(name).host).delete_namespace(name=namespace)


def test_query_ranks_by_dot_product_like_brute_force(live):
    _, index, ids, vectors = live
    query = unit_rows(1, seed=7)[0] * 12.5  # classifier weights are not unit vectors
    hits = index.query(query, top_k=5)
    assert [h.id for h in hits] == brute_force(vectors, ids, query, 5)
    expected = dict(zip(ids, (vectors @ query).tolist(), strict=True))
    assert all(abs(h.score - expected[h.id]) < 1e-3 * 12.5 for h in hits)


@pytest.mark.parametrize("filter_limit", [1_000, 0], ids=["filter", "over-fetch"])
def test_exclude_skips_seen_ids_and_still_fills_top_k(live, filter_limit):
    settings, index, ids, vectors = live
    reader = PineconeIndex.connect(settings, DIM, index.namespace, filter_limit=filter_limit)
    query = unit_rows(1, seed=2)[0]
    seen = set(brute_force(vectors, ids, query, 8))
    hits = reader.query(query, top_k=10, exclude=seen)
    assert [h.id for h in hits] == brute_force(vectors, ids, query, 10, exclude=seen)


def test_fetch_returns_what_was_stored_and_add_refuses_stored_ids(live):
    _, index, ids, vectors = live
    np.testing.assert_allclose(index.fetch([ids[3], ids[0]]), vectors[[3, 0]], atol=1e-6)
    with pytest.raises(KeyError, match="nope"):
        index.fetch(["nope"])
    with pytest.raises(ValueError, match="already"):
        index.add([ids[0]], unit_rows(1, seed=9))


def test_reconnecting_sees_the_same_namespace(live):
    settings, index, _, _ = live
    assert len(PineconeIndex.connect(settings, DIM, index.namespace)) == N


def test_a_dimension_mismatch_names_both(live):
    settings, index, _, _ = live
    with pytest.raises(ValueError, match=rf"dimension {DIM} and metric dotproduct.*needs dimension {DIM + 1}"):
        PineconeIndex.connect(settings, DIM + 1, index.namespace)


def test_a_wrong_key_is_refused_without_showing_it(live):
    settings, index, _, _ = live
    wrong = "pcsk_" + secrets.token_hex(24)
    with pytest.raises(IndexUnavailable, match="401") as err:
        PineconeIndex.connect(settings, DIM, index.namespace, api_key=wrong)
    assert wrong not in str(err.value)
