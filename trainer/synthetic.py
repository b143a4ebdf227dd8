"""Synthetic collections with a planted concept, for tests and benchmarks that must not need a model.

Each item has a few binary attributes, each a direction in embedding space, plus noise. The concept is a
combination (attribute 0 AND attribute 1). The "prompt" points at both, but also at a distractor attribute and a
random direction, the way a real text embedding is only roughly aligned with what a person means. So zero-shot
ranking is good but imperfect, and labels can fix it: the same situation as CLIP on "dogs in the snow".

Two harder kinds, where the prompt describes the concept only in part (``label_efficiency`` measures on all):

- ``partial_concept``: the concept is still attribute 0 AND attribute 1, but the prompt names only attribute 0
  ("a red shape" when the person means red hearts); labels must teach the second attribute.
- ``clustered_concept``: the concept is several separate clusters, and the prompt points at one of them ("dogs"
  when the person means dogs, cats and rabbits); labels must find the others.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["PlantedConcept", "average_precision", "clustered_concept", "partial_concept", "planted_concept"]


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
    prompt_names_both: bool = True,
) -> PlantedConcept:
    """The concept is attribute 0 AND attribute 1; the prompt points at both (at attribute 0 only, without
    ``prompt_names_both``), at the distractor attribute 2 and, by ``misalignment``, at a random direction."""
    rng = np.random.default_rng(seed)
    directions = np.linalg.qr(rng.normal(size=(dim, attributes + 1)))[0].T  # (A+1, D) orthonormal
    present = rng.random((n, attributes)) < prevalence  # (N, A)
    truth = present[:, 0] & present[:, 1]
    prompt = (
        directions[0]
        + prompt_names_both * directions[1]
        + distractor * directions[2]
        + misalignment * directions[attributes]
    )
    return _noisy_collection(rng, present @ directions[:attributes] * 1.0, noise, truth, prompt)


def partial_concept(n: int = 5000, dim: int = 64, seed: int = 0, **options: float) -> PlantedConcept:
    """``planted_concept`` whose prompt names attribute 0 but not attribute 1, which the concept also needs."""
    return planted_concept(n, dim, seed, prompt_names_both=False, **options)


def clustered_concept(
    n: int = 5000,
    dim: int = 64,
    seed: int = 0,
    *,
    clusters: int = 3,
    other_clusters: int = 9,
    prevalence: float = 0.2,
    closeness: float = 0.6,
    noise: float = 1.0,
    misalignment: float = 0.6,
) -> PlantedConcept:
    """The concept is ``clusters`` clusters holding ``prevalence`` of the items between them; the rest lie in
    ``other_clusters`` clusters, each sharing ``closeness`` of its centre with a concept cluster's (the near
    misses a person must teach apart). The prompt points at the first concept cluster only, plus, by
    ``misalignment``, a random direction."""
    rng = np.random.default_rng(seed)
    total = clusters + other_clusters
    basis = np.linalg.qr(rng.normal(size=(dim, total + 1)))[0].T  # (total + 1, D) orthonormal
    centres = basis[:total].copy()
    for k in range(clusters, total):  # a near miss of concept cluster k % clusters
        centres[k] = closeness * basis[k % clusters] + np.sqrt(1 - closeness**2) * basis[k]
    member = np.where(
        rng.random(n) < prevalence, rng.integers(0, clusters, n), rng.integers(clusters, total, n)
    )  # (N,) each item's cluster
    return _noisy_collection(rng, centres[member], noise, member < clusters, basis[0] + misalignment * basis[total])


def _noisy_collection(
    rng: np.random.Generator, signal: np.ndarray, noise: float, truth: np.ndarray, prompt: np.ndarray
) -> PlantedConcept:
    """Items ``signal`` (N, D) plus Gaussian noise of total size ``noise``, both items and prompt unit-length."""
    n, dim = signal.shape
    vectors = signal + rng.normal(scale=noise / np.sqrt(dim), size=(n, dim))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = [f"item-{i:06d}" for i in range(n)]
    unit = prompt / np.linalg.norm(prompt)
    return PlantedConcept(ids, vectors.astype(np.float32), truth, unit.astype(np.float32))


def average_precision(scores: np.ndarray, truth: np.ndarray) -> float:
    """Mean of precision@k over the ranks k of the true items (ties broken by order): no sklearn needed."""
    truth = np.asarray(truth, dtype=bool)
    if not truth.any():
        raise ValueError("average precision is undefined without a single positive item")
    order = np.argsort(-np.asarray(scores), kind="stable")
    hits = truth[order]
    precision_at_hit = np.cumsum(hits)[hits] / (np.flatnonzero(hits) + 1)
    return float(precision_at_hit.mean())
