"""Bad input through every entry point that takes it: the engine API, the command line and the app's HTTP API.

Each bad input must get a clear message and leave a session exactly as it was (labels, batch, round, seen and the
classifier's weights). What other files already pin down is not repeated here: empty prompts at the embedder and in
the app (test_embed, test_app), corrupt / empty / 16-bit / palette / RGBA files while indexing (test_data,
test_indexing, test_cli), out-of-range and unknown-id labels (test_engine), bad index vectors and duplicate ids
(index_contract), a classifier of another model for load and predict (test_hub, test_predict), repo names
(test_hub). Image files: an engine and command-line matter, and the app's one upload (start from an image), whose
corrupt, empty and oversized files test_browser sends.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError
from PIL import Image

import app
import trainer.hub
import trainer.hub_calls
from tests.helpers import raw_api
from tests.helpers.images import png_header_only
from tests.helpers.memory import rss_mb
from trainer import cli
from trainer.classifier import LinearProbe
from trainer.data import Collection
from trainer.export import export_classifier
from trainer.index.local import LocalIndex
from trainer.indexing import build_embeddings
from trainer.session import Session
from trainer.synthetic import planted_concept

GOOD_IMAGES = ["la.png", "cmyk.jpg", "animated.gif", "sixteen.png"]
BOMBS = ["bomb-20000.png", "bomb-10000.png"]  # over 2x Pillow's limit (it raises) and between 1x and 2x (it warns)


# ------------------------------------------------------------------------------------------------------ images
@pytest.fixture
def awkward_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "awkward"
    folder.mkdir()
    ramp = np.linspace(0, 255, 24 * 24).reshape(24, 24).astype(np.uint8)
    Image.fromarray(np.stack([ramp, ramp[::-1]], axis=-1), "LA").save(folder / "la.png")
    Image.new("CMYK", (24, 24), (0, 200, 200, 0)).save(folder / "cmyk.jpg")
    Image.fromarray(ramp.astype(np.uint16) * 257).save(folder / "sixteen.png")
    frames = [Image.new("RGB", (24, 24), colour) for colour in [(230, 20, 20), (20, 20, 230), (20, 230, 20)]]
    frames[0].save(folder / "animated.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    (folder / "bomb-20000.png").write_bytes(png_header_only(20_000, 20_000))
    (folder / "bomb-10000.png").write_bytes(png_header_only(10_000, 10_000))
    return folder


def _skipped_lines(text: str) -> dict[str, str]:
    return dict(re.findall(r"^  (\S+): (.+)$", text, flags=re.MULTILINE))


def through_engine(folder: Path, tmp_path: Path, tiny_clip_dir: Path, capsys) -> tuple[set[str], dict[str, str]]:
    from trainer import embed

    result = build_embeddings(embed.load(str(tiny_clip_dir)), Collection.open(str(folder), split=None), tmp_path)
    return set(result.ids), dict(result.skipped)


def through_cli_index(folder: Path, tmp_path: Path, tiny_clip_dir: Path, capsys) -> tuple[set[str], dict[str, str]]:
    argv = ["index", "--model", str(tiny_clip_dir), "--dataset", str(folder), "--cache-dir", str(tmp_path)]
    assert cli.main([*argv, "--out", str(tmp_path / "index")]) == 0
    skipped = _skipped_lines(capsys.readouterr().out)
    return set(LocalIndex.load(tmp_path / "index").ids), skipped


def through_cli_predict(folder: Path, tmp_path: Path, tiny_clip_dir: Path, capsys) -> tuple[set[str], dict[str, str]]:
    probe = LinearProbe.from_prompt(np.ones(16, np.float32) / 4, scale=1.0, bias=0.0, base_model=str(tiny_clip_dir))
    classifier = export_classifier(probe, tmp_path / "classifier")
    out = tmp_path / "scores.csv"
    assert cli.main(["predict", "--classifier", str(classifier), "--images", str(folder), "--out", str(out)]) == 0
    skipped = _skipped_lines(capsys.readouterr().out)
    return {line.split(",")[0] for line in out.read_text().splitlines()[1:]}, skipped


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # Pillow's own note, before we refuse
@pytest.mark.parametrize("entry", [through_engine, through_cli_index, through_cli_predict], ids=lambda f: f.__name__)
def test_awkward_images_are_used_and_bombs_refused_by_name_before_decoding(
    entry, awkward_folder, tmp_path, tiny_clip_dir, capsys
):
    used, skipped = entry(awkward_folder, tmp_path / "work", tiny_clip_dir, capsys)
    assert used == set(GOOD_IMAGES)
    assert set(skipped) == set(BOMBS)
    assert all("decompression bomb" in why for why in skipped.values())
    assert "10,000 x 10,000 pixels" in skipped["bomb-10000.png"]  # refused by us, not half-decoded by Pillow


def test_an_animated_image_is_embedded_as_its_first_frame(awkward_folder, tiny_embedder):
    collection = Collection.open(str(awkward_folder), split=None)
    first_frame = Image.new("RGB", (24, 24), (230, 20, 20))
    vectors = tiny_embedder.embed_images([collection.image("animated.gif"), first_frame])
    assert float(vectors[0] @ vectors[1]) == pytest.approx(1.0, abs=1e-3)


# ------------------------------------------------------------------------------------------------------ engine
@pytest.fixture(scope="module")
def concept():
    return planted_concept(n=400, dim=32, seed=3)


@pytest.fixture
def trained(concept) -> Session:
    """A session one round in, with labels and a trained classifier: the state a refusal must not touch."""
    session = Session(LocalIndex.from_vectors(concept.ids, concept.vectors), concept.prompt_vector, seed=0)
    session.label(concept.oracle([h.id for h in session.batch()]))
    session.train_and_requery()
    return session


def snapshot(session: Session) -> tuple:
    weights = {k: v.clone() for k, v in session.classifier.state_dict().items()}
    return session.labels, session.label_rounds, session.batch(), session.round, session.seen, weights


def same(a: tuple, b: tuple) -> bool:
    import torch

    return a[:-1] == b[:-1] and all(torch.equal(a[-1][k], b[-1][k]) for k in a[-1])


SESSION_REFUSALS = {
    "label NaN": (lambda s, c: s.label({s.batch()[0].id: float("nan")}), r"within \[-1, 1\]"),
    "label inf": (lambda s, c: s.label({s.batch()[0].id: float("inf")}), r"within \[-1, 1\]"),
    "label 3": (lambda s, c: s.label({s.batch()[0].id: 3.0}), r"within \[-1, 1\]"),
    "label False": (lambda s, c: s.label({s.batch()[0].id: False}), "false would mean no opinion"),
    "label an unknown id, among good ones": (
        lambda s, c: s.label({s.batch()[0].id: 1.0, "no-such-id": 1.0}),
        "never shown",
    ),
    "scores of NaN rows": (lambda s, c: s.scores(np.full((2, 32), np.nan, np.float32)), "NaN or inf"),
    "scores of wrong-size rows": (lambda s, c: s.scores(np.ones((2, 16), np.float32)), r"\(32,\)-dimensional"),
    "fit on an inf row": (
        lambda s, c: s.classifier.fit(np.full((1, 32), np.inf, np.float32), np.ones(1, np.float32)),
        "NaN or inf",
    ),
}


@pytest.mark.parametrize("case", list(SESSION_REFUSALS))
def test_a_refused_call_leaves_the_session_exactly_as_it_was(trained, concept, case):
    call, message = SESSION_REFUSALS[case]
    before = snapshot(trained)
    with pytest.raises(ValueError, match=message):
        call(trained, concept)
    assert same(snapshot(trained), before)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"prompt_vector": np.full(32, np.nan, np.float32)}, "32 finite numbers"),
        ({"prompt_vector": np.ones(512, np.float32)}, "32 finite numbers"),
        ({"strategy": "smartest"}, "unknown strategy 'smartest'; choose one of top, boundary"),
        ({"classifier": LinearProbe(dim=16, base_model="openai/clip-vit-base-patch32")}, "16-d embeddings"),
    ],
    ids=["NaN prompt", "wrong-size prompt", "unknown strategy", "classifier of another size"],
)
def test_a_session_refuses_bad_construction_naming_what_is_wrong(concept, options, message):
    index = LocalIndex.from_vectors(concept.ids, concept.vectors)
    arguments = {"prompt_vector": concept.prompt_vector, **options}
    with pytest.raises(ValueError, match=message):
        Session(index, **arguments)


@pytest.mark.parametrize("prompt", ["x" * 1_000, "猫が雪の中にいる", "собака на снегу", "\u200b"])
def test_long_and_non_latin_prompts_start_a_session_on_the_workspace(bundle_workspace, prompt):
    ws = bundle_workspace.wait(timeout=600)
    vector = ws.prompt_vector(prompt)
    assert vector.shape == (ws.index.dim,) and np.isfinite(vector).all()
    assert len(Session(ws.index, vector, batch_size=5).batch()) == 5


# ------------------------------------------------------------------------------------------------------ app
@pytest.fixture
def client(app_url):
    return Client(app_url, verbose=False)


def start(client: Client, prompt: str = "a red circle", strategy: object = "mixed", batch_size: object = 10):
    return client.predict(prompt, "", strategy, batch_size, api_name="/start")


def every_label(reply: dict, value: float) -> dict[str, float]:
    return {card["id"]: value for card in reply["batch"]}


def test_a_refused_request_leaves_no_traceback_in_the_server_log_and_a_fault_does(client, capfd, monkeypatch):
    """A visitor's mistake is a message, not a fault: on a public Space each would print about 40 lines of
    traceback to the log, burying the real faults, which must keep theirs."""
    first = start(client)
    capfd.readouterr()
    for refused in ({"no-such-id": 1.0}, {first["batch"][0]["id"]: 3.0}):
        with pytest.raises(AppError, match="Nothing was changed"):
            client.predict(refused, api_name="/round")
    with pytest.raises(AppError, match="Batch size must be a whole number from 1 to 50"):
        start(client, batch_size=0)
    assert "Traceback" not in capfd.readouterr().err

    def broken(self, scores):
        raise RuntimeError("a fault in the engine")

    monkeypatch.setattr("trainer.session.Session.label", broken)
    with pytest.raises(AppError):
        client.predict({first["batch"][0]["id"]: 1.0}, api_name="/round")
    log = capfd.readouterr().err
    assert "Traceback" in log and "a fault in the engine" in log


def test_the_upload_reaches_the_app_undecoded_so_a_bomb_is_refused_from_its_header(
    bundle_workspace, tmp_path, monkeypatch
):
    """Gradio's image component, left at its default mode "RGB", decodes and converts any other mode on upload,
    before the app's handler runs: a 30 KB one-bit PNG of 12,000 x 12,000 pixels cost the server 700 MB there."""
    from gradio.data_classes import ImageData
    from PIL import Image as PILImage

    (upload,) = [b for b in app.build_demo(bundle_workspace).blocks.values() if b.elem_id == "query-image"]
    picture = tmp_path / "one-bit.png"
    PILImage.new("1", (64, 64)).save(picture)  # not RGB: the default mode would convert it

    def decoded(self, *args, **kwargs):
        raise AssertionError("the upload's pixels were decoded before the app's own checks")

    monkeypatch.setattr(PILImage.Image, "load", decoded)
    assert upload.preprocess(ImageData(path=str(picture), orig_name="one-bit.png")) == str(picture)


@pytest.mark.parametrize("prompt", ["x" * 1_000, "猫が雪の中にいる", "🐕 في الثلج"], ids=["1,000 chars", "ja", "ar"])
def test_the_app_serves_long_and_non_latin_prompts(client, prompt):
    assert start(client, prompt)["round"] == 1


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (["a", "list"], "object of image id to score"),
        ("yes", "object of image id to score"),
        ({"first": "yes"}, "must be a number"),
        ({"first": 1.5}, "within \\[-1, 1\\]"),
        ({"first": -3}, "within \\[-1, 1\\]"),
        ({"first": False}, "false would mean no opinion"),
        ({"first": 1, "no-such-id": 1}, "never shown"),
    ],
    ids=["a list", "text", "a text score", "above 1", "below -1", "a boolean", "an unknown id"],
)
def test_bad_labels_through_the_api_are_refused_with_a_message_and_change_nothing(client, labels, message):
    first = start(client)
    if isinstance(labels, dict):
        labels = {(first["batch"][0]["id"] if k == "first" else k): v for k, v in labels.items()}
    with pytest.raises(AppError, match=message):
        client.predict(labels, api_name="/round")
    after = client.predict(every_label(first, -1.0), api_name="/round")  # as if the bad call had never happened
    assert after["round"] == 2 and after["stats"]["labels"] == 10 and after["stats"]["negatives"] == 10


@pytest.mark.parametrize(
    ("strategy", "batch_size", "message"),
    [("smartest", 10, "smartest"), ("mixed", 0, "got 0"), ("mixed", 1000, "1000"), ("mixed", "ten", "numbers")],
    ids=["unknown strategy", "batch size 0", "batch size 1000", "batch size as text"],
)
def test_bad_start_settings_through_the_api_are_refused_and_change_nothing(client, strategy, batch_size, message):
    first = start(client)
    second = client.predict(every_label(first, 1.0), api_name="/round")
    with pytest.raises(AppError, match=message):
        start(client, strategy=strategy, batch_size=batch_size)
    assert client.predict(every_label(second, -1.0), api_name="/round")["round"] == 3


RAW_REFUSALS = {
    # Sent as raw JSON, as a script or an attacker would: gradio_client will not send NaN, lone surrogates or too
    # few arguments. Each used to come back as {"error": null}, or to be accepted.
    "batch size NaN": ("start", ["a red circle", "", "mixed", float("nan")], "whole number from 1 to 50; got nan"),
    "a lone surrogate": ("start", ["dogs \ud800", "", "mixed", 10], r"lone surrogate \(U\+D800\)"),
    "a NUL": ("start", ["dogs\x00", "", "mixed", 10], r"control character \(U\+0000\)"),
    "a NUL in the negative": ("start", ["dogs", "cats\x00", "mixed", 10], "negative prompt contains a control"),
    "an escape sequence": ("start", ["\x1b[31mred", "", "mixed", 10], r"control character \(U\+001B\)"),
    "a 2,000-character prompt": ("start", ["x" * 2000, "", "mixed", 10], "2,000 characters long; the limit is 1,000"),
    "too few arguments": ("start", ["a red circle"], "didn.t receive enough input values"),
    "a label NaN": ("round", [{"first": float("nan")}, []], r"within \[-1, 1\]"),
    "a round with too few arguments": ("round", [], "didn.t receive enough input values"),
}


@pytest.mark.parametrize("case", list(RAW_REFUSALS))
def test_raw_api_refusals_always_carry_a_message_and_keep_the_session(app_url, case):
    api, data, message = RAW_REFUSALS[case]
    visitor = f"raw-{abs(hash(case))}"
    event, first = raw_api.call(app_url, "start", ["a red circle", "", "mixed", 10], session_hash=visitor)
    assert event == "complete"
    first = first[-1]  # raw outputs: the session state first, the reply last
    shown = first["batch"][0]["id"]
    data = [({shown: d["first"]} if isinstance(d, dict) else d) for d in data]  # "first": the batch's first image
    event, answer = raw_api.call(app_url, api, data, session_hash=visitor)
    assert event == "error" and answer["error"], f"{case}: no message: {answer}"
    assert re.search(message, answer["error"]), answer["error"]
    event, answer = raw_api.call(app_url, "round", [every_label(first, -1.0), []], session_hash=visitor)
    assert event == "complete" and answer[-1]["round"] == 2 and answer[-1]["stats"]["negatives"] == 10


def test_a_10_mb_prompt_is_refused_at_once_and_costs_no_memory(app_url):
    raw_api.call(app_url, "start", ["a red circle", "", "mixed", 10])  # warm: a first call allocates for itself
    prompt = "x" * 10_000_000
    before, started = rss_mb(), time.perf_counter()
    event, answer = raw_api.call(app_url, "start", [prompt, "", "mixed", 10])
    elapsed = time.perf_counter() - started
    assert event == "error" and "10,000,000 characters long; the limit is 1,000" in answer["error"]
    assert elapsed < 2, f"took {elapsed:.1f} s"  # a hang check, not a speed claim: a 9 MB prompt used to take 35 s
    del prompt
    assert rss_mb() - before < 100  # the app runs in this process: this is the server's memory too


@pytest.mark.parametrize("dim", [500_000_000, 10**18], ids=["5e8", "1e18"])
def test_loading_a_classifier_of_an_absurd_dim_is_refused_at_once_and_costs_no_memory(client, tmp_path, dim):
    probe = LinearProbe.from_prompt(np.ones(16, np.float32) / 4, scale=1.0, bias=0.0, base_model="someone/clip")
    folder = export_classifier(probe, tmp_path / "absurd")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "dim": dim}))
    first = start(client)
    before, started = rss_mb(), time.perf_counter()
    with pytest.raises(AppError, match=f"dim must be from 1 to 16,384; got {dim:,}"):
        client.predict(str(folder), api_name="/load")
    assert time.perf_counter() - started < 2  # a hang check: it used to take 10.5 s and +3.8 GB, never freed
    assert rss_mb() - before < 100
    assert client.predict(every_label(first, 1.0), api_name="/round")["round"] == 2  # the session is still there


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (["indexed collection", float("nan")], "threshold must be within [0, 1]; got nan"),
        (["indexed collection", 2], "threshold must be within [0, 1]; got 2"),
        (["indexed collection", "abc"], "The threshold must be a number from 0 to 1; got 'abc'"),
        ([None, 0.5], "Choose what to classify: indexed collection or held-out split"),
        (["everything", 0.5], "Choose what to classify"),
    ],
    ids=["threshold NaN", "threshold 2", "threshold text", "split None", "unknown split"],
)
def test_classify_refuses_a_bad_threshold_or_split_with_a_message(app_url, data, message):
    visitor = f"classify-{abs(hash(str(data)))}"
    raw_api.call(app_url, "start", ["a red circle", "", "mixed", 10], session_hash=visitor)
    event, answer = raw_api.call(app_url, "classify", data, session_hash=visitor)
    assert event == "error" and message in answer["error"]


def test_a_tampered_saved_session_is_refused_with_a_message_and_a_good_one_resumes(bundle_workspace):
    """The browser's saved session is input a visitor controls (its key is served to every visitor)."""
    import gradio as gr

    ws = bundle_workspace.wait(timeout=600)
    session = ws.new_session("a red circle", "stripes")
    session.label({h.id: -1.0 for h in session.batch()})
    session.train_and_requery()
    saved = json.loads(json.dumps(session.to_saved()))
    assert app.resumed(ws, saved).labels == session.labels
    tampered = [
        ({"batch_size": 10**9}, "batch size must be from 1 to 50; got 1,000,000,000"),
        ({"prior_strength": "ten"}, "must be a number; got 'ten'"),
        ({"prompt_vector": [0.0] * ws.index.dim}, "prompt vector is zero"),
        ({"labels": list(saved["labels"])}, "no saved session for this model and collection"),
    ]
    for change, message in tampered:
        with pytest.raises(gr.Error, match=message):
            app.resumed(ws, {**saved, **change})


def test_loading_a_classifier_of_another_base_model_names_both_and_keeps_the_session(client, tmp_path):
    probe = LinearProbe.from_prompt(np.ones(16, np.float32) / 4, scale=1.0, bias=0.0, base_model="someone/other-clip")
    folder = export_classifier(probe, tmp_path / "other")
    first = start(client)
    with pytest.raises(AppError, match="someone/other-clip"):
        client.predict(str(folder), api_name="/load")
    assert client.predict(every_label(first, 1.0), api_name="/round")["round"] == 2


def test_pushing_to_a_path_shaped_repo_name_is_refused_before_any_request(client, monkeypatch, hub_online):
    monkeypatch.delenv("SPACE_ID", raising=False)
    monkeypatch.setattr(trainer.hub_calls, "get_token", lambda: "hf_localMachineToken")
    monkeypatch.setattr(trainer.hub, "HfApi", None)  # any request would fail loudly
    start(client)
    with pytest.raises(AppError, match="repository id"):
        client.predict("../../etc/passwd", False, False, api_name="/push")
