"""The labelling loop on synthetic embeddings with a planted concept: LinearProbe, strategies and Session."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.classifier import LinearProbe, label_targets
from trainer.index.local import LocalIndex
from trainer.session import Session
from trainer.strategies import STRATEGIES, get_strategy
from trainer.synthetic import average_precision, planted_concept


@pytest.fixture(scope="module")
def concept():
    return planted_concept(n=3000, dim=32, seed=1)


@pytest.fixture
def index(concept):
    return LocalIndex.from_vectors(concept.ids, concept.vectors)


def run_rounds(session: Session, concept, rounds: int) -> list[float]:
    """Label each batch as a careful person would; return AP over the whole collection after each round."""
    aps = [average_precision(session.scores(concept.vectors), concept.truth)]
    for _ in range(rounds):
        session.label(concept.oracle([h.id for h in session.batch()]))
        session.train_and_requery()
        aps.append(average_precision(session.scores(concept.vectors), concept.truth))
    return aps


# ----------------------------------------------------------------------------------------------------- classifier
def test_label_mapping_sign_is_class_magnitude_is_confidence_zero_trains_nothing():
    targets, weights = label_targets(np.array([1.0, -0.5, 0.0, 0.2], np.float32))
    assert targets.tolist() == [1, 0, 0, 1]
    assert weights.tolist() == pytest.approx([1.0, 0.5, 0.0, 0.2])


@pytest.mark.parametrize("bad", [[1.5], [-1.01], [float("nan")], [float("inf")]])
def test_labels_outside_minus_one_to_one_are_refused(bad):
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        label_targets(np.array(bad, np.float32))


def test_zero_shot_probe_ranks_exactly_like_the_prompt(concept):
    probe = LinearProbe.from_prompt(concept.prompt_vector, scale=30.0, bias=-20.0)
    assert np.array_equal(
        np.argsort(-probe.logits(concept.vectors), kind="stable"),
        np.argsort(-(concept.vectors @ concept.prompt_vector), kind="stable"),
    )


def test_fit_with_only_zero_labels_leaves_the_prior_untouched(concept):
    probe = LinearProbe.from_prompt(concept.prompt_vector, scale=30.0, bias=-20.0)
    before = probe.weight
    report = probe.fit(concept.vectors[:5], np.zeros(5, np.float32))
    assert report.labels_used == 0
    np.testing.assert_array_equal(probe.weight, before)


def test_fit_depends_on_the_labels_not_on_how_often_it_was_called(concept):
    probe = LinearProbe.from_prompt(concept.prompt_vector, scale=30.0, bias=-20.0)
    labels = np.where(concept.truth[:40], 1.0, -1.0).astype(np.float32)
    probe.fit(concept.vectors[:40], labels)
    once = probe.weight
    probe.fit(concept.vectors[:40], labels)
    np.testing.assert_allclose(probe.weight, once, atol=1e-5)


def test_probe_refuses_embeddings_of_the_wrong_size_naming_both(concept):
    probe = LinearProbe.from_prompt(concept.prompt_vector, scale=1.0, bias=0.0, base_model="tiny-clip")
    with pytest.raises(ValueError, match=r"\(32,\)-dimensional embeddings of tiny-clip; got shape \(2, 8\)"):
        probe.predict_proba(np.zeros((2, 8), np.float32))


def test_probe_save_and_load_give_bit_identical_scores(concept, tmp_path):
    probe = LinearProbe.from_prompt(concept.prompt_vector, scale=30.0, bias=-20.0, prompt="a thing", base_model="m")
    probe.fit(concept.vectors[:30], np.where(concept.truth[:30], 1.0, -1.0).astype(np.float32))
    probe.save_pretrained(tmp_path / "probe")
    loaded = LinearProbe.from_pretrained(tmp_path / "probe")
    assert (loaded.prompt, loaded.base_model, loaded.dim) == ("a thing", "m", 32)
    assert np.array_equal(loaded.predict_proba(concept.vectors), probe.predict_proba(concept.vectors))
    np.testing.assert_array_equal(loaded.prior_weight.numpy(), probe.prior_weight.numpy())


# ----------------------------------------------------------------------------------------------------- strategies
@pytest.mark.parametrize("name", list(STRATEGIES))
def test_every_strategy_returns_k_distinct_positions_within_the_pool(name):
    proba = np.linspace(0.99, 0.01, 50)
    chosen = get_strategy(name)(proba, 10, np.random.default_rng(0))
    assert len(chosen) == 10 and len(set(chosen.tolist())) == 10
    assert all(0 <= p < 50 for p in chosen)
    assert len(get_strategy(name)(proba[:3], 10, np.random.default_rng(0))) == 3


def test_boundary_picks_the_least_certain_and_top_the_best():
    proba = np.array([0.99, 0.9, 0.52, 0.3, 0.49, 0.01])
    assert sorted(get_strategy("boundary")(proba, 2, np.random.default_rng(0)).tolist()) == [2, 4]
    assert get_strategy("top")(proba, 2, np.random.default_rng(0)).tolist() == [0, 1]
    # mixed: the best one, then the least certain one (0.49 is nearer 0.5 than 0.52)
    assert sorted(get_strategy("mixed")(proba, 2, np.random.default_rng(0)).tolist()) == [0, 4]


def test_an_unknown_strategy_lists_the_valid_ones(index, concept):
    with pytest.raises(ValueError, match="choose one of top, boundary, mixed, random"):
        get_strategy("greedy")
    with pytest.raises(ValueError, match="top, boundary, mixed, random, original"):
        Session(index, concept.prompt_vector, strategy="greedy")


# ----------------------------------------------------------------------------------------------------- session
def test_labels_make_the_classifier_better_than_zero_shot(index, concept):
    aps = run_rounds(Session(index, concept.prompt_vector, seed=0), concept, rounds=5)
    assert aps[-1] > aps[0] + 0.1
    assert min(aps[1:]) >= aps[0] - 1e-6  # the default never does worse than the prompt alone


def test_our_recipe_beats_the_original_article(index, concept):
    ours = run_rounds(Session(index, concept.prompt_vector, seed=0), concept, rounds=5)
    original = run_rounds(Session(index, concept.prompt_vector, strategy="original", seed=0), concept, rounds=5)
    assert ours[-1] > original[-1] + 0.05


def test_a_session_never_shows_an_item_twice(index, concept):
    session = Session(index, concept.prompt_vector, strategy="random", batch_size=25, seed=3)
    shown: list[str] = []
    for _ in range(6):
        batch = session.batch()
        shown += [h.id for h in batch]
        session.label({batch[0].id: 1.0})
        session.train_and_requery()
    assert len(shown) == len(set(shown)) == 150


def test_sessions_are_deterministic_for_a_seed(index, concept):
    def ids(seed):
        session = Session(index, concept.prompt_vector, strategy="random", seed=seed)
        run_rounds(session, concept, rounds=2)
        return [h.id for h in session.batch()]

    assert ids(7) == ids(7)
    assert ids(7) != ids(8)


def test_undo_restores_the_exact_previous_state(index, concept):
    session = Session(index, concept.prompt_vector, seed=0)
    run_rounds(session, concept, rounds=2)
    batch = session.batch()
    session.label({batch[0].id: 1.0, batch[1].id: -1.0})
    before = (session.batch(), session.labels, session.history, session.seen, session.classifier.weight)
    next_batch = session.train_and_requery()
    assert [h.id for h in next_batch] != [h.id for h in batch]
    assert session.undo() == before[0]
    after = (session.batch(), session.labels, session.history, session.seen, session.classifier.weight)
    assert after[:4] == before[:4]
    np.testing.assert_array_equal(after[4], before[4])
    assert session.train_and_requery() == next_batch  # the same seed state: the same next batch again


def test_undo_with_nothing_to_undo_says_so(index, concept):
    with pytest.raises(ValueError, match="nothing to undo"):
        Session(index, concept.prompt_vector).undo()


def test_two_sessions_on_one_index_never_see_each_others_labels(index, concept):
    alice = Session(index, concept.prompt_vector, seed=0)
    bob = Session(index, concept.prompt_vector, seed=0)
    assert [h.id for h in alice.batch()] == [h.id for h in bob.batch()]
    alice.label({h.id: 1.0 for h in alice.batch()})
    alice.train_and_requery()
    assert bob.labels == {} and bob.round == 1
    assert [h.id for h in bob.train_and_requery()] != [h.id for h in alice.batch()]  # bob's own, untrained, path
    assert not alice.seen & {"never"} and len(index) == len(concept.ids)


@pytest.mark.parametrize("value", [1.0, -1.0])
def test_all_positive_or_all_negative_labels_train_without_error(index, concept, value):
    session = Session(index, concept.prompt_vector, seed=0)
    for _ in range(3):
        session.label({h.id: value for h in session.batch()})
        session.train_and_requery()
    probs = session.scores(concept.vectors)
    assert np.isfinite(probs).all()
    assert session.history[-1].positives == (30 if value > 0 else 0)


def test_a_tiny_collection_exhausts_cleanly():
    concept = planted_concept(n=23, dim=8, seed=2)
    session = Session(LocalIndex.from_vectors(concept.ids, concept.vectors), concept.prompt_vector, batch_size=10)
    sizes = [len(session.batch())]
    while not session.exhausted:
        session.label(concept.oracle([h.id for h in session.batch()]))
        sizes.append(len(session.train_and_requery()))
    assert sizes == [10, 10, 3, 0]
    assert session.batch() == []
    assert session.train_and_requery() == []  # asking again is harmless


def test_labels_for_items_never_shown_or_out_of_range_are_refused_and_change_nothing(index, concept):
    session = Session(index, concept.prompt_vector, seed=0)
    shown = session.batch()[0].id
    unshown = next(i for i in concept.ids if i not in session.seen)
    for bad, message in [({unshown: 1.0}, "never shown"), ({shown: 2.0}, r"\[-1, 1\]"), ({shown: "yes"}, "number")]:
        with pytest.raises(ValueError, match=message):
            session.label({shown: 0.5, **bad})
        assert session.labels == {}


def test_a_failed_round_keeps_every_label(index, concept, monkeypatch):
    session = Session(index, concept.prompt_vector, seed=0)
    session.label(concept.oracle([h.id for h in session.batch()]))
    before = (session.labels, session.batch(), session.round)

    def unreachable(*args, **kwargs):
        raise ConnectionError("index unreachable")

    monkeypatch.setattr(index, "query", unreachable)
    with pytest.raises(ConnectionError):
        session.train_and_requery()
    assert (session.labels, session.batch(), session.round) == before


def test_history_counts_labels_and_positives_per_round(index, concept):
    session = Session(index, concept.prompt_vector, seed=0)
    run_rounds(session, concept, rounds=3)
    history = session.history
    assert [h.round for h in history] == [1, 2, 3]
    assert [h.shown for h in history] == [10, 20, 30]
    assert all(h.positives + h.negatives == h.labelled for h in history)
    assert history[-1].positives == sum(v > 0 for v in session.labels.values())


def test_bad_prompt_vectors_and_batch_sizes_are_refused(index):
    with pytest.raises(ValueError, match="32 finite numbers"):
        Session(index, np.zeros(16, np.float32))
    with pytest.raises(ValueError, match="batch_size"):
        Session(index, np.ones(32, np.float32), batch_size=0)


def test_label_rounds_record_when_each_label_was_given_and_follow_undo(index, concept):
    session = Session(index, concept.prompt_vector, seed=0)
    first = [h.id for h in session.batch()]
    session.label(concept.oracle(first))
    second = [h.id for h in session.train_and_requery()]
    session.label({**concept.oracle(second), first[0]: 0.0})  # a relabel counts in the round it happened
    assert session.label_rounds == {**dict.fromkeys(first[1:], 1), **dict.fromkeys([*second, first[0]], 2)}
    assert session.label_rounds.keys() == session.labels.keys()
    before_training = session.label_rounds
    third = [h.id for h in session.train_and_requery()]
    session.label(concept.oracle(third))
    assert set(session.label_rounds.values()) == {1, 2, 3}
    session.undo()  # back to before round 2 was trained: the round-3 labels go with it
    assert session.label_rounds == before_training


def test_newton_and_lbfgs_fits_reach_the_same_optimum(concept, monkeypatch):
    import trainer.classifier as classifier_module

    rng = np.random.default_rng(4)
    rows = rng.choice(len(concept.ids), 120, replace=False)
    labels = (np.where(concept.truth[rows], 1.0, -1.0) * rng.uniform(0.3, 1, len(rows))).astype(np.float32)

    def fitted(newton_limit: int) -> tuple[np.ndarray, float, float]:
        monkeypatch.setattr(classifier_module, "_NEWTON_MAX_LABELS", newton_limit)
        probe = LinearProbe.from_prompt(concept.prompt_vector, scale=30.0, bias=-20.0)
        report = probe.fit(concept.vectors[rows], labels)
        return probe.weight, probe.bias, report.loss

    newton_w, newton_b, newton_loss = fitted(10_000)
    lbfgs_w, lbfgs_b, lbfgs_loss = fitted(0)
    assert newton_loss <= lbfgs_loss + 1e-4  # exact Newton is at least as close to the optimum
    assert newton_loss == pytest.approx(lbfgs_loss, rel=1e-3)
    np.testing.assert_allclose(newton_w, lbfgs_w, atol=2e-2 * np.abs(lbfgs_w).max())
    assert newton_b == pytest.approx(lbfgs_b, abs=0.05 * abs(lbfgs_b) + 0.05)


def test_resume_takes_over_labels_and_trains_the_same_classifier(index, concept):
    first = Session(index, concept.prompt_vector, seed=0)
    run_rounds(first, concept, rounds=3)
    again = Session(index, concept.prompt_vector, seed=0)  # e.g. after the app restarted
    batch = again.resume(first.labels)
    assert again.labels == first.labels and set(first.labels) <= again.seen
    assert not {h.id for h in batch} & set(first.labels)
    np.testing.assert_allclose(again.classifier.weight, first.classifier.weight, atol=1e-4)
    assert again.undo() and again.labels == {}


def test_resume_refuses_unknown_ids_and_bad_scores_and_changes_nothing(index, concept):
    session = Session(index, concept.prompt_vector, seed=0)
    before = (session.batch(), session.labels, session.seen)
    for bad, message in [({"not-an-item": 1.0}, "not in this collection"), ({concept.ids[0]: 3.0}, r"\[-1, 1\]")]:
        with pytest.raises(ValueError, match=message):
            session.resume(bad)
        assert (session.batch(), session.labels, session.seen) == before


def test_the_original_recipe_with_no_labels_leaves_the_classifier_alone(index, concept):
    session = Session(index, concept.prompt_vector, strategy="original")
    before = session.classifier.weight
    session.train_and_requery()
    np.testing.assert_array_equal(session.classifier.weight, before)
    assert session.history[-1].fit.loss == 0.0
