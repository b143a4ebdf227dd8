"""What a person sees besides the batch: counts per round, the collection ranked, the 2-D map."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from tests.helpers.exploring import exploring_session
from tests.helpers.fake_pinecone import FakePinecone, connect
from trainer.exploration import EXPLORE_ITEMS
from trainer.session import Session
from trainer.views import (
    MAP_GRID,
    batch_value,
    describe_changes,
    explore_note,
    labels_per_round,
    map_view,
    no_match_note,
    panel_value,
    rank,
    running_out_note,
    summary,
)
from trainer.workbench import Workbench


def labelled_session(concept_index, concept, rounds: int = 2) -> Session:
    session = Session(concept_index, concept.prompt_vector, batch_size=6, seed=0)
    for _ in range(rounds):
        session.label(concept.oracle([h.id for h in session.batch()]))
        session.train_and_requery()
    return session


def test_labels_per_round_counts_each_rounds_it_and_not_it(concept_index, concept):
    session = labelled_session(concept_index, concept)
    counts = labels_per_round(session)
    assert [c.round for c in counts] == [1, 2]
    assert sum(c.positives + c.negatives for c in counts) == 12
    truth = dict(zip(concept.ids, concept.truth, strict=True))
    assert sum(c.positives for c in counts) == sum(bool(truth[i]) for i in session.labels)


def test_labels_taken_over_without_their_rounds_count_as_round_zero(concept_index, concept):
    earlier = labelled_session(concept_index, concept)
    session = Session(concept_index, concept.prompt_vector, seed=0)
    session.resume(earlier.labels)
    assert [c.round for c in labels_per_round(session)] == [0]
    assert labels_per_round(Session(concept_index, concept.prompt_vector)) == []


def test_a_resumed_session_counts_each_round_as_before_and_an_old_saved_copy_as_earlier(concept_index, concept):
    session = labelled_session(concept_index, concept, rounds=3)
    session.label({h.id: -1.0 for h in session.batch()[:2]})  # round 4's, not trained yet
    before = labels_per_round(session)
    assert [c.round for c in before] == [1, 2, 3, 4]
    saved = json.loads(json.dumps({**session.to_saved(), "prompt": "p"}))  # as it comes back from the browser
    assert labels_per_round(Session.from_saved(concept_index, saved)) == before  # every round, not one bar
    old = {k: v for k, v in saved.items() if k not in ("rounds", "label_rounds", "audit", "audit_labels")}
    (earlier,) = labels_per_round(Session.from_saved(concept_index, {**old, "version": 1}))  # rounds unknown then
    assert earlier.round == 0 and (earlier.positives, earlier.negatives) == (
        sum(c.positives for c in before),
        sum(c.negatives for c in before),
    )


def test_rank_counts_items_over_the_threshold_and_lists_the_best_first(concept_index, concept):
    session = labelled_session(concept_index, concept)
    ranking = rank(session, concept.ids, concept.vectors, threshold=0.5, top_k=7)
    proba = session.scores(concept.vectors)
    assert ranking.total == len(concept.ids) and ranking.above == int((proba >= 0.5).sum())
    expected = [concept.ids[i] for i in np.argsort(-proba, kind="stable")[: min(7, ranking.above)]]
    assert [h.id for h in ranking.top] == expected
    assert rank(session, concept.ids, concept.vectors, threshold=1.0, top_k=7).top == []
    with pytest.raises(ValueError, match="threshold"):
        rank(session, concept.ids, concept.vectors, threshold=float("nan"), top_k=3)


def test_summary_names_the_counts_the_stats_line_shows(concept_index, concept):
    session = labelled_session(concept_index, concept)
    stats = summary(session)
    assert stats["round"] == 3 and stats["labels"] == 12 and stats["seen"] == 18
    assert stats["positives"] + stats["negatives"] == stats["labels"]
    left = session.positives_left()
    assert stats["positives_left"] == round(left.expected, 1) and stats["running_out"] is left.running_out
    assert stats["collection_note"] is None


def test_the_stats_line_says_why_a_pinecone_session_has_no_sample_of_the_collection(concept):
    client = FakePinecone()
    index = connect(client, concept.vectors.shape[1])
    index.add(concept.ids, concept.vectors)
    session = Session(index, concept.prompt_vector, batch_size=6, seed=11)
    session.label(concept.oracle([h.id for h in session.batch()]))
    client.store("ct-test").fail("fetch", 429, times=5, message="monthly read units used up")
    session.suspect_labels(3)  # the first need of the sample: Pinecone keeps refusing the draw
    note = summary(session)["collection_note"]
    assert note.startswith("No sample of the collection: Pinecone kept rate-limiting") and "read units" in note


def test_the_map_marks_labelled_and_current_items_and_predicts_the_sample(bundle_workspace):
    ws = bundle_workspace.wait(timeout=600)
    session = ws.new_session("a large red heart", batch_size=5)
    first = [h.id for h in session.batch()]
    session.label({first[0]: 1.0, first[1]: -1.0})
    session.train_and_requery()
    view = map_view(ws, session)
    assert view.xy.shape == (len(ws.map_rows), 2) and view.predicted.shape == (len(ws.map_rows),)
    kinds = {id_: kind for id_, _, _, kind in view.marked}
    assert kinds[first[0]] == "it" and kinds[first[1]] == "not it"
    assert sum(kind == "batch" for kind in kinds.values()) == 5
    assert map_view(ws, None).marked == [] and not map_view(ws, None).predicted.any()


def test_the_batch_value_is_the_grid_and_the_api_reply_as_plain_json(bundle_workspace):
    ws = bundle_workspace.wait(timeout=600)
    assert batch_value(ws, None, notice="hello") == {
        "key": "none",
        "round": 0,
        "batch": [],
        "stats": None,
        "notice": "hello",
    }
    bench = Workbench()
    bench.start(ws.new_session("a large red heart", batch_size=4), "a large red heart")
    first = batch_value(ws, bench)
    cards = first["batch"]
    assert [c["id"] for c in cards] == [h.id for h in bench.session.batch()]
    assert all(c["thumbnail"].startswith("data:image/jpeg;base64,") and c["alt"] and c["label"] == 0 for c in cards)
    assert (first["round"], first["mode"], first["stats"]["undo"], first["prompt"]) == (
        1,
        "train",
        None,
        "a large red heart",
    )
    bench.session.label({cards[0]["id"]: 1.0, cards[1]["id"]: -0.5})
    bench.session.train_and_requery()
    second = batch_value(ws, bench, changes=["batch size 4 → 6"])
    assert second["key"] != first["key"] and second["stats"]["undo"] == "round"
    assert (second["stats"]["labels"], second["stats"]["changes"]) == (2, ["batch size 4 → 6"])
    bench.undo()  # the batch of round 1 again, with the labels it was given
    back = batch_value(ws, bench)
    assert [c["label"] for c in back["batch"][:2]] == [1.0, -0.5] and back["key"] != second["key"]


def test_a_quality_check_on_screen_is_the_batch_value_marked_as_such(bundle_workspace):
    ws = bundle_workspace.wait(timeout=600)
    bench = Workbench()
    bench.start(ws.new_session("a large red heart", batch_size=4))
    training = batch_value(ws, bench)
    drawn = bench.session.audit(6)
    value = batch_value(ws, bench)
    assert value["mode"] == "check" and [c["id"] for c in value["batch"]] == [h.id for h in drawn]
    assert all(c["audit"] for c in value["batch"]) and value["key"] != training["key"]


def test_settings_changes_are_named_as_the_stats_line_shows_them():
    changes = {"batch_size": (10, 14), "strategy": ("mixed", "top"), "negative_prompt": (None, "a circle")}
    assert describe_changes(changes) == ["batch size 10 → 14", "strategy mixed → top", "negative prompt “a circle”"]
    assert describe_changes({"negative_prompt": ("a circle", "")}) == ["no negative prompt"]
    assert describe_changes({}) == []


def test_the_panel_value_has_the_counts_per_round_and_the_map_as_bytes(bundle_workspace):
    ws = bundle_workspace.wait(timeout=600)
    empty = panel_value(ws, None)
    points = base64.b64decode(empty["map"]["xy"])
    assert empty["rounds"] == [] and empty["map"]["predicted"] == "" and empty["map"]["marked"] == []
    assert len(points) == 2 * len(ws.map_rows) and max(points) == MAP_GRID and min(points) == 0
    session = ws.new_session("a large red heart", batch_size=5)
    first = [h.id for h in session.batch()]
    session.label({first[0]: 1.0, first[1]: -1.0, first[2]: -1.0})
    session.train_and_requery()
    value = panel_value(ws, session)
    assert value["rounds"] == [[1, 1, 2]]
    assert len(value["map"]["predicted"]) == len(ws.map_rows) and set(value["map"]["predicted"]) <= {"0", "1"}
    marked = {id_: (x, y, kind) for id_, x, y, kind in value["map"]["marked"]}
    assert marked[first[0]][2] == "it" and marked[first[1]][2] == "not it"
    assert all(0 <= x <= MAP_GRID and 0 <= y <= MAP_GRID for x, y, _ in marked.values())


def test_random_picks_from_outside_the_search_are_marked_and_the_stats_line_says_why(bundle_workspace):
    # "a red circle" labelled all "not it": the classifier expects no match among its search's best candidates, so
    # half of the next batch comes from outside the search (trainer/exploration.py).
    ws = bundle_workspace.wait(timeout=600)
    bench = Workbench()
    bench.start(ws.new_session("a red circle", batch_size=10))
    first = batch_value(ws, bench)
    assert not any(c.get("explore") for c in first["batch"]) and first["stats"]["explore_note"] is None
    bench.session.label({c["id"]: -1.0 for c in first["batch"]})
    bench.session.train_and_requery()
    value = batch_value(ws, bench)
    marked = [c["id"] for c in value["batch"] if c.get("explore")]
    assert set(marked) == bench.session.explored and len(marked) == value["stats"]["explored"] == 5
    assert value["stats"]["explore_note"] == (
        "5 of 10 images are random picks from outside the search: the search holds no likely match, so the "
        "classifier looks elsewhere."
    )
    json.dumps(value)  # plain JSON, as the API sends it
    bench.session.audit(4)  # a quality check on screen: its cards are no exploration
    assert not any(c.get("explore") for c in batch_value(ws, bench)["batch"])


def test_the_note_on_random_picks_says_how_many_and_why_or_nothing():
    full = exploring_session(bias=40.0)  # the classifier expects every candidate to match: the concept may go on
    assert explore_note(full) == (
        f"{EXPLORE_ITEMS} of 10 images are random picks from outside the search: the search is full of likely "
        "matches, and the concept may reach beyond it."
    )
    assert explore_note(exploring_session(bias=40.0, batch_size=1)) is None  # too small a batch to spare one
    assert explore_note(exploring_session(bias=-40.0, batch_size=3)).startswith("1 of 3 images is a random pick ")


def test_the_running_out_note_suggests_boundary_only_where_it_would_look_further():
    start = "Matches are running out: fewer than one is expected in the next batch. "
    mixed = exploring_session(bias=-2.2)  # its search holds a likely match or two: no random picks
    assert running_out_note(mixed, False) is None
    assert running_out_note(mixed, True) == (
        start + "Try the boundary strategy to look further afield, or Check quality to see how good the classifier is."
    )
    # Already boundary; the original recipe, which cannot switch; a batch already looking outside the search.
    for session in (
        exploring_session(bias=-2.2, strategy="boundary"),
        exploring_session(bias=-2.2, strategy="original"),
        exploring_session(bias=-40.0),
    ):
        assert running_out_note(session, True) == start + "Check quality to see how good the classifier is."


def test_twenty_labels_without_a_match_say_what_to_try_and_one_match_ends_it(concept_index, concept):
    session = Session(concept_index, concept.prompt_vector, seed=0)
    negatives = [i for i, match in zip(concept.ids, concept.truth, strict=True) if not match]
    session.resume(dict.fromkeys(negatives[:19], -1.0))
    assert no_match_note(session) is None  # 19: not yet
    session.label({h.id: 0.0 for h in session.batch()})  # no opinion on the batch: counts for nothing
    session.resume({negatives[19]: -0.5})
    note = "No match among 20 labels yet: describe the concept another way, or start from an example image"
    assert summary(session)["no_match_note"] == no_match_note(session) == note + " (under More)."
    match = next(i for i, m in zip(concept.ids, concept.truth, strict=True) if m and i not in session.labels)
    session.resume({match: 0.5})
    assert no_match_note(session) is None
