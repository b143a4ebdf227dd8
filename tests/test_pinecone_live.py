"""PineconeIndex against a real Pinecone project: the index contract suite every backend passes, and the checks the
in-memory double cannot make (the real SDK, real HTTP, real errors). Skipped unless ``PINECONE_API_KEY`` is set.

It works in fresh namespaces of ``CT_PINECONE_TEST_INDEX`` when that names an index of dimension 8 and metric
dotproduct, and otherwise creates a throwaway serverless index (``CT_PINECONE_CLOUD`` / ``CT_PINECONE_REGION``,
default aws / us-east-1), which takes up to a minute. Everything it made is deleted at the end, whether the tests
passed or not (the last two tests check that clean-up against the double, with or without a key). Cost: a few
thousand read and write units.
"""

from __future__ import annotations

import os
import secrets

import pytest

from tests.helpers.fake_pinecone import FakePinecone
from tests.helpers.index_contract import DIM, IndexContract, brute_force, unit_rows
from tests.helpers.pinecone_live import LiveProject, Settled, eventually
from trainer.index import IndexUnavailable
from trainer.index.pinecone import PineconeIndex

needs_key = pytest.mark.skipif(
    not os.environ.get("PINECONE_API_KEY"), reason="needs PINECONE_API_KEY for a real Pinecone project"
)

N = 50


@pytest.fixture(scope="module")
def project():
    from pinecone import Pinecone

    with LiveProject(Pinecone(), os.environ.get("CT_PINECONE_TEST_INDEX")) as live:
        yield live


@pytest.fixture(scope="module")
def live(project):
    index = project.connect()
    ids, vectors = [f"live-{i:03d}" for i in range(N)], unit_rows(N)
    index.add(ids, vectors, [{"n": i} for i in range(N)])
    eventually(lambda: len(index) == N)
    return project, index, ids, vectors


@needs_key
class TestLivePineconeContract(IndexContract):
    """The suite LocalIndex and the double pass, each test in a fresh namespace of the live index."""

    @pytest.fixture(autouse=True)
    def _live_project(self, project):
        self.project = project

    def make_index(self, dim):
        return Settled(self.project.connect(dim=dim))

    def reopen(self, index, tmp_path):
        # A new client, from the key alone: nothing is shared with the object that wrote the records.
        return Settled(PineconeIndex.connect(self.project.settings, index.dim, index.namespace), count=len(index))


@needs_key
@pytest.mark.parametrize("filter_limit", [1_000, 0], ids=["filter", "over-fetch"])
def test_exclude_skips_seen_ids_and_still_fills_top_k_by_filter_and_by_over_fetching(live, filter_limit):
    project, index, ids, vectors = live
    reader = project.connect(index.namespace, filter_limit=filter_limit)
    query = unit_rows(1, seed=2)[0]
    seen = set(brute_force(vectors, ids, query, 8))
    hits = reader.query(query, top_k=10, exclude=seen)
    assert [h.id for h in hits] == brute_force(vectors, ids, query, 10, exclude=seen)


@needs_key
def test_a_dimension_mismatch_names_both(live):
    project, index, _, _ = live
    with pytest.raises(ValueError, match=rf"dimension {DIM} and metric dotproduct.*needs dimension {DIM + 1}"):
        PineconeIndex.connect(project.settings, DIM + 1, index.namespace)


@needs_key
def test_a_wrong_key_is_refused_without_showing_it(live):
    project, index, _, _ = live
    wrong = "pcsk_" + secrets.token_hex(24)
    with pytest.raises(IndexUnavailable, match="401") as err:
        PineconeIndex.connect(project.settings, DIM, index.namespace, api_key=wrong)
    assert wrong not in str(err.value)


# ------------------------------------------------------------------ the clean-up, checked against the double
def test_a_project_that_created_its_index_deletes_it_whatever_the_tests_did():
    client = FakePinecone()
    with pytest.raises(RuntimeError, match="a test failed"), LiveProject(client) as project:
        project.connect().add(["a"], unit_rows(1))
        raise RuntimeError("a test failed")
    assert project.created and client.stores == {}


def test_a_project_on_an_existing_index_deletes_only_its_own_namespaces():
    client = FakePinecone()
    client.create_index("shared", dimension=DIM, metric="dotproduct")
    someone_elses = LiveProject(client, "shared").connect("production")
    someone_elses.add(["keep"], unit_rows(1))
    with LiveProject(client, "shared") as project:
        project.connect().add(["a"], unit_rows(1))
        project.connect().add(["b"], unit_rows(1, seed=1))
        project.connect()  # never written to: Pinecone never made it, and deleting it must not fail
    assert not project.created
    assert set(client.store("shared").namespaces) == {"production"}
