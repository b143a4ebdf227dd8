"""The collection's sample and leading axes, drawn once per index and seed for every session: the same answer as
each session's own draw, made once, and made anew for another seed, size or a grown index."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from tests.helpers.fake_pinecone import FakePinecone, connect
from trainer import collection_sample as shared
from trainer.index import IndexUnavailable
from trainer.index.local import LocalIndex
from trainer.session import Session
from trainer.suspects import leading_axes
from trainer.synthetic import planted_concept


@pytest.fixture
def concept():
    return planted_concept(n=1500, dim=32, seed=4, prevalence=0.1, noise=0.6, distractor=0.3)


def test_the_draw_is_a_sessions_own_made_once_for_every_session_of_the_seed(concept, monkeypatch):
    index = LocalIndex.from_vectors(concept.ids, concept.vectors)
    computed = []
    monkeypatch.setattr(shared, "leading_axes", lambda vectors: computed.append(1) or leading_axes(vectors))
    ids, axes, local = shared.collection_sample(index, 400, seed=7)
    own = index.sample(400, np.random.default_rng([7, shared.STREAM]))
    assert list(ids) == own
    # The sample as an index of its own (where an explored match's neighbours are looked for): its ids and vectors.
    assert local.ids == own and np.array_equal(local.fetch(own), index.fetch(own))
    expected = leading_axes(index.fetch(own))
    assert np.array_equal(axes.mean, expected.mean) and np.array_equal(axes.basis, expected.basis)
    again = shared.collection_sample(index, 400, seed=7)
    assert again[1] is axes and len(computed) == 1  # the second session asks: nothing computed
    with pytest.raises(ValueError, match="read-only"):
        axes.basis[0, 0] = 1.0  # shared between sessions: nobody may change it
    assert shared.collection_sample(index, 400, seed=8)[0] != ids and len(computed) == 2  # another seed
    assert shared.collection_sample(index, 300, seed=7)[0] != ids and len(computed) == 3  # another size
    index.add(["extra"], concept.vectors[:1])
    assert shared.collection_sample(index, 400, seed=7)[1] is not axes and len(computed) == 4  # a grown index
    assert shared.collection_sample(object(), 400, seed=7) is None  # an index that can neither sample nor list


def pinecone_with(concept, client: FakePinecone | None = None):
    index = connect(client or FakePinecone(), concept.vectors.shape[1])
    index.upsert_all(concept.ids, concept.vectors)  # as the app builds it: the index knows the ids it wrote
    return index


def test_an_index_that_lists_its_ids_draws_uniformly_among_them_from_the_seeds_stream(concept):
    """Pinecone cannot sample, but it can list its ids: the draw is a uniform choice among them (sorted, so that
    which ids, not the order a backend learnt them, decides), from the same stream as a local draw."""
    client = FakePinecone()
    index = pinecone_with(concept, client)
    ids, axes, local = shared.collection_sample(index, 400, seed=7)
    assert local.list_ids() == list(ids)  # the sample as an index of its own: what exploration draws from
    ordered = sorted(concept.ids)
    rows = np.random.default_rng([7, shared.STREAM]).choice(len(ordered), size=400, replace=False)
    assert list(ids) == [ordered[r] for r in rows]
    expected = leading_axes(concept.vectors[[concept.ids.index(i) for i in ids]])
    np.testing.assert_allclose(axes.basis, expected.basis, atol=1e-5)
    store = client.store("ct-test")
    store.requests.clear()
    assert shared.collection_sample(index, 400, seed=7)[1] is axes  # made once: the second ask costs the count only
    assert [r.op for r in store.requests] == ["describe_index_stats"]
    listed = connect(client, index.dim)  # a process that did not write the namespace lists it: the same draw
    assert shared.collection_sample(listed, 400, seed=7)[0] == ids and store.requests_of("list")
    assert len(shared.collection_sample(index, 4000, seed=7)[0]) == len(concept.ids)  # all, where it holds fewer


def test_a_pinecone_sessions_rounds_stay_one_query_and_the_draw_is_made_once_for_every_session(concept):
    """ARCHITECTURE.md: on Pinecone, one query call a round. The draw is a one-off at the first need (the first batch
    that looks beyond the search, or the first fit with 100 labels), for every session of the seed: a few fetch calls
    and no list call where the process wrote the namespace. Every other round reads as before (a query, the labels'
    fetch, a count), those showing items from outside the search included: their vectors come with the sample."""
    client = FakePinecone()
    index = pinecone_with(concept, client)
    store = client.store("ct-test")

    def rounds(session: Session, n: int) -> tuple[list[Counter], list[bool]]:
        calls, explored = [], []
        for _ in range(n):
            store.requests.clear()
            session.label(concept.oracle([h.id for h in session.batch()]))
            session.train_and_requery()
            calls.append(Counter(r.op for r in store.requests))
            explored.append(bool(session.explored))
        return calls, explored

    first = Session(index, concept.prompt_vector, batch_size=20, seed=3)
    calls, explored = rounds(first, 6)
    assert len(first.labels) >= 100 and first.collection_sample() is not None and any(explored)
    assert explored[-1] and first.explored <= set(first.collection_sample())  # looking beyond: from the sample
    assert all(c["query"] == 1 for c in calls) and not any(c["upsert"] or c["list"] for c in calls)
    need = min(explored.index(True), 4)  # round 5 reaches 100 labels: the first fit that takes the axes
    assert 1 < calls[need]["fetch"] <= 1 + len(concept.ids) // 300 + 1  # the labels' fetch, then the draw's
    assert all(c == Counter(query=1, fetch=1, describe_index_stats=1) for r, c in enumerate(calls) if r != need)
    second = Session(index, concept.prompt_vector, batch_size=20, seed=3)
    calls, explored = rounds(second, 6)
    # The first session's draw serves: at its first need the second session only reads the count (the draw's key).
    assert any(explored) and all(c["query"] == 1 and c["fetch"] == 1 for c in calls)
    assert sum(c["describe_index_stats"] for c in calls) == len(calls) + 1
    assert second.collection_sample() == first.collection_sample()
    assert second.suspect_labels(5)[0].collection_neighbours is not None


def test_a_draw_pinecone_refuses_is_noted_and_the_session_goes_on_without_it(concept):
    client = FakePinecone()
    index = pinecone_with(concept, client)
    session = Session(index, concept.prompt_vector, batch_size=20, seed=5)
    client.store("ct-test").fail("fetch", 403, after=1, message="key lacks read access")  # the labels' fetch passes
    session.label(concept.oracle([h.id for h in session.batch()]))
    suspects = session.suspect_labels(5)  # the first need: the draw fails, the suspects rank without its witness
    assert suspects and all(s.collection_neighbours is None for s in suspects)
    assert session.collection_sample() is None and session.collection_axes() is None
    assert session.collection_note.startswith("No sample of the collection: Pinecone refused to fetch")
    assert "key lacks read access" in session.collection_note and session.collection_note.endswith("without it.")
    with pytest.raises(IndexUnavailable):  # not kept: a later session (or the shared draw) tries again
        client.store("ct-test").fail("fetch", 403)
        shared.collection_sample(index, 4000, seed=5)
    assert Session(index, concept.prompt_vector, seed=5).collection_sample() is not None


def test_sessions_sharing_the_draw_fit_as_sessions_drawing_their_own(concept):
    """Past 100 labels the fit may take the prior along the collection's axes: two sessions on one index (the second
    takes the first one's draw) end with the weights of a session on an index of its own (its own draw)."""
    index = LocalIndex.from_vectors(concept.ids, concept.vectors)

    def weights(index: LocalIndex) -> np.ndarray:
        session = Session(index, concept.prompt_vector, batch_size=20, seed=3)
        for _ in range(7):
            session.label(concept.oracle([h.id for h in session.batch()]))
            session.train_and_requery()
        assert len(session.labels) >= 120
        return session.classifier.weight

    first, second = weights(index), weights(index)
    alone = weights(LocalIndex.from_vectors(concept.ids, concept.vectors))
    assert np.array_equal(first, second) and np.array_equal(first, alone)
