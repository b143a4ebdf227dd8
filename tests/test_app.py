"""The app through its scripting API (gradio_client) on the offline bundle: /start, /round, /undo and the rest."""

from __future__ import annotations

import base64
import json
import re
import tempfile
import urllib.request
import zipfile
from pathlib import Path

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError
from huggingface_hub import metadata_load

import app
import trainer.hub_calls
from tests.helpers.fake_hub import FakeHub, http_error
from trainer.classifier import LinearProbe
from trainer.config import PROJECT_ROOT
from trainer.export import read_labels
from trainer.hub_calls import token_for_push
from trainer.session import Session


@pytest.fixture
def client(app_url):
    return Client(app_url, verbose=False)


def start(client: Client, prompt: str = "a red circle", **options):
    return client.predict(prompt, api_name="/start", **options)


def ids(reply: dict) -> list[str]:
    return [card["id"] for card in reply["batch"]]


def label_all(reply: dict, positives: int) -> dict[str, float]:
    """The first ``positives`` cards "it", the rest "not it"."""
    return {card["id"]: (1.0 if k < positives else -1.0) for k, card in enumerate(reply["batch"])}


# ------------------------------------------------------------------------------------------------ the scripting API
def test_the_api_documents_start_round_and_undo_with_their_parameters(client):
    endpoints = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    parameters = {name: [p["parameter_name"] for p in endpoints[name]["parameters"]] for name in endpoints}
    assert parameters["/start"] == ["prompt", "negative", "strategy", "batch_size"]
    assert parameters["/round"] == ["labels", "more_like"]
    assert parameters["/undo"] == []
    assert parameters["/check"] == ["n"] and parameters["/quality"] == ["labels"]
    defaults = {p["parameter_name"]: p["parameter_default"] for p in endpoints["/start"]["parameters"][1:]}
    assert defaults == {"negative": "", "strategy": "mixed", "batch_size": 10}
    assert not any(name.startswith(("/search", "/train", "/mark_rest", "/start_over")) for name in endpoints)


def test_the_api_names_what_each_endpoint_returns(client):
    """A script reads ``view_api`` to know what comes back: every value has a name, not Gradio's ``value_<n>`` for a
    component without a label (the browser's own saved state, which only /load returns, is the one exception)."""
    endpoints = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    returns = {name: [r["label"] for r in endpoints[name]["returns"]] for name in endpoints}
    assert returns["/classify"][:2] == ["summary", "estimate"] and returns["/classify"][3] == "matches"
    assert returns["/push"] == ["result"]
    assert [returns["/load"][k] for k in (0, 1, 2, 4)] == ["prompt", "round", "panel", "quality"]
    unnamed = {(name, label) for name, labels in returns.items() for label in labels if label.startswith("value_")}
    assert len(unnamed) == 1 and next(iter(unnamed))[0] == "/load"


def test_start_returns_round_one_with_a_batch_of_thumbnails_scores_and_stats(client):
    reply = start(client, batch_size=8, strategy="top")
    assert reply["round"] == 1 and len(reply["batch"]) == 8
    card = reply["batch"][0]
    assert {"id", "score", "thumbnail", "label", "alt"} <= set(card)
    assert card["thumbnail"].startswith("data:image/jpeg;base64,")
    assert base64.b64decode(card["thumbnail"].split(",", 1)[1])[:2] == b"\xff\xd8"  # a JPEG
    assert 0 <= card["score"] <= 1 and card["label"] == 0
    scores = [c["score"] for c in reply["batch"]]
    assert scores == sorted(scores, reverse=True)  # "top": best first
    stats = reply["stats"]
    assert (stats["round"], stats["labels"], stats["seen"], stats["strategy"], stats["batch_size"]) == (
        1,
        0,
        8,
        "top",
        8,
    )


def test_a_round_trains_shows_new_images_and_undo_brings_back_the_batch_and_its_labels(client):
    first = start(client)
    labels = label_all(first, positives=3) | {first["batch"][4]["id"]: 0.5, first["batch"][5]["id"]: 0.0}
    second = client.predict(labels, api_name="/round")
    assert second["round"] == 2
    assert (second["stats"]["labels"], second["stats"]["positives"], second["stats"]["negatives"]) == (9, 4, 5)
    assert not set(ids(first)) & set(ids(second))  # never an image twice
    assert all(card["label"] == 0 for card in second["batch"])
    back = client.predict(api_name="/undo")
    assert back["round"] == 1 and ids(back) == ids(first)
    assert {c["id"]: c["label"] for c in back["batch"]} == {i: labels.get(i, 0.0) for i in ids(first)}


def test_a_round_marks_its_random_picks_from_outside_the_search_and_undo_takes_the_marks_back(client):
    first = start(client)  # "a red circle", all "not it": the search then holds no likely match
    assert not any(card.get("explore") for card in first["batch"]) and first["stats"]["explored"] == 0
    second = client.predict(label_all(first, positives=0), api_name="/round")
    marked = [card["id"] for card in second["batch"] if card.get("explore")]
    assert len(marked) == second["stats"]["explored"] == 5 and marked == ids(second)[5:]  # after the search's picks
    assert second["stats"]["explore_note"].startswith("5 of 10 images are random picks from outside the search")
    back = client.predict(api_name="/undo")
    assert ids(back) == ids(first) and not any(card.get("explore") for card in back["batch"])
    assert back["stats"]["explore_note"] is None


def test_more_like_this_brings_the_nearest_unseen_neighbours_into_the_next_batch(client, bundle_workspace):
    first = start(client, "a large red heart", batch_size=10)
    chosen = first["batch"][0]["id"]
    reply = client.predict({chosen: 1.0}, [chosen], api_name="/round")
    ws = bundle_workspace.wait(timeout=600)
    nearest = [h.id for h in ws.index.query(ws.vectors_of([chosen])[0], 30, exclude=set(ids(first)))][:5]
    assert ids(reply)[:5] == nearest  # half the batch: its neighbours, nearest first
    assert len(reply["batch"]) == 10


def test_two_visitors_keep_separate_sessions(app_url):
    alice, bob = Client(app_url, verbose=False), Client(app_url, verbose=False)
    first_alice = start(alice)
    first_bob = start(bob, "a blue square", batch_size=6)
    after_alice = alice.predict(label_all(first_alice, 10), api_name="/round")
    after_bob = bob.predict(label_all(first_bob, 0), api_name="/round")
    assert (after_alice["stats"]["positives"], after_alice["stats"]["negatives"]) == (10, 0)
    assert (after_bob["stats"]["positives"], after_bob["stats"]["negatives"], len(after_bob["batch"])) == (0, 6, 6)
    assert after_bob["round"] == after_alice["round"] == 2
    assert alice.predict(api_name="/undo")["round"] == 1
    assert bob.predict(label_all(after_bob, 1), api_name="/round")["round"] == 3  # Alice's undo is hers alone


def test_a_new_start_can_be_undone_with_every_label_back(client):
    first = start(client)
    labelled = client.predict(label_all(first, 2), api_name="/round")
    restarted = start(client, "a blue square")
    assert restarted["round"] == 1 and restarted["stats"]["labels"] == 0
    back = client.predict(api_name="/undo")
    assert back["round"] == 2 and ids(back) == ids(labelled) and back["stats"]["labels"] == 10


@pytest.mark.parametrize("prompt", ["", "   "])
def test_an_empty_prompt_gets_a_clear_message_with_an_example_from_this_collection(client, prompt):
    with pytest.raises(AppError, match=r"Describe the concept first.*for example 'a "):
        start(client, prompt)


def test_a_round_before_starting_says_what_to_do(client):
    with pytest.raises(AppError, match="Search for a concept first"):
        client.predict({"x": 1.0}, api_name="/round")


def test_undo_with_nothing_to_undo_says_so(client):
    start(client)
    with pytest.raises(AppError, match="Nothing to undo"):
        client.predict(api_name="/undo")


def test_parallel_rounds_for_one_session_take_turns(client):
    first = start(client)
    jobs = [client.submit({i: -1.0 for i in ids(first)}, api_name="/round") for _ in range(2)]
    rounds = sorted(job.result(timeout=120)["round"] for job in jobs)
    assert rounds == [2, 3]  # two whole rounds, one after the other: the second labelled nothing new


# ----------------------------------------------------------------------------------------------- classify
def test_classify_counts_matches_over_the_threshold_and_shows_the_top_ones(client):
    first = start(client)
    client.predict(label_all(first, 3), api_name="/round")
    summary, estimate, _, gallery = client.predict("indexed collection", 0.5, api_name="/classify")
    above, total = (int(n.replace(",", "")) for n in re.search(r"\*\*([\d,]+) of ([\d,]+)\*\*", summary).groups())
    assert 0 < above < total
    assert 0 < gallery.count("<figure>") <= min(above, app.GALLERY_SIZE)
    alts = re.findall(r'alt="([^"]*)"', gallery)
    assert alts and all(alt and not alt.startswith("shapes-") for alt in alts)  # each image's caption, not its id
    assert "optimistic" in estimate or "Check quality" in estimate  # no check yet: nothing honest to say
    summary, _, _, _ = client.predict("held-out split", 0.99, api_name="/classify")
    assert "held-out split" in summary


# ----------------------------------------------------------------------------------------------- quality
def test_a_quality_check_shows_unseen_images_marked_as_a_check_then_estimates_quality(client):
    first = start(client)
    second = client.predict(label_all(first, 3), api_name="/round")
    check = client.predict(api_name="/check")
    assert check["mode"] == "check" and len(check["batch"]) == app.CHECK_SIZE
    assert all(card["audit"] for card in check["batch"])
    assert not set(ids(check)) & (set(ids(first)) | set(ids(second)))  # images never shown
    assert client.predict(api_name="/check")["batch"] == check["batch"]  # until labelled, the same check
    answers = {card["id"]: (1.0 if k < 4 else -1.0) for k, card in enumerate(check["batch"][:-1])}  # one left out
    reply = client.predict(answers, api_name="/quality")
    quality = reply["quality"]
    assert quality["method"] == "audit" and not quality["optimistic"] and quality["check_labels"] == 19
    for name in ("ap", "precision", "recall", "prevalence", "matches"):
        assert quality[name]["low"] <= quality[name]["value"] <= quality[name]["high"], name
    assert quality["collection_size"] == 2500 and quality["verdict"]
    # back to the training batch, as it was; the check's images never come back in training
    assert reply["mode"] == "train" and ids(reply) == ids(second) and reply["stats"]["labels"] == 10
    after = client.predict(label_all(second, 2), api_name="/round")
    assert not set(ids(after)) & set(ids(check))
    assert after["stats"]["labels"] == 20  # the check's labels are not training labels


def test_a_check_refuses_ids_not_in_it_and_keeps_its_images_for_the_right_labels(client):
    """A typo'd id, or the round's ids sent to /quality, must not spend the check: dropped, they would leave all 20 of
    its images seen with no opinion, and the real labels after them would have nowhere to go."""
    first = start(client)
    check = client.predict(api_name="/check")
    for wrong in ({"not-an-id": 1.0}, {ids(first)[0]: 1.0}, {ids(check)[0]: 1.0, "not-an-id": -1.0}):
        with pytest.raises(AppError, match=r"not in the quality check waiting for labels.*Nothing was changed"):
            client.predict(wrong, api_name="/quality")
    with pytest.raises(AppError, match="not in the quality check") as refused:
        client.predict({"x" * 100_000: 1.0}, api_name="/quality")
    assert len(str(refused.value)) < 1_000  # a huge id is cut short in the message, not echoed whole
    assert client.predict(api_name="/check")["batch"] == check["batch"]  # the same check, still unlabelled
    reply = client.predict({card["id"]: -1.0 for card in check["batch"]}, api_name="/quality")
    assert reply["quality"]["check_labels"] == app.CHECK_SIZE
    with pytest.raises(AppError, match="no quality check is waiting for labels"):
        client.predict({ids(check)[0]: 1.0}, api_name="/quality")  # labelled already: nothing to label it in
    assert client.predict({}, api_name="/quality")["quality"]["check_labels"] == app.CHECK_SIZE  # the estimate again


def test_classify_estimates_precision_and_recall_and_exports_every_score(client):
    first = start(client)
    client.predict(label_all(first, 3), api_name="/round")
    check = client.predict(api_name="/check")
    client.predict({card["id"]: -1.0 for card in check["batch"]}, api_name="/quality")
    _, estimate, results, _ = client.predict("indexed collection", 0.3, api_name="/classify")
    assert re.search(r"precision \*\*[\d.]+\*\* \([\d.]+–[\d.]+\), recall \*\*[\d.]+\*\*", estimate)
    assert "from 20 check labels" in estimate
    rows = Path(results).read_text().splitlines()
    assert rows[0] == "id,score" and len(rows) == 1 + 2500
    scores = [float(row.split(",")[1]) for row in rows[1:]]
    assert scores == sorted(scores, reverse=True)


# ----------------------------------------------------------------------------------------------- export & share
def test_export_gives_files_that_load_back(client, tmp_path):
    first = start(client, negative="a blue square")
    client.predict(
        {card["id"]: (1.0 if k % 2 == 0 else -1.0) for k, card in enumerate(first["batch"])}, api_name="/round"
    )
    archive, labels_csv, labels_jsonl = client.predict(api_name="/export")
    with zipfile.ZipFile(archive) as zipped:
        zipped.extractall(tmp_path)
    folder = next(p.parent for p in tmp_path.rglob("model.safetensors"))
    probe = LinearProbe.from_pretrained(folder)
    assert probe.prompt == "a red circle" and probe.negative_prompt == "a blue square" and probe.dim > 0
    assert {r.score for r in read_labels(labels_csv)} == {1.0, -1.0}
    assert len(read_labels(labels_jsonl)) == 10


def test_the_exported_card_says_what_the_app_showed_and_what_the_check_measured(client, tmp_path):
    reply = start(client, negative="a blue square")
    for _ in range(3):
        reply = client.predict(label_all(reply, 3), api_name="/round")
    assert reply["round"] == 4  # three rounds labelled and trained; the app shows the fourth's batch, unlabelled
    check = client.predict(api_name="/check")
    measured = client.predict(label_all(check, 2), api_name="/quality")["quality"]
    archive, _, _ = client.predict(api_name="/export")
    with zipfile.ZipFile(archive) as zipped:
        zipped.extractall(tmp_path)
    card = next(tmp_path.rglob("README.md"))
    text = card.read_text()
    assert "| Rounds | 3 |" in text and "refined by 3 round(s) of human labelling" in text
    assert "| Negative prompt | a blue square |" in text
    # A portable base model: the bundle's name and content hash, never the folder it sits in on this server.
    assert re.search(r"\| Base model \| a local CLIP model folder, `tiny-clip@sha256:[0-9a-f]{12}`", text)
    assert str(PROJECT_ROOT) not in text and "assets/" not in text
    (entry,) = metadata_load(card)["model-index"]
    metrics = {m["type"]: m for m in entry["results"][0]["metrics"]}
    assert list(metrics) == ["average_precision", "precision", "recall", "prevalence"]
    for name, key in [("average_precision", "ap"), ("precision", "precision"), ("recall", "recall")]:
        args = metrics[name]["args"]
        assert metrics[name]["value"] == measured[key]["value"]
        assert (args["interval_low"], args["interval_high"]) == (measured[key]["low"], measured[key]["high"])
        assert args["audit_labels"] == 20 and args["confidence"] == 0.9 and "stratified random sample" in args["method"]


def test_push_signed_out_on_a_space_is_refused_and_never_uses_the_spaces_token(client, monkeypatch, hub_online):
    monkeypatch.setenv("SPACE_ID", "someone/concept-trainer")
    monkeypatch.setenv("HF_TOKEN", "hf_SPACEOWNERsecret")
    pushed = []
    monkeypatch.setattr(app, "push_classifier", lambda *a, **k: pushed.append(a) or "")
    start(client)
    with pytest.raises(AppError, match="Sign in with Hugging Face"):
        client.predict("me/red-circles", False, False, api_name="/push")
    assert pushed == []


def test_push_run_locally_uses_this_machines_token_and_links_the_repo(client, monkeypatch, hub_online):
    monkeypatch.delenv("SPACE_ID", raising=False)
    monkeypatch.setattr(trainer.hub_calls, "get_token", lambda: "hf_localMachineToken")
    calls = []

    def fake_push(source, repo, token, **options):
        calls.append((source, repo, token, options))
        return f"https://huggingface.co/{repo}"

    monkeypatch.setattr(app, "push_classifier", fake_push)
    start(client)
    result = client.predict("me/red-circles", True, False, api_name="/push")
    assert "https://huggingface.co/me/red-circles" in result
    source, repo, token, options = calls[0]
    assert (repo, token) == ("me/red-circles", "hf_localMachineToken")
    assert options == {"private": True, "exist_ok": False, "collection": "shapes (train)"}
    assert isinstance(source, Session) and source.prompt == "a red circle"  # exported by push_classifier itself
    assert "hf_localMachineToken" not in result


def test_push_without_any_token_locally_says_how_to_get_one(client, monkeypatch, hub_online):
    monkeypatch.delenv("SPACE_ID", raising=False)
    monkeypatch.setattr(trainer.hub_calls, "get_token", lambda: None)
    start(client)
    with pytest.raises(AppError, match="HF_TOKEN"):
        client.predict("me/red-circles", False, False, api_name="/push")


def test_push_with_the_hub_unreachable_is_refused_at_once_with_the_reason(client, monkeypatch):
    monkeypatch.setattr(app, "push_classifier", pytest.fail)
    start(client)
    with pytest.raises(AppError, match="cannot be reached"):
        client.predict("me/red-circles", False, False, api_name="/push")


def test_a_signed_in_visitor_pushes_with_their_own_token():
    assert token_for_push("hf_visitor", space=True) == "hf_visitor"


def test_load_a_classifier_from_a_folder_and_keep_training(client, tmp_path):
    first = start(client)
    client.predict(label_all(first, 2), api_name="/round")
    archive = client.predict(api_name="/export")[0]
    with zipfile.ZipFile(archive) as zipped:
        zipped.extractall(tmp_path)
    folder = next(p.parent for p in tmp_path.rglob("model.safetensors"))
    other = Client(client.src, verbose=False)
    prompt, grid, _panel = other.predict(str(folder), api_name="/load")[:3]
    assert prompt == "a red circle" and grid["round"] == 1 and len(grid["batch"]) == 10
    assert other.predict(label_all(grid, 1), api_name="/round")["round"] == 2
    with pytest.raises(AppError, match="Enter a Hub repository"):
        other.predict("  ", api_name="/load")
    with pytest.raises(AppError, match="only a local folder"):  # a Hub id, with the Hub unreachable: at once
        other.predict("someone/red-circles", api_name="/load")


def test_the_settings_a_visitor_starts_with_come_from_ct_batch_size_and_ct_strategy(bundle_workspace, monkeypatch):
    monkeypatch.setenv("CT_BATCH_SIZE", "14")
    monkeypatch.setenv("CT_STRATEGY", "top")
    demo = app.build_demo(bundle_workspace)
    values = {block.elem_id: getattr(block, "value", None) for block in demo.blocks.values()}
    assert (values["batch-size"], values["strategy"]) == (14, "top")
    monkeypatch.setenv("CT_STRATEGY", "smartest")
    with pytest.raises(ValueError, match="CT_STRATEGY='smartest' is not a strategy"):
        app.build_demo(bundle_workspace)


def test_the_queue_does_not_rebuild_gradios_monitoring_summary_after_every_event(bundle_workspace, monkeypatch):
    """Gradio rebuilds a pandas summary of up to 10,000 past events after each event (3.6-11 ms of CPU) for a
    dashboard the app never enables; the app's queue asks for it once per ``app.ANALYTICS_EVERY`` events."""
    monkeypatch.delenv("GRADIO_ANALYTICS_CACHE_FREQUENCY", raising=False)
    demo = app.build_demo(bundle_workspace).queue()
    queue = demo._queue
    records = [{"function": "round", "status": "success", "process_time": 0.01}] * 50
    queue.events_recorded = 50  # as after 50 events: the summary is not rebuilt for them
    assert queue.compute_analytics_summary(records) == {"functions": {}}
    monkeypatch.setenv("GRADIO_ANALYTICS_CACHE_FREQUENCY", "1")  # an operator's own choice is kept
    queue = app.build_demo(bundle_workspace).queue()._queue
    queue.events_recorded = 50
    assert queue.compute_analytics_summary(records)["functions"]["round"]["total_requests"] == 50


def test_exports_and_failed_pushes_never_name_a_server_path(client, monkeypatch, hub_online, tmp_path):
    monkeypatch.delenv("SPACE_ID", raising=False)
    monkeypatch.setattr(trainer.hub_calls, "get_token", lambda: "hf_localMachineToken")
    hub = FakeHub(tmp_path).install(monkeypatch)
    hub.create_failures.append(http_error(403, "no write access"))
    first = start(client)
    client.predict(label_all(first, 3), api_name="/round")
    archive = client.predict(api_name="/export")[0]
    with zipfile.ZipFile(archive) as zipped:
        texts = {name: zipped.read(name).decode(errors="replace") for name in zipped.namelist()}
    config = json.loads(next(text for name, text in texts.items() if name.endswith("config.json")))
    assert re.fullmatch(r"tiny-clip@sha256:[0-9a-f]{12}", config["base_model"])
    server_paths = (str(PROJECT_ROOT), tempfile.gettempdir())
    assert not [name for name, text in texts.items() if any(path in text for path in server_paths)]
    with pytest.raises(AppError) as caught:
        client.predict("me/red-circles", False, False, api_name="/push")
    assert "HTTP 403" in str(caught.value)
    assert not any(path in str(caught.value) for path in server_paths), str(caught.value)


def test_the_browser_state_key_is_served_to_every_visitor_so_the_saved_state_is_not_trusted(app_url):
    """The README says so: Gradio encrypts the saved session in the browser, with a key it sends to the browser."""
    with urllib.request.urlopen(app_url.rstrip("/") + "/config", timeout=30) as response:
        assert app.BROWSER_STATE_KEY in response.read().decode()


def test_a_visitors_exports_are_removed_when_their_tab_closes(bundle_workspace):
    """Exports piled up (50 exports, 50 folders). A tab's session ends when its heartbeat stream closes."""
    import threading
    import time

    import httpx

    from tests.helpers import raw_api

    bundle_workspace.wait(timeout=600)
    demo = app.build_demo(bundle_workspace)
    demo.queue()
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True, **app.LAUNCH_KWARGS)
    try:
        tab = "a-tab-that-closes"
        closed = threading.Event()

        def heartbeat() -> None:  # what a browser tab keeps open while it lives
            with httpx.Client(timeout=None) as browser, browser.stream("GET", f"{url}gradio_api/heartbeat/{tab}"):
                closed.wait()

        beating = threading.Thread(target=heartbeat, daemon=True)
        beating.start()
        assert raw_api.call(url, "start", ["a red circle", "", "mixed", 10], session_hash=tab)[0] == "complete"
        for _ in range(2):
            assert raw_api.call(url, "export", [], session_hash=tab)[0] == "complete"
        assert len(list(demo.scratch.root.iterdir())) == 2
        closed.set()
        beating.join(timeout=10)
        deadline = time.monotonic() + 30
        while list(demo.scratch.root.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert list(demo.scratch.root.iterdir()) == []
        # Uploads and Gradio's copies of served files: its own sweep, for files older than the same hour.
        assert demo.delete_cache == (app.TEMP_MAX_AGE_S, app.TEMP_MAX_AGE_S)
    finally:
        demo.close()
