"""PineconeIndex over an in-memory double of the SDK: the shared contract, plus what only a remote index must promise
(request limits, retries, clear errors, one query per round and no writes while searching, resumable seeding)."""

from __future__ import annotations

import subprocess
import sys
import traceback

import numpy as np
import pytest

from tests.helpers.fake_pinecone import MAX_UPSERT_BYTES, NAMESPACE, SETTINGS, FakePinecone, connect
from tests.helpers.index_contract import DIM, IndexContract, brute_force, unit_rows
from trainer.config import PROJECT_ROOT
from trainer.index import IndexUnavailable
from trainer.index.local import LocalIndex
from trainer.index.pinecone import (
    FETCH_URL_BYTES,
    ID_FIELD,
    MAX_TOP_K,
    PineconeIndex,
    namespace_for,
)
from trainer.index.pinecone_calls import RetryPolicy
from trainer.session import Session
from trainer.synthetic import planted_concept

KEY = "pcsk_2Hq7_secretsecretsecret"


def filled(n: int = 50, dim: int = DIM, **options) -> tuple[FakePinecone, PineconeIndex, list[str], np.ndarray]:
    client = FakePinecone()
    index = connect(client, dim, **options)
    ids, vectors = [f"item-{i:04d}" for i in range(n)], unit_rows(n, dim)
    index.add(ids, vectors)
    return client, index, ids, vectors


class TestPineconeIndexContract(IndexContract):
    def make_index(self, dim):
        self.client = FakePinecone()
        return connect(self.client, dim)

    def reopen(self, index, tmp_path):
        return connect(self.client, index.dim, index.namespace)


# ----------------------------------------------------------------------------------------------- import and connect
def test_importing_the_backend_does_not_import_the_sdk():
    code = "import trainer.index.pinecone, sys; assert 'pinecone' not in sys.modules, 'pinecone imported eagerly'"
    result = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_connect_creates_a_missing_dotproduct_index_on_the_configured_cloud_and_region():
    client = FakePinecone()
    connect(client, dim=16)
    store = client.store("ct-test")
    assert (store.dimension, store.metric) == (16, "dotproduct")
    assert (store.spec.cloud, store.spec.region) == ("gcp", "europe-west4")


def test_connect_uses_an_index_another_replica_created_meanwhile(monkeypatch):
    client = FakePinecone()
    client.create_index(name="ct-test", dimension=DIM, metric="dotproduct")  # the other replica
    monkeypatch.setattr(client, "has_index", lambda name: False)  # our look-up ran just before that create landed
    index = connect(client)  # our create_index is answered 409 Conflict; connect carries on with the existing index
    assert client.calls.count("create_index") == 2 and index.dim == DIM


@pytest.mark.parametrize(("dim", "namespace"), [(0, NAMESPACE), (DIM, ""), (DIM, "ns-ä")])
def test_a_bad_dimension_or_namespace_is_refused_before_any_request(dim, namespace):
    client = FakePinecone()
    with pytest.raises(ValueError, match=r"dim|namespace"):
        connect(client, dim, namespace)
    assert client.calls == []


@pytest.mark.parametrize(("dimension", "metric"), [(768, "dotproduct"), (DIM, "cosine")])
def test_an_existing_index_of_another_shape_is_refused_naming_both(dimension, metric):
    client = FakePinecone()
    client.create_index(name="ct-test", dimension=dimension, metric=metric)
    with pytest.raises(ValueError) as err:
        connect(client)
    message = str(err.value)
    assert f"dimension {dimension} and metric {metric}" in message
    assert f"dimension {DIM} and metric dotproduct" in message
    assert "CT_PINECONE_INDEX" in message


def test_a_missing_api_key_says_how_to_fix_it(monkeypatch):
    monkeypatch.delenv("PINECONE_API_KEY", raising=False)
    with pytest.raises(IndexUnavailable, match=r"Set PINECONE_API_KEY .* or choose backend=local"):
        PineconeIndex.connect(SETTINGS, DIM, NAMESPACE)


def test_a_wrong_api_key_is_reported_clearly_and_never_shown(monkeypatch):
    monkeypatch.setenv("PINECONE_API_KEY", KEY)
    with pytest.raises(IndexUnavailable) as err:
        connect(FakePinecone(valid_key=False))
    assert "401" in str(err.value) and "PINECONE_API_KEY" in str(err.value)
    shown = "".join(traceback.format_exception(err.value)) + repr(err.value)
    assert KEY not in shown


def test_a_server_message_that_echoes_the_key_is_redacted():
    client = FakePinecone()
    index = connect(client, api_key=KEY)
    client.store("ct-test").fail("query", 403, message=f"key {KEY} has no access to project p-1")
    with pytest.raises(IndexUnavailable, match="403") as err:
        index.query(unit_rows(1)[0], top_k=3)
    assert KEY not in "".join(traceback.format_exception(err.value))
    assert "***" in str(err.value)


def test_a_malformed_environment_key_is_refused_by_the_real_sdk_client_without_echoing_it(monkeypatch):
    # The SDK's own Pinecone() refuses a key that is no valid HTTP header value before sending anything.
    monkeypatch.setenv("PINECONE_API_KEY", "bad key\n")
    with pytest.raises(IndexUnavailable, match="not a valid API key") as err:
        PineconeIndex.connect(SETTINGS, DIM, NAMESPACE)
    assert "bad key" not in str(err.value)


# ----------------------------------------------------------------------------------------------- request limits
def test_a_2500_record_add_is_split_into_requests_within_pinecone_limits():
    client, index, _, _ = filled(2500)
    upserts = client.store("ct-test").requests_of("upsert")
    assert len(upserts) >= 3
    assert all(r.detail["records"] <= 1000 and r.detail["bytes"] <= MAX_UPSERT_BYTES for r in upserts)
    assert sum(r.detail["records"] for r in upserts) == 2500
    assert len(index) == 2500


def test_wide_vectors_are_split_by_the_2mb_rule_before_the_record_count():
    client, index, _, vectors = filled(400, dim=2048)
    upserts = client.store("ct-test").requests_of("upsert")
    assert len(upserts) > 5  # ~41 KB a record: about 48 records fit in 2 MB, far fewer than 1,000
    assert max(r.detail["bytes"] for r in upserts) > 0.97 * MAX_UPSERT_BYTES  # filled to within one record
    assert all(r.detail["bytes"] <= MAX_UPSERT_BYTES for r in upserts)
    np.testing.assert_allclose(index.fetch(["item-0399"]), vectors[[399]], atol=1e-6)


def test_requests_are_sized_as_the_sdk_encodes_them_not_as_python_json_would():
    # orjson writes numbers between 1e-5 and 1e-4 one byte longer than json.dumps: 4 KB more in a request of these.
    rng = np.random.default_rng(0)
    small = rng.uniform(1.0001e-5, 9.9e-5, size=(60, 4096)) * rng.choice([-1, 1], size=(60, 4096))
    small[:, 0] = np.sqrt(1 - (small[:, 1:] ** 2).sum(axis=1))  # unit rows, nearly all weight on one axis
    client = FakePinecone()
    connect(client, dim=4096).add([f"s{i}" for i in range(60)], small)  # the double refuses bodies over 2 MB
    assert all(r.detail["bytes"] <= MAX_UPSERT_BYTES for r in client.store("ct-test").requests_of("upsert"))


def test_fetch_is_split_within_the_id_count_and_url_budget():
    client, index, ids, vectors = filled(2500)
    store = client.store("ct-test")
    store.requests.clear()
    np.testing.assert_allclose(index.fetch(ids[::-1]), vectors[::-1], atol=1e-6)
    fetches = store.requests_of("fetch")
    assert len(fetches) >= 3
    assert all(r.detail["ids"] <= 1000 and r.detail["url_bytes"] <= FETCH_URL_BYTES for r in fetches)


def test_metadata_over_40kb_is_refused_by_id_before_anything_is_written():
    client = FakePinecone()
    index = connect(client)
    metadata = [{"caption": "x" * 10}, {"caption": "y" * 41_000}]
    with pytest.raises(ValueError, match=r"'b'.*40,000"):
        index.add(["a", "b"], unit_rows(2), metadata)
    assert client.store("ct-test").requests_of("upsert") == []


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ({ID_FIELD: "someone-else"}, "reserved"),
        ({"tags": [1, 2]}, "list"),
        ({"nested": {"a": 1}}, "dict"),
        ({"score": float("nan")}, "finite"),
    ],
)
def test_metadata_pinecone_cannot_store_is_refused(metadata, message):
    with pytest.raises(ValueError, match=message):
        connect(FakePinecone()).add(["a"], unit_rows(1), [metadata])


@pytest.mark.parametrize("bad_id", ["café", "x" * 513, "a\x00b"])
def test_ids_pinecone_cannot_store_are_refused(bad_id):
    with pytest.raises(ValueError, match="ASCII"):
        connect(FakePinecone()).add([bad_id], unit_rows(1))


def test_metadata_round_trips_with_the_id_copy():
    client = FakePinecone()
    connect(client).add(["a"], unit_rows(1), [{"label": "cat", "tags": ["x"]}])
    stored = client.store("ct-test").namespaces[NAMESPACE]["a"][1]
    assert stored == {"label": "cat", "tags": ["x"], ID_FIELD: "a"}


# ----------------------------------------------------------------------------------------------- retries
class UpperBound:
    """An rng whose jitter always takes the top of the range, so the backoff schedule itself is visible."""

    def uniform(self, low, high):
        return high


def test_rate_limits_and_server_errors_are_retried_with_exponential_backoff():
    sleeps = []
    client = FakePinecone()
    index = connect(client, sleep=sleeps.append, rng=UpperBound(), retry=RetryPolicy(attempts=5, base_delay=0.5))
    store = client.store("ct-test")
    store.fail("upsert", 429, times=2)
    store.fail("upsert", 503, times=1)
    index.add(["a", "b"], unit_rows(2))
    assert sleeps == [0.5, 1.0, 2.0]
    assert len(store.requests_of("upsert")) == 4 and len(index) == 2


def test_backoff_is_jittered_and_capped():
    policy = RetryPolicy(attempts=10, base_delay=1.0, max_delay=8.0)
    rng = np.random.default_rng(0)  # any object with uniform(low, high) will do
    delays = [policy.delay(k, rng) for k in range(8)]
    assert all(0 <= d <= min(8.0, 2**k) for k, d in enumerate(delays))
    assert len(set(delays)) == len(delays)  # jittered: no two waits alike


def test_a_retry_after_from_the_server_is_respected():
    sleeps = []
    client = FakePinecone()
    index = connect(client, sleep=sleeps.append, rng=UpperBound(), retry=RetryPolicy(base_delay=0.1))
    client.store("ct-test").fail("query", 429, retry_after=7.0)
    index.query(unit_rows(1)[0], top_k=1)
    assert sleeps == [7.0]


def test_retries_are_bounded_and_end_in_a_clear_error():
    sleeps = []
    client = FakePinecone()
    index = connect(client, sleep=sleeps.append, retry=RetryPolicy(attempts=3))
    client.store("ct-test").fail("query", 503, times=100)
    with pytest.raises(IndexUnavailable, match=r"server error 503, 3 attempts"):
        index.query(unit_rows(1)[0], top_k=1)
    assert len(client.store("ct-test").requests_of("query")) == 3 and len(sleeps) == 2


def test_lasting_rate_limits_mention_the_quota():
    client = FakePinecone()
    index = connect(client, retry=RetryPolicy(attempts=2))
    client.store("ct-test").fail("query", 429, times=5)
    with pytest.raises(IndexUnavailable, match=r"429.*2 attempts.*read or write units"):
        index.query(unit_rows(1)[0], top_k=1)


@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_client_errors_are_never_retried(status):
    sleeps = []
    client = FakePinecone()
    index = connect(client, sleep=sleeps.append)
    client.store("ct-test").fail("upsert", status)
    with pytest.raises(IndexUnavailable, match=str(status)):
        index.add(["a"], unit_rows(1))
    assert len(client.store("ct-test").requests_of("upsert")) == 1 and sleeps == []


def test_a_timeout_is_reported_clearly():
    client = FakePinecone()
    index = connect(client)
    client.store("ct-test").fail("query", None)
    with pytest.raises(IndexUnavailable, match="did not answer in time"):
        index.query(unit_rows(1)[0], top_k=1)


# ----------------------------------------------------------------------------------------------- querying
def test_exclude_goes_into_a_metadata_filter_while_the_list_is_small():
    client, index, ids, vectors = filled(200)
    query = unit_rows(1, seed=3)[0]
    exclude = set(brute_force(vectors, ids, query, 30)[::2])
    hits = index.query(query, top_k=10, exclude=exclude)
    assert [h.id for h in hits] == brute_force(vectors, ids, query, 10, exclude=exclude)
    (request,) = client.store("ct-test").requests_of("query")
    assert request.detail["top_k"] == 10
    assert request.detail["filter"] == {ID_FIELD: {"$nin": sorted(exclude)}}


def test_exclude_falls_back_to_over_fetching_past_the_filter_limit():
    client, index, ids, vectors = filled(200, filter_limit=0)
    query = unit_rows(1, seed=4)[0]
    exclude = set(brute_force(vectors, ids, query, 40)[::3])
    hits = index.query(query, top_k=10, exclude=exclude)
    assert [h.id for h in hits] == brute_force(vectors, ids, query, 10, exclude=exclude)
    (request,) = client.store("ct-test").requests_of("query")
    assert request.detail["top_k"] == 10 + len(exclude) and request.detail["filter"] is None


def test_exclude_combines_a_filter_with_over_fetching_for_the_overflow():
    client, index, ids, vectors = filled(200, filter_limit=4)
    query = unit_rows(1, seed=5)[0]
    exclude = set(brute_force(vectors, ids, query, 20)[:10])
    hits = index.query(query, top_k=5, exclude=exclude)
    assert [h.id for h in hits] == brute_force(vectors, ids, query, 5, exclude=exclude)
    (request,) = client.store("ct-test").requests_of("query")
    assert len(request.detail["filter"][ID_FIELD]["$nin"]) == 4 and request.detail["top_k"] == 5 + 6


def test_over_fetching_is_capped_at_pinecones_top_k_limit():
    client, index, ids, _ = filled(50, filter_limit=0)
    exclude = {f"elsewhere-{i}" for i in range(20_000)} | set(ids[:45])
    hits = index.query(unit_rows(1)[0], top_k=10, exclude=exclude)
    assert len(hits) == 5 and not {h.id for h in hits} & exclude
    (request,) = client.store("ct-test").requests_of("query")
    assert request.detail["top_k"] == MAX_TOP_K


def test_each_query_is_one_request_and_searching_writes_nothing():
    client, index, _, _ = filled(300)
    store = client.store("ct-test")
    store.requests.clear()
    seen: set[str] = set()
    for round_ in range(6):
        hits = index.query(unit_rows(1, seed=round_)[0], top_k=10, exclude=seen)
        assert not {h.id for h in hits} & seen
        seen |= {h.id for h in hits}
    assert [r.op for r in store.requests] == ["query"] * 6
    assert len(seen) == 60


@pytest.mark.parametrize("filter_limit", [1_000, 7])  # 7: the seen ids soon overflow the filter into over-fetching
def test_a_session_on_pinecone_is_the_session_a_local_index_gives_from_the_same_labels(filter_limit):
    """One index protocol: the same labels make the same session on either backend, round by round (the batch, each
    item's P, the fit). A collection smaller than the pool leaves nothing outside the search, so neither session
    explores (where they do, each draws its own items). A figure that says Pinecone needs more labels than a local
    index is a harness's until this fails (digits seed 4 once read "never" for AP 0.9 at 0 labels on both)."""
    concept = planted_concept(n=300, dim=32, seed=2)
    local = Session(LocalIndex.from_vectors(concept.ids, concept.vectors), concept.prompt_vector, seed=2)
    remote_index = connect(FakePinecone(), 32, filter_limit=filter_limit)
    remote_index.upsert_all(concept.ids, concept.vectors)
    remote = Session(remote_index, concept.prompt_vector, seed=2)
    for _ in range(8):  # 80 labels: under the 100 from which the fit leans on the session's collection sample too
        assert [h.id for h in remote.batch()] == [h.id for h in local.batch()]
        np.testing.assert_allclose([h.score for h in remote.batch()], [h.score for h in local.batch()], atol=1e-5)
        labels = concept.oracle([h.id for h in local.batch()])
        for session in (local, remote):
            session.label(labels)
            session.train_and_requery()
        np.testing.assert_allclose(
            remote.classifier.logits(concept.vectors), local.classifier.logits(concept.vectors), atol=1e-4
        )
    assert not local.explored and not remote.explored


def test_namespaces_are_isolated():
    client = FakePinecone()
    first, second = connect(client, namespace="model.a.train.1"), connect(client, namespace="model.b.train.2")
    first.add(["a", "b"], unit_rows(2))
    second.add(["a"], unit_rows(1, seed=1))  # the same id in another namespace is another record
    assert (len(first), len(second)) == (2, 1)
    assert [h.id for h in second.query(unit_rows(1)[0], top_k=5)] == ["a"]


# ----------------------------------------------------------------------------------------------- seeding
def test_upsert_all_resumes_after_an_interruption_without_rewriting():
    client = FakePinecone()
    index = connect(client)
    store = client.store("ct-test")
    ids, vectors = [f"img-{i:05d}" for i in range(3500)], unit_rows(3500)
    store.fail("upsert", 401, after=2)  # the third request fails for good: the run stops with 2,000 written
    with pytest.raises(IndexUnavailable):
        index.upsert_all(ids, vectors)
    assert len(index) == 2000
    progress = []
    written = index.upsert_all(ids, vectors, progress=lambda done, total, msg: progress.append((done, total, msg)))
    assert written == 1500 and len(index) == 3500
    assert sum(r.detail["records"] for r in store.requests_of("upsert")) == 3500 + 1000  # only the failed try again
    assert [p[:2] for p in progress] == [(1000, 3500), (2000, 3500), (3000, 3500), (3500, 3500)]
    assert progress[-1][2] == f"1,500 upserted, 2,000 already in {NAMESPACE}"
    assert index.upsert_all(ids, vectors) == 0  # a finished job writes nothing more


def test_add_refuses_ids_already_stored_after_a_reopen():
    client, _, ids, _ = filled(10)
    with pytest.raises(ValueError, match="already"):
        connect(client).add([ids[3], "new"], unit_rows(2, seed=8))
    assert len(connect(client)) == 10


def test_unnormalised_vectors_are_refused_unless_asked_to_normalise():
    index = connect(FakePinecone())
    with pytest.raises(ValueError, match="L2-normalised"):
        index.add(["a"], unit_rows(1) * 3)
    index.add(["a"], unit_rows(1) * 3, normalize=True)
    np.testing.assert_allclose(np.linalg.norm(index.fetch(["a"])), 1, atol=1e-6)


# ----------------------------------------------------------------------------------------------- namespaces
def test_namespace_names_are_safe_stable_and_distinct():
    name = namespace_for("openai/clip-vit-base-patch32", "frgfm/imagenette", "train", config="320px")
    assert name.startswith("openai-clip-vit-base-patch32.frgfm-imagenette.320px.train.")
    assert name == namespace_for("openai/clip-vit-base-patch32", "frgfm/imagenette", "train", config="320px")
    others = {
        namespace_for("openai/clip-vit-base-patch32", "frgfm/imagenette", "validation", config="320px"),
        namespace_for("openai/clip-vit-base-patch32", "frgfm/imagenette", "train", config="160px"),
        namespace_for("openai-clip-vit-base-patch32", "frgfm/imagenette", "train", config="320px"),
        namespace_for("/srv/ÄÖ models/" + "x" * 600, "frgfm/imagenette", "train", config="320px"),
    }
    assert name not in others and len(others) == 4
    for n in {name, *others}:
        assert n.isascii() and len(n) <= 512 and set(n) <= set("abcdefghijklmnopqrstuvwxyz0123456789-.")
    with pytest.raises(ValueError, match="non-empty"):
        namespace_for("model", "", "train")


# ----------------------------------------------------------------------------------------------- listing ids
def test_list_ids_answers_from_the_ids_written_without_a_list_call():
    client, index, ids, _ = filled(250)
    store = client.store("ct-test")
    store.requests.clear()
    assert index.list_ids() == ids
    assert [r.op for r in store.requests] == ["describe_index_stats"]  # the count only: no list call
    seeded = connect(client)  # another process seeding the same namespace: every id found present, none written
    assert seeded.upsert_all(ids, unit_rows(250)) == 0
    store.requests.clear()
    assert seeded.list_ids() == ids and not store.requests_of("list")


def test_list_ids_lists_a_namespace_this_object_did_not_write_in_pages_of_100():
    client, _, ids, _ = filled(250)
    opened = connect(client)  # a script opening a namespace another process filled
    store = client.store("ct-test")
    store.requests.clear()
    assert sorted(opened.list_ids()) == sorted(ids)
    pages = store.requests_of("list")
    assert len(pages) == 3 and all(r.detail["limit"] == 100 for r in pages)
    store.requests.clear()
    assert sorted(opened.list_ids()) == sorted(ids) and not store.requests_of("list")  # listed once


def test_list_ids_refuses_a_namespace_too_large_to_list_before_any_list_call(monkeypatch):
    from trainer.index import pinecone_ids

    monkeypatch.setattr(pinecone_ids, "MAX_LIST_CALLS", 2)
    client, _, _, _ = filled(250)
    opened = connect(client)
    with pytest.raises(IndexUnavailable, match=r"holds 250 records: listing its ids .* takes 3 calls, over the 2"):
        opened.list_ids()
    assert not client.store("ct-test").requests_of("list")


def test_list_ids_stops_at_its_bound_when_the_namespace_is_larger_than_its_count_said(monkeypatch):
    from trainer.index import pinecone_ids

    monkeypatch.setattr(pinecone_ids, "MAX_LIST_CALLS", 2)
    client, _, _, _ = filled(250)
    opened = connect(client)
    monkeypatch.setattr(PineconeIndex, "__len__", lambda self: 150)  # Pinecone's count lags writes
    with pytest.raises(IndexUnavailable, match=r"holds more than 200 records"):
        opened.list_ids()
    assert len(client.store("ct-test").requests_of("list")) == 2


def test_a_failed_listing_is_retried_then_explained():
    client, _, _, _ = filled(50)
    opened = connect(client)
    store = client.store("ct-test")
    store.fail("list", 500)
    assert len(opened.list_ids()) == 50  # a server error is retried
    store.fail("list", 400, message="list is not supported for pod-based indexes")
    with pytest.raises(IndexUnavailable, match="pod-based"):
        connect(client).list_ids()
