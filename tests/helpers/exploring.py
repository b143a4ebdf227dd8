"""A session that looks outside its search from its first batch on (trainer/exploration.py), built to order."""

from __future__ import annotations

import numpy as np

from trainer.classifier import LinearProbe
from trainer.index.local import LocalIndex
from trainer.session import Session


def exploring_session(bias: float, **options) -> Session:
    """A session over 200 random items whose classifier expects every item to be a match (a large bias) or none (a
    very negative one), so that ``mixed`` explores from its first batch on, with a pool of 20 of them."""
    ids = [f"item-{i:03d}" for i in range(200)]
    vectors = np.random.default_rng(0).normal(size=(200, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = LocalIndex.from_vectors(ids, vectors)
    probe = LinearProbe.from_prompt(vectors[0], scale=1.0, bias=bias, prior_strength=1e6)
    return Session(index, vectors[0], classifier=probe, pool_size=20, **options)
