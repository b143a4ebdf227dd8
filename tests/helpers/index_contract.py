"""The contract every vector index backend must pass. Subclass ``IndexContract`` once per backend.

A subclass provides ``make_index(dim)`` (an empty index) and ``reopen(index, tmp_path)`` (the same data seen
through a fresh object: save/load for a local index, a new client for a remote one).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from trainer.index import Hit, ListingIndex, VectorIndex

DIM = 8


def unit_rows(n: int, dim: int = DIM, seed: int = 0) -> np.ndarray:
    rows = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def brute_force(vectors: np.ndarray, ids: list[str], query: np.ndarray, k: int, exclude=()) -> list[str]:
    scores = vectors @ query
    order = [i for i in np.argsort(-scores, kind="stable") if ids[i] not in set(exclude)]
    return [ids[i] for i in order[:k]]


class IndexContract:
    def make_index(self, dim: int) -> VectorIndex:
        raise NotImplementedError

    def reopen(self, index: VectorIndex, tmp_path) -> VectorIndex:
        raise NotImplementedError

    # ------------------------------------------------------------------------------------------------- helpers
    @pytest.fixture
    def filled(self):
        ids = [f"item-{i:03d}" for i in range(50)]
        vectors = unit_rows(50)
        index = self.make_index(DIM)
        index.add(ids, vectors, [{"n": i} for i in range(50)])
        return index, ids, vectors

    # ------------------------------------------------------------------------------------------------- contract
    def test_satisfies_the_protocol(self):
        index = self.make_index(DIM)
        assert isinstance(index, VectorIndex)
        assert index.dim == DIM
        assert len(index) == 0

    def test_query_on_an_empty_index_returns_nothing(self):
        assert self.make_index(DIM).query(unit_rows(1)[0], top_k=5) == []

    def test_query_returns_best_first_matching_brute_force(self, filled):
        index, ids, vectors = filled
        query = unit_rows(1, seed=7)[0]
        hits = index.query(query, top_k=10)
        assert all(isinstance(h, Hit) for h in hits)
        assert [h.id for h in hits] == brute_force(vectors, ids, query, 10)
        scores = [h.score for h in hits]
        assert scores == sorted(scores, reverse=True)
        expected = {i: float(v @ query) for i, v in zip(ids, vectors, strict=True)}
        for hit in hits:
            assert math.isclose(hit.score, expected[hit.id], abs_tol=1e-3)

    def test_query_accepts_an_unnormalised_query_such_as_classifier_weights(self, filled):
        index, ids, vectors = filled
        query = unit_rows(1, seed=3)[0] * 37.5
        assert [h.id for h in index.query(query, top_k=5)] == brute_force(vectors, ids, query, 5)

    def test_top_k_larger_than_the_index_returns_everything(self, filled):
        index, ids, _ = filled
        hits = index.query(unit_rows(1, seed=1)[0], top_k=1000)
        assert sorted(h.id for h in hits) == sorted(ids)

    def test_exclude_skips_ids_and_still_fills_top_k(self, filled):
        index, ids, vectors = filled
        query = unit_rows(1, seed=2)[0]
        first = [h.id for h in index.query(query, top_k=10)]
        hits = index.query(query, top_k=10, exclude=set(first[:5]) | {"not-an-id"})
        assert len(hits) == 10
        assert not set(first[:5]) & {h.id for h in hits}
        assert [h.id for h in hits] == brute_force(vectors, ids, query, 10, exclude=first[:5])

    def test_excluding_everything_returns_nothing(self, filled):
        index, ids, _ = filled
        assert index.query(unit_rows(1)[0], top_k=5, exclude=set(ids)) == []

    def test_fetch_returns_stored_vectors_in_the_order_asked(self, filled):
        index, ids, vectors = filled
        got = index.fetch([ids[3], ids[0]])
        assert got.shape == (2, DIM) and got.dtype == np.float32
        np.testing.assert_allclose(got, vectors[[3, 0]], atol=1e-3)

    def test_fetch_of_an_unknown_id_names_it(self, filled):
        index, _, _ = filled
        with pytest.raises(KeyError, match="nope"):
            index.fetch(["nope"])

    def test_list_ids_names_every_id_once_also_after_a_reopen(self, filled, tmp_path):
        # Optional in the protocol (trainer.index.ListingIndex), and every backend here has it: a uniform sample of
        # the collection is drawn from it where the index cannot sample itself (trainer/collection_sample.py).
        index, ids, _ = filled
        assert isinstance(index, ListingIndex)
        assert sorted(index.list_ids()) == sorted(ids)
        assert sorted(self.reopen(index, tmp_path).list_ids()) == sorted(ids)
        assert self.make_index(DIM).list_ids() == []

    def test_add_appends(self, filled):
        index, _, _ = filled
        index.add(["extra"], unit_rows(1, seed=9))
        assert len(index) == 51
        assert index.query(unit_rows(1, seed=9)[0], top_k=1)[0].id == "extra"

    @pytest.mark.parametrize(
        ("ids", "vectors", "message"),
        [
            (["a"], np.ones((1, DIM + 1), np.float32) / math.sqrt(DIM + 1), "dimension"),
            (["a", "b"], unit_rows(1), "2 ids"),
            (["a", "a"], unit_rows(2), "duplicate"),
            (["a"], np.full((1, DIM), np.nan, np.float32), "NaN"),
            (["a"], np.full((1, DIM), np.inf, np.float32), "inf"),
            ([""], unit_rows(1), "non-empty"),
            (["a"], unit_rows(1)[0], "2-D"),
        ],
    )
    def test_bad_vectors_are_refused_with_a_clear_message_and_change_nothing(self, filled, ids, vectors, message):
        index, _, _ = filled
        with pytest.raises(ValueError, match=message):
            index.add(ids, vectors)
        assert len(index) == 50

    def test_an_id_already_in_the_index_is_refused(self, filled):
        index, ids, _ = filled
        with pytest.raises(ValueError, match="already"):
            index.add([ids[0]], unit_rows(1))
        assert len(index) == 50

    @pytest.mark.parametrize(
        ("query", "top_k", "message"),
        [
            (np.ones(DIM + 2, np.float32), 3, "shape"),
            (np.full(DIM, np.nan, np.float32), 3, "NaN"),
            (np.ones(DIM, np.float32), -1, "top_k"),
        ],
    )
    def test_bad_queries_are_refused_with_a_clear_message(self, filled, query, top_k, message):
        index, _, _ = filled
        with pytest.raises(ValueError, match=message):
            index.query(query, top_k=top_k)

    def test_reopened_index_gives_identical_results(self, filled, tmp_path):
        index, ids, _ = filled
        query = unit_rows(1, seed=5)[0]
        before = index.query(query, top_k=10, exclude={ids[0]})
        again = self.reopen(index, tmp_path)
        assert len(again) == len(index) and again.dim == index.dim
        after = again.query(query, top_k=10, exclude={ids[0]})
        assert [h.id for h in after] == [h.id for h in before]
        np.testing.assert_allclose([h.score for h in after], [h.score for h in before], atol=1e-5)
