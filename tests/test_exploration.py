"""Exploration: items from outside the search's pool, only while the pool looks full of matches or empty of them."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers.fake_pinecone import FakePinecone, connect
from tests.helpers.index_contract import unit_rows
from trainer.collection_sample import collection_sample
from trainer.exploration import (
    BEYOND_AFTER,
    EMPTY_POOL,
    EXPLORE_EMPTY,
    EXPLORE_FULL,
    EXPLORE_ITEMS,
    FOLLOW_UP,
    FULL_POOL,
    Exploration,
    beyond,
    explore,
    follow_up,
)
from trainer.index.local import LocalIndex
from trainer.logistic import sigmoid
from trainer.session import Session
from trainer.synthetic import average_precision, clustered_concept, partial_concept, planted_concept

IDS = [f"item-{i:03d}" for i in range(200)]


def local_index() -> LocalIndex:
    return LocalIndex.from_vectors(IDS, unit_rows(200))


def test_a_full_pool_adds_items_from_outside_it_and_outside_what_was_shown():
    pool, shown = IDS[:50], set(IDS[50:100])
    full = np.full(50, 0.9)
    for seed in range(20):
        outside, reason = explore(local_index(), pool, full, 10, shown, np.random.default_rng(seed))
        assert reason == EXPLORE_FULL
        assert len(outside) == EXPLORE_ITEMS == len(set(outside))
        assert not (set(outside) & (set(pool) | shown))


def test_an_empty_pool_fills_half_the_batch_from_outside_it_and_outside_what_was_shown():
    pool, shown = IDS[:50], set(IDS[50:100])
    empty = np.full(50, 0.99 * EMPTY_POOL / 50)  # the classifier expects just under EMPTY_POOL matches in all
    for k in (10, 7, 3):
        outside, reason = explore(local_index(), pool, empty, k, shown, np.random.default_rng(k))
        assert reason == EXPLORE_EMPTY
        assert len(outside) == k // 2 == len(set(outside))
        assert not (set(outside) & (set(pool) | shown))
    assert explore(local_index(), pool, empty, 1, shown, np.random.default_rng(0)) == ([], None)  # a batch of one stays


def test_a_pool_that_is_not_full_or_a_small_batch_or_an_index_that_cannot_sample_adds_nothing():
    pool, rng = IDS[:50], np.random.default_rng(0)
    just_under = np.where(np.arange(50) < FULL_POOL * 50 - 1, 0.9, 0.1)
    assert explore(local_index(), pool, just_under, 10, set(), rng) == ([], None)
    just_over_empty = np.full(50, 1.01 * EMPTY_POOL / 50)
    assert explore(local_index(), pool, just_over_empty, 10, set(), rng) == ([], None)
    assert explore(local_index(), pool, np.full(50, 0.9), 2 * EXPLORE_ITEMS - 1, set(), rng) == ([], None)

    class QueryOnly:  # a Pinecone round is one query: no sampling
        def query(self, vector, top_k, exclude=None):
            raise AssertionError("exploration never searches")

    assert explore(QueryOnly(), pool, np.full(50, 0.9), 10, set(), rng) == ([], None)


def aps_over_rounds(concept, strategy: str, rounds: int, pool_size: int, index=None) -> list[float]:
    index = index or LocalIndex.from_vectors(concept.ids, concept.vectors)
    session = Session(index, concept.prompt_vector, strategy=strategy, seed=0, pool_size=pool_size)
    aps = []
    for _ in range(rounds):
        session.label(concept.oracle([h.id for h in session.batch()]))
        session.train_and_requery()
        aps.append(average_precision(session.classifier.logits(concept.vectors), concept.truth))
    return aps


def test_mixed_finds_the_clusters_the_prompt_does_not_point_at_and_top_does_not(monkeypatch):
    # Three clusters are the concept; the prompt points at one. The pool (the best 300 unseen of 3,000) never holds
    # the other two, so top (the article's selection, which never explores) stays near zero-shot; mixed explores.
    concept = clustered_concept(n=3000, dim=64, seed=3)
    top = aps_over_rounds(concept, "top", 25, pool_size=300)
    mixed = aps_over_rounds(concept, "mixed", 25, pool_size=300)
    assert max(top) < 0.6 < 0.75 < max(mixed)  # measured: 0.47 and 0.86
    monkeypatch.setattr("trainer.session.explore", lambda *args: Exploration([], None))
    assert max(aps_over_rounds(concept, "mixed", 25, pool_size=300)) < 0.6  # what exploration adds


def test_mixed_learns_the_attribute_the_prompt_does_not_name_once_its_pool_looks_empty(monkeypatch):
    # The concept is attribute 0 AND attribute 1; the prompt names only 0, and its best items lack 1. After the first
    # batch says so, the classifier expects no match in its pool of 1,000, and without looking outside it every
    # later batch is more of the same: AP stays at zero-shot.
    concept = partial_concept(n=8000, dim=512, seed=0)
    exploring = aps_over_rounds(concept, "mixed", 8, pool_size=1000)
    assert max(exploring) > 0.9  # measured: 1.00 by round 6
    monkeypatch.setattr("trainer.session.explore", lambda *args: Exploration([], None))
    assert max(aps_over_rounds(concept, "mixed", 8, pool_size=1000)) < 0.3  # measured: 0.17, zero-shot


def test_on_pinecone_mixed_explores_from_the_sessions_sample_of_the_collection():
    """Pinecone cannot sample (a round is one query), so a session there looks beyond the search with the items of
    its one sample of the collection (all of a collection this small), their vectors fetched with the draw."""
    concept = clustered_concept(n=3000, dim=64, seed=3)
    index = connect(FakePinecone(), 64)
    index.add(concept.ids, concept.vectors)
    assert max(aps_over_rounds(concept, "mixed", 25, pool_size=300, index=index)) > 0.75  # measured: 0.86


def test_follow_up_takes_the_explored_match_the_classifier_expected_least():
    labels = {"a": 1.0, "b": -1.0, "c": 0.4, "d": 0.0, "e": 1.0}
    explored = {"a": 0.3, "b": 0.01, "c": 0.2, "d": 0.02, "x": 0.0}  # "e" was not explored, "x" has no label
    assert follow_up(explored, labels) == ["c"]
    assert follow_up({"b": 0.1, "d": 0.2}, labels) == follow_up({}, labels) == []


def nearest_in_sample(session: Session, index, match: str, seen: set[str]) -> list[str]:
    """The ``FOLLOW_UP`` unseen items of the session's sample of the collection nearest to ``match``."""
    ids = [i for i in session.collection_sample() if i not in seen]
    scores = index.fetch(ids) @ index.fetch([match])[0]
    return [ids[r] for r in np.argsort(-scores, kind="stable")[:FOLLOW_UP]]


def first_explored_match(concept, session):
    """Label batches until one holds an explored match; return it and what was seen before its round is trained."""
    for _ in range(30):
        labels = concept.oracle([h.id for h in session.batch()])
        session.label(labels)
        shown = {h.id: h.score for h in session.batch() if h.id in session.explored}
        matches = [i for i in shown if labels[i] > 0]
        if matches:
            return min(matches, key=shown.get), session.seen
        session.train_and_requery()
    raise AssertionError("no explored item was a match in 30 rounds")


def test_an_explored_match_brings_its_nearest_unseen_neighbours_into_the_next_batch():
    concept = clustered_concept(n=3000, dim=64, seed=3)
    index = LocalIndex.from_vectors(concept.ids, concept.vectors)
    session = Session(index, concept.prompt_vector, seed=0, pool_size=300)
    match, seen = first_explored_match(concept, session)
    queries = []
    real = index.query
    index.query = lambda *args, **kwargs: queries.append(args) or real(*args, **kwargs)  # this instance's calls only
    batch = session.train_and_requery()
    # Looked for in the session's sample of the collection (an index of its own), so the round's one query is the
    # classifier's: at 1M vectors a second one would double the round (~75 ms, benchmarks/RESULTS-learning.md).
    assert len(queries) == 1 and session.collection_sample() is not None
    assert [h.id for h in batch[:FOLLOW_UP]] == nearest_in_sample(session, index, match, seen)
    assert len(batch) == session.batch_size
    assert not {h.id for h in batch} & seen and len({h.id for h in batch}) == len(batch)


def test_the_persons_more_like_this_comes_first_and_the_follow_up_shares_half_a_batch():
    concept = clustered_concept(n=3000, dim=64, seed=3)
    index = LocalIndex.from_vectors(concept.ids, concept.vectors)
    session = Session(index, concept.prompt_vector, seed=0, pool_size=300)
    match, seen = first_explored_match(concept, session)
    asked = next(i for i in sorted(seen) if i != match)
    nearest = [h.id for h in index.query(index.fetch([asked])[0], 5, exclude=seen)]
    batch = [h.id for h in session.train_and_requery(more_like=[asked])]
    assert batch[:5] == nearest  # half a batch: all of it the person's, none left for the follow-up
    assert len(batch) == 10 and len(set(batch)) == 10


def test_on_pinecone_an_explored_match_is_followed_up_from_the_sample_and_a_round_stays_one_query():
    concept = clustered_concept(n=3000, dim=64, seed=3)
    client = FakePinecone()
    index = connect(client, 64)
    index.add(concept.ids, concept.vectors)
    session = Session(index, concept.prompt_vector, seed=0, pool_size=300)
    match, seen = first_explored_match(concept, session)
    store = client.store("ct-test")
    store.requests.clear()
    batch = session.train_and_requery()
    calls = [r.op for r in store.requests]
    assert calls.count("query") == 1 and calls.count("fetch") <= 1  # the labels' vectors, as every round
    assert [h.id for h in batch[:FOLLOW_UP]] == nearest_in_sample(session, index, match, seen)


def labels_to(concept, target: float, rounds: int, pool_size: int | None = None) -> int:
    index = LocalIndex.from_vectors(concept.ids, concept.vectors)
    session = Session(index, concept.prompt_vector, seed=0, pool_size=pool_size)
    for done in range(1, rounds + 1):
        session.label(concept.oracle([h.id for h in session.batch()]))
        session.train_and_requery()
        if average_precision(session.classifier.logits(concept.vectors), concept.truth) >= target:
            return done * session.batch_size
    return (rounds + 1) * session.batch_size


def test_following_up_explored_matches_learns_the_other_clusters_sooner(monkeypatch):
    # The concept is three clusters, the prompt points at one; the others are found by exploring, and a first match
    # there moves the fit little until its neighbours are labelled too (benchmarks/RESULTS-learning.md).
    concept = clustered_concept(n=8000, dim=512, seed=0)
    following = labels_to(concept, 0.9, 20)
    monkeypatch.setattr("trainer.session.FOLLOW_UP", 0)
    assert following <= 100 < labels_to(concept, 0.9, 20)  # measured: 80 against 130


def test_beyond_gives_the_samples_items_nearest_even_odds_outside_what_is_excluded_best_first():
    sample = local_index()
    rng = np.random.default_rng(0)
    weight, bias = rng.normal(size=sample.dim).astype(np.float32), 0.3
    exclude = set(IDS[::3])
    hits = beyond(sample, weight, bias, exclude, 7, BEYOND_AFTER)
    scores = sample.fetch(IDS) @ weight
    free = [r for r, i in enumerate(IDS) if i not in exclude]
    nearest = sorted(free, key=lambda r: abs(sigmoid(scores[r] + bias) - 0.5))[:7]
    assert {h.id for h in hits} == {IDS[r] for r in nearest}
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)  # ranked as a search ranks
    assert np.allclose([h.score for h in hits], [scores[IDS.index(h.id)] for h in hits], atol=1e-5)
    # Not before the labels hold BEYOND_AFTER non-matches (the classifier's 0.5 is not anchored yet), nor for no slot.
    assert beyond(sample, weight, bias, exclude, 7, BEYOND_AFTER - 1) == []
    assert beyond(sample, weight, bias, exclude, 0, BEYOND_AFTER) == []


def test_a_full_pool_inside_the_known_part_of_the_concept_learns_its_edge_from_the_sample(monkeypatch):
    # The concept is three clusters; the pool (150 of 4,000 items) is smaller than one of them, so from the second
    # round on every pool item is a confident match, and the boundary picks were the bottom of those matches.
    concept = clustered_concept(n=4000, dim=128, seed=1)
    looking_beyond = labels_to(concept, 0.9, 20, pool_size=150)
    monkeypatch.setattr("trainer.exploration.BEYOND_AFTER", 10**9)
    assert looking_beyond <= 150 < labels_to(concept, 0.9, 20, pool_size=150)  # measured: 110 against never (300)


def test_on_pinecone_the_boundary_below_a_full_pool_comes_from_the_sample_at_no_call(monkeypatch):
    concept = clustered_concept(n=3000, dim=64, seed=3)
    client = FakePinecone()
    index = connect(client, 64)
    index.add(concept.ids, concept.vectors)
    session = Session(index, concept.prompt_vector, seed=0, pool_size=100)
    offered: list[str] = []

    def spied(*args):
        hits = beyond(*args)
        offered.extend(h.id for h in hits)
        return hits

    monkeypatch.setattr("trainer.session.beyond", spied)
    store = client.store("ct-test")
    for _ in range(20):
        session.label(concept.oracle([h.id for h in session.batch()]))
        store.requests.clear()
        offered.clear()
        batch = session.train_and_requery()
        calls = [r.op for r in store.requests]
        assert calls.count("query") == 1 and calls.count("fetch") <= 1  # the labels' vectors, as every round
        below = [h.id for h in batch if h.id in offered]
        if below:
            break
    else:
        raise AssertionError("no batch in 20 rounds took a boundary pick from below a full pool")
    assert set(below) <= set(session.collection_sample()) and session.labels.keys().isdisjoint(below)
    assert session.scores(index.fetch(below)) == pytest.approx([h.score for h in batch if h.id in below])


def test_a_full_pool_draws_no_sample_while_the_labels_hold_too_few_non_matches(monkeypatch):
    # The first batch of the planted concept is ten matches, and the next pool looks full: the gate is closed, so the
    # round draws no sample of the collection for nothing (about 0.1 s at 1M vectors).
    concept = planted_concept(n=8000, dim=512, seed=0)
    index = LocalIndex.from_vectors(concept.ids, concept.vectors)
    session = Session(index, concept.prompt_vector, seed=0)
    draws = []
    real = collection_sample
    monkeypatch.setattr("trainer.session_quality.collection_sample", lambda *args: draws.append(args) or real(*args))
    labels = concept.oracle([h.id for h in session.batch()])
    session.label(labels)
    session.train_and_requery()
    assert session.explore_reason == EXPLORE_FULL and sum(v < 0 for v in labels.values()) < BEYOND_AFTER
    assert draws == []
