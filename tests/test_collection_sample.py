"""The collection's sample and leading axes, drawn once per index and seed for every session: the same answer as
each session's own draw, made once, and made anew for another seed, size or a grown index."""

from __future__ import annotations

import numpy as np
import pytest

from trainer import collection_sample as shared
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
    ids, axes = shared.collection_sample(index, 400, seed=7)
    own = index.sample(400, np.random.default_rng([7, shared.STREAM]))
    assert list(ids) == own
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
    assert shared.collection_sample(object(), 400, seed=7) is None  # an index that cannot sample: no draw


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
