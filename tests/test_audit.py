"""Choosing an audit: doubling bands over the unseen items, every one with a known, non-zero chance of being drawn."""

from __future__ import annotations

import numpy as np

from trainer.audit import band_edges, choose_audit


def test_an_audit_samples_every_band_of_the_ranking_and_its_weights_count_the_unseen():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=4000)
    eligible = np.ones(4000, bool)
    eligible[np.argsort(-logits)[:30]] = False  # the best 30 were shown in training
    rows, weights = choose_audit(logits, eligible, 20, rng)
    assert len(set(rows.tolist())) == 20 and eligible[rows].all()
    assert np.isclose(weights.sum(), eligible.sum())  # each draw stands for its band: together, every unseen item
    ranks = np.argsort(np.argsort(-logits[eligible]))  # rank among the unseen
    drawn_ranks = ranks[np.searchsorted(np.flatnonzero(eligible), rows)]
    edges = band_edges(int(eligible.sum()))
    assert set(np.searchsorted(edges, drawn_ranks, side="right") - 1) == set(range(len(edges) - 1))
    assert (drawn_ranks < edges[1]).sum() >= 2  # the top 1/128 is sampled ~30x more densely than the bottom half


def test_a_small_audit_still_gives_every_unseen_item_a_chance():
    rows, weights = choose_audit(np.arange(1000.0), np.ones(1000, bool), 3, np.random.default_rng(1))
    assert len(rows) == 3 and np.isclose(weights.sum(), 1000)
    rows, weights = choose_audit(np.arange(10.0), np.arange(10) < 4, 20, np.random.default_rng(1))
    assert sorted(rows.tolist()) == [0, 1, 2, 3] and (weights == 1).all()  # fewer left than asked: all of them
    rows, _ = choose_audit(np.arange(10.0), np.zeros(10, bool), 5, np.random.default_rng(1))
    assert len(rows) == 0
