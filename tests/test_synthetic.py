"""Planted-concept data: each kind is what its docstring says, so the benchmarks measure what they claim."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.synthetic import average_precision, clustered_concept, partial_concept, planted_concept


def direction_ap(concept) -> float:
    """AP of the best linear direction a classifier could learn (positive mean minus negative mean)."""
    w = concept.vectors[concept.truth].mean(axis=0) - concept.vectors[~concept.truth].mean(axis=0)
    return average_precision(concept.vectors @ w, concept.truth)


@pytest.mark.parametrize("make", [planted_concept, partial_concept, clustered_concept])
def test_every_kind_gives_unit_vectors_stable_ids_and_a_unit_prompt(make):
    concept = make(n=1500, dim=64, seed=3)
    assert concept.vectors.shape == (1500, 64) and concept.vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(concept.vectors, axis=1), 1, atol=1e-5)
    assert np.linalg.norm(concept.prompt_vector) == pytest.approx(1, abs=1e-5)
    assert len(set(concept.ids)) == 1500 and 0.05 < concept.truth.mean() < 0.4
    again = make(n=1500, dim=64, seed=3)
    np.testing.assert_array_equal(again.vectors, concept.vectors)


def test_a_partial_prompt_names_one_of_the_two_attributes_the_concept_needs():
    full, partial = planted_concept(n=4000, dim=128, seed=0), partial_concept(n=4000, dim=128, seed=0)
    np.testing.assert_array_equal(partial.vectors, full.vectors)  # the same collection and concept
    np.testing.assert_array_equal(partial.truth, full.truth)
    zero_shot = average_precision(partial.vectors @ partial.prompt_vector, partial.truth)
    assert zero_shot < average_precision(full.vectors @ full.prompt_vector, full.truth) - 0.3
    assert direction_ap(partial) > 0.9  # labels can still teach it: the concept is linear


def test_a_clustered_prompt_finds_one_cluster_and_misses_the_others():
    concept = clustered_concept(n=4000, dim=128, seed=0, clusters=3)
    ranked = np.argsort(-(concept.vectors @ concept.prompt_vector))
    top = ranked[: int(concept.truth.sum()) // 4]
    assert concept.truth[top].mean() > 0.95  # the prompt's own cluster comes first
    assert average_precision(concept.vectors @ concept.prompt_vector, concept.truth) < 0.6
    assert direction_ap(concept) > 0.9  # yet one direction separates all three clusters from the rest
