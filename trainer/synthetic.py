"""Synthetic collections with a planted concept, for tests and benchmarks that must not need a model.

Each item has a few binary attributes, each a direction in embedding space, plus noise. The concept is a
combination (attribute 0 AND attribute 1). The "prompt" points at both, but also at a distractor attribute and a
random direction, the way a real text embedding is only roughly aligned with what a person means. So zero-shot
ranking is good but imperfect, and labels can fix it: the same situation as CLIP on "dogs in the snow".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["PlantedConcept", "average_precision", "planted_concept"]


@dataclass(frozen=True)
class PlantedConcept:
    ids: list[str]
    vectors: np.ndarray  # (N, D) float32, unit rows
    truth: np.ndarray  # (N,) bool: item shows the concept
    prompt_vector: np.ndarray  # (D,) float32, unit

    def oracle(self, ids: list[str]) -> dict[str, float]:
        """What a careful person would answer: +1 for the concept, -1 otherwise."""
        rows = {id_: i for i, id_ in enumerate(self.ids)}
        return {id_: 1.0 if self.truth[rows[id_]] else -1.0 for id_ in ids}


def planted_concept(
    n: int = 5000,
    dim: int = 64,
    seed: int = 0,
    *,
    attributes: int = 6,
    prevalence: float = 0.3,
    noise: float = 1.0,
    distractor: float = 0.9,
    misalignment: float = 0.6,
) -> PlantedConcept:
    rng = np.random.default_rng(seed)
    directions = np.linalg.qr(rng.normal(size=(dim, attributes + 1)))[0].T  # (A+1, D) orthonormal
    present = rng.random((n, attributes)) < prevalence  # (N, A)
    vectors = present @ directions[:attributes] * 1.0 + rng.normal(scale=noise / np.sqrt(dim), size=(n, dim))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    truth = present[:, 0] & present[:, 1]
    prompt = directions[0] + directions[1] + distractor * directions[2] + misalignment * directions[attributes]
    prompt /= np.linalg.norm(prompt)
    ids = [f"item-{i:06d}" for i in range(n)]
    return PlantedConcept(ids, vectors.astype(np.float32), truth, prompt.astype(np.float32))


def average_precision(scores: np.ndarray, truth: np.ndarray) -> float:
    """Mean of precision@k over the ranks k of the true items (ties broken by order): no sklearn needed."""
    truth = np.asarray(truth, dtype=bool)
    if not truth.any():
        raise ValueError("average precision is undefined without a single positive item")
    order = np.argsort(-np.asarray(scores), kind="stable")
    hits = truth[order]
    precision_at_hit = np.cumsum(hits)[hits] / (np.flatnonzero(hits) + 1)
    return float(precision_at_hit.mean())
