"""Session: one person's labelling loop on synthetic embeddings with a planted concept."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers.exploring import exploring_session
from tests.helpers.planted import NoQueries, run_rounds
from trainer.exploration import EXPLORE_ITEMS
from trainer.index.local import LocalIndex
from trainer.session import EXPLORE_EMPTY, EXPLORE_FULL, Session
from trainer.strategies import STRATEGIES, get_strategy
from trainer.synthetic import planted_concept


def test_an_unknown_strategy_lists_the_valid_ones(concept_index, concept):
    with pytest.raises(ValueError, match="choose one of top, boundary, mixed, random"):
        get_strategy("greedy")
    with pytest.raises(ValueError, match="top, boundary, mixed, random, original"):
        Session(concept_index, concept.prompt_vector, strategy="greedy")


def test_labels_make_the_classifier_better_than_zero_shot(concept_index, concept):
    aps = run_rounds(Session(concept_index, concept.prompt_vector, seed=0), concept, rounds=5)
    assert aps[-1] > aps[0] + 0.1
    assert min(aps[1:]) >= aps[0] - 1e-6  # the default never does worse than the prompt alone


def test_our_recipe_beats_the_original_article(concept_index, concept):
    ours = run_rounds(Session(concept_index, concept.prompt_vector, seed=0), concept, rounds=5)
    original = run_rounds(Session(concept_index, concept.prompt_vector, strategy="original", seed=0), concept, rounds=5)
    assert ours[-1] > original[-1] + 0.05


def test_a_session_never_shows_an_item_twice(concept_index, concept):
    session = Session(concept_index, concept.prompt_vector, strategy="random", batch_size=25, seed=3)
    shown: list[str] = []
    for _ in range(6):
        batch = session.batch()
        shown += [h.id for h in batch]
        session.label({batch[0].id: 1.0})
        session.train_and_requery()
    assert len(shown) == len(set(shown)) == 150


def test_sessions_are_deterministic_for_a_seed(concept_index, concept):
    def ids(seed):
        session = Session(concept_index, concept.prompt_vector, strategy="random", seed=seed)
        run_rounds(session, concept, rounds=2)
        return [h.id for h in session.batch()]

    assert ids(7) == ids(7)
    assert ids(7) != ids(8)


def test_undo_restores_the_exact_previous_state(concept_index, concept):
    session = Session(concept_index, concept.prompt_vector, seed=0)
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


def test_undo_with_nothing_to_undo_says_so(concept_index, concept):
    with pytest.raises(ValueError, match="nothing to undo"):
        Session(concept_index, concept.prompt_vector).undo()


def test_two_sessions_on_one_index_never_see_each_others_labels(concept_index, concept):
    alice = Session(concept_index, concept.prompt_vector, seed=0)
    bob = Session(concept_index, concept.prompt_vector, seed=0)
    assert [h.id for h in alice.batch()] == [h.id for h in bob.batch()]
    alice.label({h.id: 1.0 for h in alice.batch()})
    alice.train_and_requery()
    assert bob.labels == {} and bob.round == 1
    assert [h.id for h in bob.train_and_requery()] != [h.id for h in alice.batch()]  # bob's own, untrained, path
    assert not alice.seen & {"never"} and len(concept_index) == len(concept.ids)


@pytest.mark.parametrize("value", [1.0, -1.0])
def test_all_positive_or_all_negative_labels_train_without_error(concept_index, concept, value):
    session = Session(concept_index, concept.prompt_vector, seed=0)
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


def test_labels_for_items_never_shown_or_out_of_range_are_refused_and_change_nothing(concept_index, concept):
    session = Session(concept_index, concept.prompt_vector, seed=0)
    shown = session.batch()[0].id
    unshown = next(i for i in concept.ids if i not in session.seen)
    for bad, message in [({unshown: 1.0}, "never shown"), ({shown: 2.0}, r"\[-1, 1\]"), ({shown: "yes"}, "number")]:
        with pytest.raises(ValueError, match=message):
            session.label({shown: 0.5, **bad})
        assert session.labels == {}


def test_a_failed_round_keeps_every_label(concept_index, concept, monkeypatch):
    session = Session(concept_index, concept.prompt_vector, seed=0)
    session.label(concept.oracle([h.id for h in session.batch()]))
    before = (session.labels, session.batch(), session.round)

    def unreachable(*args, **kwargs):
        raise ConnectionError("concept_index unreachable")

    monkeypatch.setattr(concept_index, "query", unreachable)
    with pytest.raises(ConnectionError):
        session.train_and_requery()
    assert (session.labels, session.batch(), session.round) == before


def test_history_counts_labels_and_positives_per_round(concept_index, concept):
    session = Session(concept_index, concept.prompt_vector, seed=0)
    run_rounds(session, concept, rounds=3)
    history = session.history
    assert [h.round for h in history] == [1, 2, 3]
    assert [h.shown for h in history] == [10, 20, 30]
    assert all(h.positives + h.negatives == h.labelled for h in history)
    assert history[-1].positives == sum(v > 0 for v in session.labels.values())


def test_bad_prompt_vectors_and_batch_sizes_are_refused(concept_index):
    with pytest.raises(ValueError, match="32 finite numbers"):
        Session(concept_index, np.zeros(16, np.float32))
    with pytest.raises(ValueError, match="batch_size"):
        Session(concept_index, np.ones(32, np.float32), batch_size=0)


def test_label_rounds_record_when_each_label_was_given_and_follow_undo(concept_index, concept):
    session = Session(concept_index, concept.prompt_vector, seed=0)
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


def test_resume_takes_over_labels_and_trains_the_same_classifier(concept_index, concept):
    first = Session(concept_index, concept.prompt_vector, seed=0)
    run_rounds(first, concept, rounds=3)
    again = Session(concept_index, concept.prompt_vector, seed=0)  # e.g. after the app restarted
    batch = again.resume(first.labels)
    assert again.labels == first.labels and set(first.labels) <= again.seen
    assert not {h.id for h in batch} & set(first.labels)
    np.testing.assert_allclose(again.classifier.weight, first.classifier.weight, atol=1e-4)
    assert again.undo() and again.labels == {}


def test_a_session_trained_round_by_round_equals_one_fitted_once_on_its_labels(concept_index, concept):
    """Each round's fit reuses the last one's (the labels' Gram matrix, warm starts); a resumed session fits its
    labels from nothing. Twenty rounds on, they hold the same classifier and choose the same next batch. (With
    ``boundary``: ``mixed``'s make-up also follows which shown items were its top picks, which labels do not say.)"""
    first = Session(concept_index, concept.prompt_vector, strategy="boundary", seed=3)
    run_rounds(first, concept, rounds=20)
    again = Session(concept_index, concept.prompt_vector, strategy="boundary", seed=3)
    batch = again.resume(first.labels)
    assert len(first.labels) == 200 and again.classifier.last_strength == first.classifier.last_strength
    size = np.abs(first.classifier.weight).max()
    np.testing.assert_allclose(again.classifier.weight, first.classifier.weight, rtol=0, atol=1e-5 * size)
    assert [h.id for h in batch] == [h.id for h in first.batch()]


def test_resume_refuses_unknown_ids_and_bad_scores_and_changes_nothing(concept_index, concept):
    session = Session(concept_index, concept.prompt_vector, seed=0)
    before = (session.batch(), session.labels, session.seen)
    for bad, message in [({"not-an-item": 1.0}, "not in this collection"), ({concept.ids[0]: 3.0}, r"\[-1, 1\]")]:
        with pytest.raises(ValueError, match=message):
            session.resume(bad)
        assert (session.batch(), session.labels, session.seen) == before


def test_the_original_recipe_with_no_labels_leaves_the_classifier_alone(concept_index, concept):
    session = Session(concept_index, concept.prompt_vector, strategy="original")
    before = session.classifier.weight
    session.train_and_requery()
    np.testing.assert_array_equal(session.classifier.weight, before)
    assert session.history[-1].fit.loss == 0.0


# ------------------------------------------------------------------------------------------------ mid-session changes
def label_batch(session: Session, concept) -> None:
    session.label(concept.oracle([h.id for h in session.batch()]))


def test_settings_changed_mid_session_apply_from_the_next_round_and_are_reported(concept_index, concept):
    session = Session(concept_index, concept.prompt_vector, batch_size=10, seed=0)
    label_batch(session, concept)
    labels = session.labels
    changes = session.configure(strategy="top", batch_size=15, prior_strength=3.0)
    assert changes == {"strategy": ("mixed", "top"), "batch_size": (10, 15), "prior_strength": (None, 3.0)}
    assert len(session.batch()) == 10 and session.labels == labels  # the batch on screen and its labels stay
    batch = session.train_and_requery()
    assert len(batch) == 15 and session.classifier.prior_strength == 3.0
    scores = [h.score for h in batch]
    assert scores == sorted(scores, reverse=True)  # "top": the best first
    assert session.configure(strategy="top", batch_size=15, prior_strength=3.0) == {}
    assert session.configure(prior_strength=None) == {"prior_strength": (3.0, None)}  # back to automatic
    assert session.classifier.prior_strength is None


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"strategy": "greedy"}, "unknown strategy 'greedy'"),
        ({"strategy": "original"}, "start a new session"),
        ({"batch_size": 0}, "positive integer"),
        ({"prior_strength": float("nan")}, "positive number"),
        ({"prompt_vector": np.zeros(32, np.float32)}, "not all 0"),
    ],
    ids=["unknown strategy", "to the original recipe", "batch size 0", "NaN strength", "zero prompt"],
)
def test_a_bad_setting_changes_nothing(concept_index, concept, options, message):
    session = Session(concept_index, concept.prompt_vector, seed=0)
    with pytest.raises(ValueError, match=message):
        session.configure(**{"prior_strength": 2.0, **options})
    assert (session.strategy, session.batch_size, session.classifier.prior_strength) == ("mixed", 10, None)


def test_a_new_negative_prompt_turns_the_prior_and_keeps_its_scale(concept_index, concept):
    session = Session(concept_index, concept.prompt_vector, seed=0)
    scale = float(session.classifier.prior_weight.norm())
    turned = concept.prompt_vector - 0.5 * concept.vectors[0]
    assert set(session.configure(prompt_vector=turned, negative_prompt="stripes")) == {"prompt", "negative_prompt"}
    assert session.classifier.negative_prompt == "stripes"
    prior = session.classifier.prior_weight.numpy()
    np.testing.assert_allclose(prior, turned / np.linalg.norm(turned) * scale, rtol=1e-5)
    session.train_and_requery()
    np.testing.assert_allclose(session.classifier.weight, prior, rtol=1e-5)  # no labels: the classifier is the prior


def test_more_like_this_fills_half_the_next_batch_with_the_nearest_unseen_items(concept_index, concept):
    session = Session(concept_index, concept.prompt_vector, batch_size=10, seed=0)
    shown = {h.id for h in session.batch()}
    chosen = session.batch()[3].id
    session.label({chosen: 1.0})
    vector = concept_index.fetch([chosen])[0]
    nearest = [h.id for h in concept_index.query(vector, 30, exclude=shown)][:5]
    batch = session.train_and_requery(more_like=[chosen])
    assert [h.id for h in batch[:5]] == nearest and len(batch) == 10
    assert len({h.id for h in batch}) == 10 and not {h.id for h in batch} & shown
    np.testing.assert_allclose([h.score for h in batch[:5]], session.scores(concept_index.fetch(nearest)), rtol=1e-5)


def test_more_like_an_item_never_shown_is_refused_before_anything_changes(concept_index, concept):
    session = Session(concept_index, concept.prompt_vector, seed=0)
    before = (session.batch(), session.round, session.seen)
    with pytest.raises(ValueError, match="never shown"):
        session.train_and_requery(more_like=["no-such-item"])
    assert (session.batch(), session.round, session.seen) == before and not session.can_undo


def test_an_item_picked_from_the_collection_joins_the_batch_and_can_be_labelled(concept_index, concept):
    session = Session(concept_index, concept.prompt_vector, batch_size=5, seed=0)
    picked = next(i for i in reversed(concept.ids) if i not in session.seen)
    batch = session.add_to_batch([picked, picked])
    assert [h.id for h in batch][-1] == picked and len(batch) == 6
    assert batch[-1].score == pytest.approx(float(session.scores(concept_index.fetch([picked]))[0]))
    session.label({picked: 1.0})
    assert picked not in {h.id for h in session.train_and_requery()} and session.labels[picked] == 1.0
    with pytest.raises(KeyError):
        session.add_to_batch(["no-such-item"])


def test_a_resume_that_is_not_undoable_is_where_undo_stops(concept_index, concept):
    earlier = Session(concept_index, concept.prompt_vector, seed=0)
    label_batch(earlier, concept)
    session = Session(concept_index, concept.prompt_vector, seed=0)
    session.resume(earlier.labels, undoable=False)
    assert session.labels == earlier.labels and not session.can_undo
    label_batch(session, concept)
    session.train_and_requery()
    session.undo()
    assert session.labels.keys() >= earlier.labels.keys() and not session.can_undo


# ------------------------------------------------------------------------------------------------- bad arguments
@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"prior_strength": 0}, "greater than 0; got 0"),
        ({"prior_strength": -10}, "greater than 0; got -10"),
        ({"prior_strength": float("nan")}, "finite number; got nan"),
        ({"prior_strength": float("inf")}, "finite number; got inf"),
        ({"prior_strength": "ten"}, "must be a number; got 'ten'"),
        ({"prior_strength": 1e300}, r"within \[-inf, 1e\+06\]"),
        ({"batch_size": True}, "batch_size must be a whole number from 1 to 1,000; got True"),
        ({"batch_size": 10.0}, "batch_size must be a whole number"),
        ({"batch_size": 0}, "batch_size must be from 1 to 1,000; got 0"),
        ({"batch_size": 10**9}, "got 1,000,000,000"),
        ({"prompt_vector": np.zeros(32, np.float32)}, "prompt vector is zero"),
        ({"prompt_vector": np.full(32, 1e-9, np.float32)}, "prompt vector is zero"),
        ({"strategy": ["top"]}, r"unknown strategy \['top'\]"),
    ],
    ids=lambda v: str(v)[:40],
)
def test_a_session_refuses_bad_arguments_before_any_work(concept, options, message):
    index = NoQueries.from_vectors(concept.ids, concept.vectors)
    with pytest.raises(ValueError, match=message):
        Session(index, **{"prompt_vector": concept.prompt_vector, **options})


def test_a_session_keeps_its_own_unit_prompt_vector_and_negative_prompt(concept_index, concept):
    session = Session(concept_index, 3 * concept.prompt_vector, prompt="it", negative_prompt="not that")
    np.testing.assert_allclose(session.prompt_vector, concept.prompt_vector / np.linalg.norm(concept.prompt_vector))
    assert (session.prompt, session.negative_prompt) == ("it", "not that")
    assert not session.prompt_vector.flags.writeable


def test_mixed_gives_the_top_one_slot_while_its_top_picks_are_all_matches_and_half_after_a_miss(
    monkeypatch, concept_index, concept
):
    asked: list[int | None] = []  # mixed's top_count in each batch, as the session set it
    real = STRATEGIES["mixed"]

    def spy(proba, k, rng, top_count=None):
        asked.append(top_count)
        return real(proba, k, rng, top_count)

    monkeypatch.setitem(STRATEGIES, "mixed", spy)
    session = Session(concept_index, concept.prompt_vector, batch_size=10, seed=0)
    assert asked == [5]  # nothing labelled: half and half
    for _ in range(2):
        # Every top pick a match; the explored items not, or their neighbours would lead the next batch (follow_up).
        session.label({h.id: -1.0 if h.id in session.explored else 1.0 for h in session.batch()})
        session.train_and_requery()
        assert asked[-1] == 1
    top_pick = session.batch()[0].id  # mixed's top slots are the pool's best, shown first
    session.label({top_pick: -1.0, session.batch()[-1].id: 0.0})  # the top pick was not a match; a skip counts not
    session.train_and_requery()
    assert asked[-1] in (4, 5)  # half of what the pool gives: exploration may take 2 of the 10 (measured: 4)


def test_a_batch_says_which_of_its_items_come_from_outside_the_search_and_why():
    empty = exploring_session(bias=-40.0)
    pool = {h.id for h in empty.index.query(empty.classifier.weight, 20)}
    batch = [h.id for h in empty.batch()]
    assert len(empty.explored) == 5 and empty.explored == set(batch[5:])  # half the batch, after the pool's picks
    assert not empty.explored & pool and set(batch[:5]) <= pool
    assert empty.explore_reason == EXPLORE_EMPTY
    full = exploring_session(bias=40.0)
    assert len(full.explored) == EXPLORE_ITEMS and full.explore_reason == EXPLORE_FULL
    # "top" never explores, nor does a pool the classifier expects to hold a match or two but not mostly matches.
    for quiet in (exploring_session(bias=-40.0, strategy="top"), exploring_session(bias=-2.2)):
        assert quiet.explored == frozenset() and quiet.explore_reason is None


def test_undo_brings_back_the_earlier_batchs_items_from_outside_the_search_and_a_resume_its_own():
    session = exploring_session(bias=-40.0)
    first = session.explored
    session.label({h.id: -1.0 for h in session.batch()})
    session.train_and_requery()
    second = session.explored
    assert second and second <= {h.id for h in session.batch()} and not second & first
    session.undo()
    assert session.explored == first and session.explore_reason == EXPLORE_EMPTY
    picked = next(i for i in session.index.ids if i not in session.seen)
    session.add_to_batch([picked])  # a point picked on the map joins the batch, not as an exploration
    assert session.explored == first
    session.resume({h.id: -1.0 for h in session.batch()})
    assert session.explored and session.explored <= {h.id for h in session.batch()} and not session.explored & first


def test_undo_walks_back_through_every_round_exactly_after_relabels_a_resume_and_an_undo(concept_index, concept):
    """Undo keeps older rounds as what they changed (trainer/checkpoints.py); every state still comes back whole."""
    session = Session(concept_index, concept.prompt_vector, seed=0)
    earlier = Session(concept_index, concept.prompt_vector, seed=1)
    run_rounds(earlier, concept, rounds=2)

    def state() -> tuple:
        labels = session.labels
        return session.batch(), labels, list(labels), session.label_rounds, session.seen, session.history

    states, weights = [], []

    def round_(relabel: str | None = None) -> None:
        batch = [h.id for h in session.batch()]
        session.label({**concept.oracle(batch), **({relabel: 0.5} if relabel else {})})
        states.append(state())
        weights.append(session.classifier.weight.copy())
        session.train_and_requery()

    for r in range(4):
        round_(relabel=next(iter(session.labels), None) if r else None)
    before_resume = state()
    session.resume({i: v for i, v in earlier.labels.items() if i not in session.seen})
    session.undo()
    assert state() == before_resume
    for _ in range(3):
        round_()
    for want, weight in zip(reversed(states), reversed(weights), strict=True):
        assert session.undo() == want[0]
        assert state() == want
        np.testing.assert_array_equal(session.classifier.weight, weight)
    assert not session.can_undo


def test_a_refusal_cuts_a_huge_unknown_id_short(concept_index, concept):
    session = Session(concept_index, concept.prompt_vector, seed=0)
    for call in (lambda: session.label({"x" * 100_000: 1.0}), lambda: session.train_and_requery(["y" * 100_000])):
        with pytest.raises(ValueError, match="never shown") as refused:
            call()
        assert len(str(refused.value)) < 500
