"""The app through its HTTP API (gradio_client) on the offline bundle: what a visitor's clicks trigger."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

import app
import trainer.hub
from app import MAX_BATCH
from trainer.classifier import LinearProbe
from trainer.hub import read_labels, token_for_push

N_OUT = 2 * MAX_BATCH  # (image, slider) per cell, then stats, progress plot, map


@pytest.fixture
def client(app_url):
    return Client(app_url, verbose=False)


def search(
    client: Client, prompt: str = "a red circle", batch_size: int = 10, strategy: str = "mixed", negative: str = ""
):
    return client.predict(prompt, negative, strategy, batch_size, 10, api_name="/search")


def value(output):
    """A component update arrives as {"value": ..., "__type__": "update", ...}; a plain value as itself."""
    return output["value"] if isinstance(output, dict) and output.get("__type__") == "update" else output


def images(outputs) -> list[str]:
    return [value(outputs[2 * i]) for i in range(MAX_BATCH) if value(outputs[2 * i])]


def sliders(outputs) -> list[float]:
    return [value(outputs[2 * i + 1]) for i in range(MAX_BATCH)]


def stats(outputs) -> str:
    return value(outputs[N_OUT])


def train(client: Client, values: list[float]):
    return client.predict(*values, *[0.0] * (MAX_BATCH - len(values)), api_name="/train")


def test_search_shows_a_batch_and_round_one(client):
    out = search(client, batch_size=8)
    assert len(images(out)) == 8
    assert "Round 1" in stats(out) and "0 labels" in stats(out)


def test_label_train_and_requery_shows_new_images_and_round_two_then_undo_restores(client):
    first = search(client)
    labels = [1.0, 1.0, -1.0, -0.5, 0.0, 0.0, -1.0, -1.0, -1.0, 1.0]
    second = train(client, labels)
    assert "Round 2" in stats(second)
    assert "8 labels (+3 / −5)" in stats(second)
    assert not set(images(first)) & set(images(second))  # never shows an image twice
    assert sliders(second)[:10] == [0.0] * 10  # a fresh batch starts with no opinion
    back = client.predict(api_name="/undo")
    assert "Round 1" in stats(back)
    assert images(back) == images(first)
    assert sliders(back)[:10] == labels  # the labels given before training come back


def test_mark_the_rest_not_it_only_touches_untouched_sliders_of_the_batch(client):
    search(client, batch_size=5)
    values = [1.0, 0.0, 0.5, 0.0, 0.0] + [0.0] * (MAX_BATCH - 5)
    assert list(client.predict(*values, api_name="/mark_rest")) == [1.0, -1.0, 0.5, -1.0, -1.0] + [0.0] * 15


def test_classify_counts_matches_over_the_threshold_and_shows_the_top_ones(client):
    search(client)
    train(client, [1.0] * 3 + [-1.0] * 7)
    summary, gallery = client.predict("indexed collection", 0.5, api_name="/classify")
    above, total = (int(n.replace(",", "")) for n in re.search(r"\*\*([\d,]+) of ([\d,]+)\*\*", summary).groups())
    assert 0 < above < total
    assert 0 < len(gallery) <= min(above, 48)
    summary, _ = client.predict("held-out split", 0.99, api_name="/classify")
    assert "held-out split" in summary


def test_two_visitors_keep_separate_sessions(app_url):
    alice, bob = Client(app_url, verbose=False), Client(app_url, verbose=False)
    search(alice)
    search(bob, prompt="a blue square")
    after_alice = train(alice, [1.0] * 10)
    assert "+10" in stats(after_alice)
    bob_round = train(bob, [-1.0] * 10)
    assert "10 labels (+0 / −10)" in stats(bob_round)
    assert "Round 2" in stats(bob_round)


@pytest.mark.parametrize("prompt", ["", "   "])
def test_an_empty_prompt_gets_a_clear_message(client, prompt):
    with pytest.raises(AppError, match="Describe the concept"):
        search(client, prompt=prompt)


def test_training_before_searching_says_what_to_do(client):
    with pytest.raises(AppError, match="Search for a concept first"):
        train(client, [1.0])


def test_undo_with_nothing_to_undo_says_so(client):
    search(client)
    with pytest.raises(AppError, match="nothing to undo"):
        client.predict(api_name="/undo")


# ----------------------------------------------------------------------------------------------- export & share
def test_export_gives_files_that_load_back(client, tmp_path):
    search(client, negative="a blue square")
    train(client, [1.0, -1.0, 1.0] + [-1.0] * 7)
    archive, labels_csv, labels_jsonl = client.predict(api_name="/export")
    with zipfile.ZipFile(archive) as zipped:
        zipped.extractall(tmp_path)
    folder = next(p.parent for p in tmp_path.rglob("model.safetensors"))
    probe = LinearProbe.from_pretrained(folder)
    assert probe.prompt == "a red circle" and probe.negative_prompt == "a blue square" and probe.dim > 0
    assert {r.score for r in read_labels(labels_csv)} == {1.0, -1.0}
    assert len(read_labels(labels_jsonl)) == 10


def test_push_signed_out_on_a_space_is_refused_and_never_uses_the_spaces_token(client, monkeypatch):
    monkeypatch.setenv("SPACE_ID", "someone/concept-trainer")
    monkeypatch.setenv("HF_TOKEN", "hf_SPACEOWNERsecret")
    pushed = []
    monkeypatch.setattr(app, "push_classifier", lambda *a, **k: pushed.append(a) or "")
    search(client)
    with pytest.raises(AppError, match="Sign in with Hugging Face"):
        client.predict("me/red-circles", False, False, api_name="/push")
    assert pushed == []


def test_push_run_locally_uses_this_machines_token_and_links_the_repo(client, monkeypatch):
    monkeypatch.delenv("SPACE_ID", raising=False)
    monkeypatch.setattr(trainer.hub, "get_token", lambda: "hf_localMachineToken")
    calls = []

    def fake_push(folder, repo, token, **options):
        calls.append((Path(folder), repo, token, options))
        return f"https://huggingface.co/{repo}"

    monkeypatch.setattr(app, "push_classifier", fake_push)
    search(client)
    result = client.predict("me/red-circles", True, False, api_name="/push")
    assert "https://huggingface.co/me/red-circles" in result
    folder, repo, token, options = calls[0]
    assert (repo, token, options) == ("me/red-circles", "hf_localMachineToken", {"private": True, "exist_ok": False})
    assert (folder / "model.safetensors").exists()
    assert "hf_localMachineToken" not in result


def test_push_without_any_token_locally_says_how_to_get_one(client, monkeypatch):
    monkeypatch.delenv("SPACE_ID", raising=False)
    monkeypatch.setattr(trainer.hub, "get_token", lambda: None)
    search(client)
    with pytest.raises(AppError, match="HF_TOKEN"):
        client.predict("me/red-circles", False, False, api_name="/push")


def test_a_signed_in_visitor_pushes_with_their_own_token():
    assert token_for_push("hf_visitor", space=True) == "hf_visitor"


def test_load_a_classifier_from_a_folder_and_keep_training(client, tmp_path):
    search(client)
    train(client, [1.0] * 2 + [-1.0] * 8)
    archive = client.predict(api_name="/export")[0]
    with zipfile.ZipFile(archive) as zipped:
        zipped.extractall(tmp_path)
    folder = next(p.parent for p in tmp_path.rglob("model.safetensors"))
    other = Client(client.src, verbose=False)
    loaded = other.predict(str(folder), api_name="/load")
    assert loaded[0] == "a red circle"
    assert "Round 1" in stats(loaded[1:])
    assert "Round 2" in stats(train(other, [1.0] * 10))
    with pytest.raises(AppError, match="Enter a Hub repository"):
        other.predict("  ", api_name="/load")


def test_parallel_train_calls_for_one_session_take_turns(client):
    search(client)
    jobs = [client.submit(*[-1.0] * MAX_BATCH, api_name="/train") for _ in range(2)]
    results = [job.result(timeout=60) for job in jobs]
    final = max((stats(r) for r in results), key=lambda text: int(re.search(r"Round (\d+)", text).group(1)))
    assert "Round 3" in final and "30 seen" in final  # two whole rounds, one after the other
