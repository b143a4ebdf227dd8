"""Positives left: how many matches the unseen candidates still hold, and when they run out."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.index.local import LocalIndex
from trainer.remaining import calibrate, positives_left
from trainer.session import Session
from trainer.synthetic import planted_concept


def test_the_curve_is_recovered_from_many_held_out_logits():
    rng = np.random.default_rng(0)
    z = rng.normal(scale=3, size=4000)
    truth = rng.random(4000) < 1 / (1 + np.exp(-(0.5 * z - 2)))
    a, b = calibrate(z, truth)
    assert a == pytest.approx(0.5, abs=0.1) and b == pytest.approx(-2, abs=0.3)
    assert calibrate(np.empty(0), np.empty(0, bool)) == (1.0, 0.0)  # no labels: the classifier's own curve
    a, b = calibrate(-z, truth)  # labels that contradict the scores: a flat curve at their match rate
    assert a == 0 and b == pytest.approx(np.log(truth.mean() / (1 - truth.mean())), abs=0.01)


def test_running_out_needs_a_match_found_and_an_empty_top():
    held_out, truth = np.array([4.0, 3.0, -3.0, -4.0]), np.array([True, True, False, False])
    many = positives_left(np.full(50, 3.5), held_out, truth, batch_size=10)
    few = positives_left(np.full(50, -6.0), held_out, truth, batch_size=10)
    assert many.expected > 30 and not many.running_out and many.candidates == 50
    assert few.next_batch < 1 and few.running_out
    assert few.next_batch <= few.expected < 1
    # Nothing found yet: an empty top means the prompt misses, not that every match was found.
    none_found = positives_left(np.full(50, -6.0), held_out, np.zeros(4, bool), batch_size=10)
    assert not none_found.running_out


def test_a_session_says_so_once_every_match_has_been_found():
    concept = planted_concept(n=3000, dim=32, seed=0, prevalence=0.08, noise=0.6, distractor=0.3)
    index = LocalIndex.from_vectors(concept.ids, concept.vectors)
    session = Session(index, concept.prompt_vector, seed=0)
    total = int(concept.truth.sum())
    start = session.positives_left()
    assert not start.running_out and start.next_batch > 5
    session.label(concept.oracle([h.id for h in session.batch()]))
    session.train_and_requery()
    early = session.positives_left()
    assert not early.running_out and early.expected > 5
    for _ in range(15):
        if sum(v > 0 for v in session.labels.values()) == total:
            break
        session.label(concept.oracle([h.id for h in session.batch()]))
        labelled = session.positives_left()  # the round's labels given, its search not yet run
        session.train_and_requery()
    assert sum(v > 0 for v in session.labels.values()) == total  # every match found
    done = session.positives_left()
    assert done.running_out and done.expected < 2
    session.undo()
    assert session.positives_left() == labelled  # undo brings back the candidates the round replaced


def test_after_a_round_the_estimate_refits_nothing_and_is_computed_once_per_state(monkeypatch):
    from trainer import map_fit
    from trainer.classifier import LinearProbe

    concept = planted_concept(n=2000, dim=32, seed=2, prevalence=0.08, noise=0.6, distractor=0.3)
    session = Session(LocalIndex.from_vectors(concept.ids, concept.vectors), concept.prompt_vector, seed=0)
    for _ in range(3):
        session.label(concept.oracle([h.id for h in session.batch()]))
        session.train_and_requery()
    fits, asked = [], []
    real_fit, real_loo = map_fit.fit_map, LinearProbe.leave_one_out_logits
    monkeypatch.setattr(map_fit, "fit_map", lambda *a, **k: fits.append(1) or real_fit(*a, **k))
    monkeypatch.setattr(LinearProbe, "leave_one_out_logits", lambda self, *a: asked.append(1) or real_loo(self, *a))
    after_round = session.positives_left()
    assert (len(fits), len(asked)) == (0, 1)  # the classifier was fitted on these labels: closed form, no refit
    assert session.positives_left() == after_round and len(asked) == 1  # the same state: not computed again
    session.label(concept.oracle([h.id for h in session.batch()]))
    labelled = session.positives_left()
    assert (len(fits), len(asked)) == (1, 2)  # labels given since the fit: one fit, on the side
    assert labelled.expected != after_round.expected
