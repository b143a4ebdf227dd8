"""Sharing a classifier: export, strict load, model card, labels, push (with the Hub patched at HfApi), tokens.

The Hub is never contacted: HfApi.create_repo / upload_folder and fetch_file are replaced where trainer.hub uses
them, and conftest.py forces offline mode, so a call that slipped through would fail instead of reaching the network.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import json
import re
import shutil
import traceback
import zipfile
from pathlib import Path

import httpx2
import numpy as np
import pytest
import yaml
from huggingface_hub import ModelCard, metadata_load
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError
from huggingface_hub.utils import validate_repo_id as hub_validate_repo_id
from safetensors.torch import load_file, save_file

import trainer.hub as hub
import trainer.hub_calls
from tests.helpers.fake_hub import SECRET, FakeHub, http_error, leaked
from trainer.classifier import LinearProbe
from trainer.export import EXPORT_FILES, export_classifier, read_labels, zip_export
from trainer.hub import ClassifierMismatch, load_classifier, push_classifier
from trainer.hub_calls import SIGN_IN_MESSAGE, HubError, HubRetry, find_local_token, validate_repo_id
from trainer.index.local import LocalIndex
from trainer.session import Session
from trainer.synthetic import planted_concept

CLIP = "openai/clip-vit-base-patch32"
NO_WAIT = HubRetry(backoff_s=0)  # the retry schedule itself: tests/test_hub_calls.py


@pytest.fixture(scope="module")
def concept():
    return planted_concept(n=400, dim=16, seed=3)


@pytest.fixture(scope="module")
def trained(concept):
    index = LocalIndex.from_vectors(concept.ids, concept.vectors)
    session = Session(
        index,
        concept.prompt_vector,
        prompt="red circles on stripes",
        negative_prompt="squares",
        base_model=CLIP,
        base_model_revision="rev1",
    )
    for _ in range(3):
        session.label(concept.oracle([h.id for h in session.batch()]))
        session.train_and_requery()
    batch = [h.id for h in session.batch()]
    session.label({batch[0]: 0.0, batch[1]: -0.5})  # no opinion, a weak negative; not trained on yet
    return session


@pytest.fixture
def session(trained):
    return copy.deepcopy(trained)  # training takes a while; tests that change the session get their own copy


@pytest.fixture
def export(session, tmp_path):
    return export_classifier(session, tmp_path / "export", collection="planted concept (test)")


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture
def fake_hub(tmp_path, monkeypatch):
    return FakeHub(tmp_path).install(monkeypatch)


# ----------------------------------------------------------------------------------------------- export and load
def test_export_then_load_gives_bit_identical_scores(session, export, concept):
    loaded = load_classifier(export, expect_base_model=CLIP, expect_dim=16)
    assert np.array_equal(loaded.predict_proba(concept.vectors), session.classifier.predict_proba(concept.vectors))
    for name, tensor in session.classifier.state_dict().items():
        assert np.array_equal(loaded.state_dict()[name].numpy(), tensor.numpy()), name
    assert (loaded.base_model, loaded.base_model_revision, loaded.prompt) == (CLIP, "rev1", "red circles on stripes")


def test_config_records_what_a_user_needs_and_follows_a_moved_threshold(session, tmp_path):
    session.classifier.threshold = 0.7  # moved after construction: the export must say 0.7, not the init value
    folder = export_classifier(session, tmp_path / "moved")
    config = json.loads((folder / "config.json").read_text())
    assert config == {
        "base_model": CLIP,
        "base_model_revision": "rev1",
        "dim": 16,
        "prompt": "red circles on stripes",
        "negative_prompt": "squares",
        "recipe": "balanced",
        "prior_strength": None,  # automatic: the labels choose it (trainer/map_fit.py)
        "threshold": 0.7,
    }
    assert load_classifier(folder).threshold == 0.7


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (lambda s: s.update(extra=s["linear.bias"].clone()), r"unexpected \['extra'\]"),
        (lambda s: s.pop("prior_weight"), r"missing \['prior_weight'\]"),
        (lambda s: s.update({"linear.weight": s["linear.weight"][:, :8].contiguous()}), r"linear.weight \(1, 8\)"),
        (lambda s: s["linear.bias"].fill_(float("nan")), r"NaN or infinite values in \['linear.bias'\]"),
    ],
    ids=["unexpected key", "missing key", "wrong shape", "nan"],
)
def test_strict_loading_refuses_a_tampered_state_dict(export, tamper, message):
    state = load_file(export / "model.safetensors")
    tamper(state)
    save_file(state, export / "model.safetensors")
    with pytest.raises(HubError, match=message):
        load_classifier(export)


def test_loading_refuses_a_broken_config_or_weights_file(export):
    (export / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(HubError, match="not a readable safetensors file"):
        load_classifier(export)
    (export / "config.json").write_text(json.dumps({"dim": 16, "recipe": "sideways"}))
    with pytest.raises(HubError, match="unknown recipe 'sideways'"):
        load_classifier(export)
    (export / "config.json").write_text("{}")
    with pytest.raises(HubError, match="does not describe a classifier: it has no 'dim'"):
        load_classifier(export)
    (export / "config.json").unlink()
    with pytest.raises(HubError, match=r"config\.json missing"):
        load_classifier(export)


@pytest.mark.parametrize(
    ("model", "dim"), [("openai/clip-vit-large-patch14", 768), (CLIP, 768), ("tiny-clip", 16)], ids=str
)
def test_loading_onto_another_base_model_or_size_fails_naming_both(export, model, dim):
    with pytest.raises(ClassifierMismatch) as caught:
        load_classifier(export, expect_base_model=model, expect_dim=dim)
    message = str(caught.value)
    assert f"16-d embeddings of {CLIP}" in message
    assert f"current model is {model} ({dim}-d)" in message


def test_a_local_base_model_matches_however_its_path_is_written(concept, tmp_path, monkeypatch):
    model_dir = tmp_path / "models" / "tiny-clip"
    model_dir.mkdir(parents=True)
    probe = LinearProbe.from_prompt(concept.prompt_vector, scale=5.0, bias=-1.0, base_model=str(model_dir))
    folder = export_classifier(probe, tmp_path / "local")
    monkeypatch.chdir(tmp_path)
    load_classifier(folder, expect_base_model="models/tiny-clip/", expect_dim=16)
    with pytest.raises(ClassifierMismatch):
        load_classifier(folder, expect_base_model="models", expect_dim=16)
    with pytest.raises(ClassifierMismatch):
        load_classifier(folder, expect_base_model="models/TINY-clip", expect_dim=16)  # paths are not case-blind


def test_hub_model_ids_match_whatever_their_case(export, session):
    loaded = load_classifier(export, expect_base_model=CLIP.upper(), expect_dim=16)
    assert loaded.base_model == CLIP  # the recorded id, as written
    np.testing.assert_allclose(loaded.weight, session.classifier.weight)
    with pytest.raises(ClassifierMismatch):  # case-blind, not blind: another model's id still fails
        load_classifier(export, expect_base_model="OPENAI/CLIP-VIT-BASE-PATCH16", expect_dim=16)


def test_pulling_from_the_hub_downloads_config_and_weights_then_loads_strictly(export, session, concept, monkeypatch):
    asked = []

    def fake_download(repo_id, filename, folder, *, max_bytes, revision=None, token=None):
        asked.append((repo_id, filename, revision, token))
        return export / filename

    monkeypatch.setattr(hub, "fetch_file", fake_download)
    loaded = load_classifier("alice/red-circles", revision="v1", token=False, expect_base_model=CLIP)
    assert asked == [
        ("alice/red-circles", "config.json", "v1", False),
        ("alice/red-circles", "model.safetensors", "v1", False),
    ]
    assert np.array_equal(loaded.predict_proba(concept.vectors), session.classifier.predict_proba(concept.vectors))


def test_pulling_a_missing_repo_or_a_path_that_is_not_there_says_so(monkeypatch):
    def missing(repo_id, filename, *args, **kwargs):
        error = http_error(404, "Repository not found")
        raise RepositoryNotFoundError(str(error), response=error.response)

    monkeypatch.setattr(hub, "fetch_file", missing)
    with pytest.raises(HubError, match=r"No model repository 'alice/nothing' on the Hub.*no local folder"):
        load_classifier("alice/nothing", retry=NO_WAIT)
    with pytest.raises(HubError, match=r"No classifier folder at \./not-here"):
        load_classifier("./not-here")


def test_a_file_inside_an_export_is_not_taken_for_a_repo_id(export, monkeypatch):
    monkeypatch.chdir(export.parent)
    with pytest.raises(HubError, match=r"No classifier folder at export/model\.safetensors: pass the folder"):
        load_classifier("export/model.safetensors")  # a valid-looking repo id, but a local file


def test_pulling_while_offline_says_offline_mode_is_on():
    # The real fetch_file, with offline mode on (conftest sets HF_HUB_OFFLINE): no request is even attempted.
    with pytest.raises(HubError, match=r"offline mode is on \(HF_HUB_OFFLINE=1\)"):
        load_classifier("alice/never-downloaded-classifier", retry=NO_WAIT)


def test_export_refuses_a_foreign_folder_but_replaces_an_earlier_export(session, export, tmp_path):
    before = digest(export)
    session.classifier.threshold = 0.6
    export_classifier(session, export)
    assert digest(export) != before and sorted(digest(export)) == sorted(before)
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"precious")
    with pytest.raises(FileExistsError, match="not an earlier export"):
        export_classifier(session, foreign)
    assert [p.name for p in foreign.iterdir()] == ["holiday.jpg"]
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]


def test_export_needs_to_know_the_base_model(concept, tmp_path):
    probe = LinearProbe.from_prompt(concept.prompt_vector, scale=5.0, bias=-1.0)
    with pytest.raises(ValueError, match="base_model=<the CLIP model id>"):
        export_classifier(probe, tmp_path / "nowhere")
    assert not (tmp_path / "nowhere").exists()


def test_zip_export_unzips_to_a_folder_with_the_same_files(export, tmp_path):
    archive = zip_export(export)
    assert archive == export.with_name("export.zip")
    with zipfile.ZipFile(archive) as z:
        z.extractall(tmp_path / "unzipped")
    assert digest(tmp_path / "unzipped" / "export") == digest(export)


# ----------------------------------------------------------------------------------------------- card and labels
def test_labels_round_trip_through_jsonl_and_csv(session, export):
    for path in (export, export / "labels.csv"):
        records = read_labels(path)
        assert {r.id: r.score for r in records} == session.labels
        assert {r.id: r.round for r in records} == session.label_rounds
        assert not any(r.audit for r in records)
    with (export / "labels.csv").open(newline="") as f:
        assert next(csv.reader(f)) == ["id", "score", "round", "audit"]


def test_card_metadata_parses_back_with_the_hub_library(export):
    metadata = metadata_load(export / "README.md")
    assert metadata["library_name"] == "concept-trainer"
    assert metadata["base_model"] == CLIP
    assert metadata["license"] == "apache-2.0"
    assert metadata["pipeline_tag"] == "image-classification"
    assert {"clip", "linear-probe", "concept-trainer"} <= set(metadata["tags"])
    card = ModelCard.load(export / "README.md")
    assert card.data.base_model == CLIP
    text = (export / "README.md").read_text()
    assert yaml.safe_load(text.split("---")[1]) == metadata


def test_card_reports_prompt_label_counts_rounds_strategy_and_a_cross_validated_estimate(session, export):
    text = (export / "README.md").read_text()
    labels = session.labels.values()
    positives, negatives = sum(v > 0 for v in labels), sum(v < 0 for v in labels)
    assert "# Concept classifier: red circles on stripes" in text
    counts = f"{positives} positive, {negatives} negative, 1 seen with no opinion ({len(labels)} in all)"
    assert f"| Labels | {counts} |" in text
    assert "| Rounds | 4 |" in text  # the 4th batch was labelled (not trained yet): the app was showing Round 4
    assert "| Negative prompt | squares |" in text
    assert "| Selection strategy | `mixed`: Half top, half boundary" in text
    assert "Note: 2 label(s) were given after the last training round" in text
    assert "optimistic" in text and "model-index" not in metadata_load(export / "README.md")
    assert "revision `rev1`" in text
    assert 'LinearProbe.from_pretrained("your-name/your-classifier")' in text


def test_card_states_a_held_out_ap_and_a_chosen_license(session, tmp_path):
    folder = export_classifier(
        session, tmp_path / "ap", held_out_ap=0.8123, held_out_note="validation split, 500 images", license="mit"
    )
    text = (folder / "README.md").read_text()
    assert "never labelled: **0.812** (validation split, 500 images)" in text
    assert "No quality estimate" not in text
    assert metadata_load(folder / "README.md")["license"] == "mit"


def test_card_escapes_markup_in_the_prompt_and_leaves_a_local_model_out_of_the_metadata(concept, tmp_path):
    model_dir = tmp_path / "assets" / "tiny-clip"
    model_dir.mkdir(parents=True)
    probe = LinearProbe.from_prompt(
        concept.prompt_vector, scale=5.0, bias=-1.0, base_model=str(model_dir), prompt="cats | <b>dogs</b>\n*x*"
    )
    folder = export_classifier(probe, tmp_path / "local")
    text = (folder / "README.md").read_text()
    assert "base_model" not in metadata_load(folder / "README.md")
    assert "a local CLIP model folder, `tiny-clip`" in text
    assert r"| Prompt | cats \| \<b\>dogs\</b\> \*x\* |" in text
    assert "No quality estimate was measured" in text and "| Rounds | 0 |" in text
    assert "has not been refined by any labelling yet" in text


def test_an_audited_session_puts_its_estimates_and_intervals_in_the_model_index(session, concept, tmp_path):
    for _ in range(2):
        session.label(concept.oracle([h.id for h in session.audit(20)]))
    quality = session.quality()
    folder = export_classifier(session, tmp_path / "audited", collection="planted concept (test)")
    (entry,) = metadata_load(folder / "README.md")["model-index"]
    (result,) = entry["results"]  # one task on one dataset, as the Hub's model-index spec groups them
    assert result["task"]["type"] == "image-classification"
    assert result["dataset"] == {"type": "planted-concept-test", "name": "planted concept (test)"}
    metrics = {m["type"]: m for m in result["metrics"]}
    assert list(metrics) == ["average_precision", "precision", "recall", "prevalence"]
    for name, estimate in [("average_precision", quality.ap), ("recall", quality.recall)]:
        assert metrics[name]["value"] == round(estimate.value, 4)
        args = metrics[name]["args"]
        assert (args["interval_low"], args["interval_high"]) == (round(estimate.low, 4), round(estimate.high, 4))
        assert args["audit_labels"] == 40 and args["confidence"] == 0.9 and "held out" in args["method"]
    assert metrics["precision"]["args"]["threshold"] == 0.5
    # huggingface_hub reads it back into EvalResults, which is what the Hub's widget and leaderboards use
    card = ModelCard.load(folder / "README.md")
    assert {r.metric_type for r in card.data.eval_results} == set(metrics)
    assert card.data.model_name == "red-circles-on-stripes"
    text = (folder / "README.md").read_text()
    assert "from an audit: 40 image(s) drawn at random" in text and "| Matching images in the collection |" in text
    audit_records = [r for r in read_labels(folder) if r.audit]
    assert {r.id: r.score for r in audit_records} == session.audit_labels
    assert {r.id: r.score for r in read_labels(folder) if not r.audit} == session.labels


def test_the_card_counts_rounds_as_the_app_numbers_them(concept, tmp_path):
    session = Session(LocalIndex.from_vectors(concept.ids, concept.vectors), concept.prompt_vector, base_model=CLIP)
    session.label(concept.oracle([h.id for h in session.batch()]))
    session.train_and_requery()  # the app now says "Round 2"
    text = (export_classifier(session, tmp_path / "one") / "README.md").read_text()
    assert "| Rounds | 1 |" in text  # nothing labelled in round 2 yet
    session.label(concept.oracle([h.id for h in session.batch()]))
    text = (export_classifier(session, tmp_path / "two") / "README.md").read_text()
    assert "| Rounds | 2 |" in text and "refined by 2 round(s) of human labelling" in text
    assert "Note: 10 label(s) were given after the last training round" in text
    resumed = Session(LocalIndex.from_vectors(concept.ids, concept.vectors), concept.prompt_vector, base_model=CLIP)
    resumed.resume(session.labels)
    text = (export_classifier(resumed, tmp_path / "resumed") / "README.md").read_text()
    assert "refined by 20 label(s) carried over from an earlier session." in text
    assert "| Rounds | 0, after 20 label(s) from an earlier session |" in text


def test_a_session_rebuilt_from_its_saved_copy_gives_the_same_card(concept, tmp_path):
    index = LocalIndex.from_vectors(concept.ids, concept.vectors)
    session = Session(index, concept.prompt_vector, prompt="red", negative_prompt="blue", base_model=CLIP)
    for _ in range(3):
        session.label(concept.oracle([h.id for h in session.batch()]))
        session.train_and_requery()
    session.label(concept.oracle([h.id for h in session.audit(20)]))
    saved = json.loads(json.dumps(session.to_saved()))
    again = Session.from_saved(index, saved, base_model=CLIP)
    assert again.round == session.round == 4
    before = (export_classifier(session, tmp_path / "before") / "README.md").read_text()
    after = (export_classifier(again, tmp_path / "after") / "README.md").read_text()
    for text in (before, after):
        assert "| Rounds | 3 |" in text and "| Negative prompt | blue |" in text and "earlier session" not in text
        assert "from an audit: 20 image(s) drawn at random" in text
    assert "Note:" not in after  # every label was trained on when the saved copy was taken over
    assert [m["args"]["audit_labels"] for m in _metrics(after)] == [20] * 4


def _metrics(card_text: str) -> list[dict]:
    (entry,) = yaml.safe_load(card_text.split("---")[1])["model-index"]
    return entry["results"][0]["metrics"]


# ----------------------------------------------------------------------------------------------------------- push
def test_push_uploads_weights_config_card_and_labels(session, export, fake_hub, concept):
    url = push_classifier(export, "alice/red-circles", SECRET)
    assert url == "https://huggingface.co/alice/red-circles"
    expected = {"repo_id": "alice/red-circles", "repo_type": "model", "private": False, "exist_ok": False}
    assert fake_hub.create_calls == [expected]
    (upload,) = fake_hub.upload_calls
    assert upload["repo_id"] == "alice/red-circles" and upload["repo_type"] == "model"
    assert "red circles on stripes" in upload["commit_message"]
    uploaded = fake_hub.uploaded
    assert sorted(p.name for p in uploaded.iterdir()) == sorted(EXPORT_FILES)
    config = json.loads((uploaded / "config.json").read_text())
    assert {k: config[k] for k in ("base_model", "dim", "prompt", "negative_prompt", "recipe", "threshold")} == {
        "base_model": CLIP,
        "dim": 16,
        "prompt": "red circles on stripes",
        "negative_prompt": "squares",
        "recipe": "balanced",
        "threshold": 0.5,
    }
    metadata = metadata_load(uploaded / "README.md")
    assert (metadata["library_name"], metadata["base_model"], metadata["license"]) == (
        "concept-trainer",
        CLIP,
        "apache-2.0",
    )
    assert "linear-probe" in metadata["tags"]
    card = (uploaded / "README.md").read_text()
    assert 'LinearProbe.from_pretrained("alice/red-circles")' in card and "your-name/your-classifier" not in card
    assert {r.id: r.score for r in read_labels(uploaded / "labels.jsonl")} == session.labels
    assert {r.id: r.score for r in read_labels(uploaded / "labels.csv")} == session.labels
    pulled = load_classifier(uploaded)
    assert np.array_equal(pulled.predict_proba(concept.vectors), session.classifier.predict_proba(concept.vectors))
    assert fake_hub.tokens == [SECRET, SECRET] and fake_hub.library_names == ["concept-trainer"]


def test_push_of_a_session_with_a_bare_name_lands_in_the_token_owners_namespace(session, fake_hub):
    url = push_classifier(session, "red-circles", SECRET, private=True, held_out_ap=0.5)
    assert url == "https://huggingface.co/alice/red-circles"
    assert fake_hub.create_calls[0]["private"] is True
    assert fake_hub.upload_calls[0]["repo_id"] == "alice/red-circles"
    card = (fake_hub.uploaded / "README.md").read_text()
    assert 'repo = "alice/red-circles"' in card and "**0.500**" in card


def test_a_push_writes_its_export_once_with_the_real_repo_id_and_uploads_that_folder(
    session, export, fake_hub, monkeypatch
):
    written = []

    def write_export(facts, folder):
        written.append(real_write(facts, folder))
        return written[-1]

    real_write = hub.write_export
    monkeypatch.setattr(hub, "write_export", write_export)
    copies = []  # files copied by the push (the fake Hub's own copy of an upload is not counted)

    def copyfile(source, target, **options):
        if not Path(target).is_relative_to(fake_hub.uploaded):
            copies.append(target)
        return real_copy(source, target, **options)

    real_copy = shutil.copyfile
    monkeypatch.setattr(shutil, "copyfile", copyfile)
    push_classifier(session, "red-circles", SECRET)
    (folder,) = written
    assert [call["folder_path"] for call in fake_hub.upload_calls] == [folder] and copies == []
    assert 'repo = "alice/red-circles"' in (fake_hub.uploaded / "README.md").read_text()
    # A folder exported for its repo is uploaded as it is; one with the placeholder goes as a copy naming the repo.
    named = export_classifier(session, export.parent / "named", repo_id="alice/named")
    push_classifier(named, "alice/named", SECRET)
    assert fake_hub.upload_calls[-1]["folder_path"] == named and copies == [] and len(written) == 1
    push_classifier(export, "alice/other", SECRET)
    assert fake_hub.upload_calls[-1]["folder_path"] != export and len(copies) == len(list(export.iterdir())) - 1
    assert 'repo = "alice/other"' in (fake_hub.uploaded / "README.md").read_text()


def test_push_uploads_only_the_exports_own_files(export, fake_hub):
    (export.parent / "stray").mkdir()
    shutil.move(export / "labels.csv", export.parent / "stray" / "labels.csv")  # an optional file missing is fine
    push_classifier(export, "alice/x", SECRET)
    assert sorted(p.name for p in fake_hub.uploaded.iterdir()) == sorted(set(EXPORT_FILES) - {"labels.csv"})
    assert fake_hub.upload_calls[0]["allow_patterns"] == list(EXPORT_FILES)


def test_push_without_a_token_says_how_to_sign_in_and_touches_nothing(export, fake_hub):
    before = digest(export)
    for token in (None, ""):
        with pytest.raises(HubError, match="Sign in with Hugging Face, or set HF_TOKEN / run `hf auth login`"):
            push_classifier(export, "alice/x", token)
    assert fake_hub.create_calls == [] and digest(export) == before


def test_the_cli_token_comes_from_hf_token_or_the_login_and_its_absence_is_explained(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", SECRET)
    assert find_local_token() == SECRET
    monkeypatch.setattr(trainer.hub_calls, "get_token", lambda: None)
    with pytest.raises(HubError) as caught:
        find_local_token()
    assert SIGN_IN_MESSAGE in str(caught.value)


@pytest.mark.parametrize(
    ("repo_id", "problem"),
    [
        ("", "Enter a repository name"),
        ("   ", "Enter a repository name"),
        ("a/b/c", "has 2 '/'"),
        ("../etc", "contains '--' or '..'"),
        ("alice/../../etc", "has 3 '/'"),
        ("/etc", "must both be non-empty"),
        ("alice/", "must both be non-empty"),
        ("a--b", "contains '--' or '..'"),
        ("-name", "starts or ends with '-' or '.'"),
        ("name.", "starts or ends with '-' or '.'"),
        ("x" * 97, "97 characters long; the Hub allows at most 96"),
        ("café", "contains 'é'"),
        ("red circles", "contains ' '"),
        ("a\\b", "contains '\\\\'"),
        ("name.git", "cannot end with '.git'"),
    ],
)
def test_invalid_repo_names_are_refused_before_any_request(export, fake_hub, repo_id, problem):
    with pytest.raises(HubError, match=re.escape(problem)):
        push_classifier(export, repo_id, SECRET)
    assert fake_hub.create_calls == []


@pytest.mark.parametrize("repo_id", ["a", "alice/red-circles", "Alice_2/Red.Circles-v2", "x" * 96, " padded "])
def test_valid_repo_names_pass_here_and_in_the_hub_library(repo_id):
    assert validate_repo_id(repo_id) == repo_id.strip()
    hub_validate_repo_id(repo_id.strip())


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (403, r"No permission to write 'bob/red-circles' \(HTTP 403\)"),
        (409, r"'bob/red-circles' already exists \(HTTP 409\).*--exist-ok"),
        (401, r"did not accept the token.*expired or been revoked.*hf auth login"),
        (400, r"The Hub refused creating the repository 'bob/red-circles' \(HTTP 400\): Invalid name"),
    ],
)
def test_refusals_give_a_clear_message_without_retrying_and_keep_the_export(export, fake_hub, status, message):
    before = digest(export)
    fake_hub.create_failures = [http_error(status, "Invalid name" if status == 400 else "nope")]
    with pytest.raises(HubError, match=message) as caught:
        push_classifier(export, "bob/red-circles", SECRET, retry=NO_WAIT)
    assert f"Nothing was lost: the export is still at {export}" in str(caught.value)
    assert len(fake_hub.create_calls) == 1 and fake_hub.upload_calls == []
    assert digest(export) == before


def test_connection_errors_are_retried_a_bounded_number_of_times_then_explained(export, fake_hub, caplog):
    before = digest(export)
    fake_hub.create_failures = [httpx2.ConnectError("connection refused")] * 5
    with pytest.raises(HubError, match=r"Could not reach the Hugging Face Hub after 3 attempts.*connection refused"):
        push_classifier(export, "alice/x", SECRET, retry=HubRetry(attempts=3, backoff_s=0))
    assert len(fake_hub.create_calls) == 3
    assert caplog.text.count("retrying") == 2
    assert digest(export) == before


def test_a_busy_hub_is_retried_and_a_repo_maybe_created_by_a_lost_answer_is_accepted(export, fake_hub):
    fake_hub.create_failures = [http_error(503, "busy")]
    fake_hub.upload_failures = [http_error(429, "slow down"), httpx2.ReadTimeout("read timed out")]
    url = push_classifier(export, "alice/x", SECRET, retry=NO_WAIT)
    assert url == "https://huggingface.co/alice/x"
    # The first attempt may have created the repo before failing: the retry must not then call it "taken".
    assert [c["exist_ok"] for c in fake_hub.create_calls] == [False, True]
    assert len(fake_hub.upload_calls) == 3


def test_a_hub_that_stays_down_is_reported_with_the_status(export, fake_hub):
    fake_hub.upload_failures = [http_error(502, "bad gateway")] * 3
    with pytest.raises(HubError, match=r"busy or unavailable \(HTTP 502\) after 2 attempts.*Try again in a few"):
        push_classifier(export, "alice/x", SECRET, retry=HubRetry(attempts=2, backoff_s=0))


def test_pushing_with_offline_mode_on_says_so_instead_of_retrying(export):
    # The real HfApi.create_repo: offline mode stops it before any request, which is no network error to retry.
    with pytest.raises(HubError, match=r"offline mode is on \(HF_HUB_OFFLINE=1\)"):
        push_classifier(export, "alice/x", SECRET, retry=NO_WAIT)


def test_push_refuses_a_folder_that_is_not_a_loadable_export(export, fake_hub, tmp_path):
    with pytest.raises(HubError, match="No classifier folder"):
        push_classifier(tmp_path / "missing", "alice/x", SECRET)
    state = load_file(export / "model.safetensors")
    state.pop("linear.bias")
    save_file(state, export / "model.safetensors")
    with pytest.raises(HubError, match=r"missing \['linear.bias'\]"):
        push_classifier(export, "alice/x", SECRET)
    assert fake_hub.create_calls == []


# ------------------------------------------------------------------------------------------------- token hygiene
def test_the_token_never_reaches_files_logs_or_messages_on_success(session, export, fake_hub, caplog, tmp_path):
    caplog.set_level("DEBUG")
    url = push_classifier(export, "alice/red-circles", SECRET)
    url2 = push_classifier(session, "red-circles-2", SECRET)
    assert fake_hub.tokens and set(fake_hub.tokens) == {SECRET}  # it was used...
    assert leaked(SECRET, caplog.text, url, url2, folders=(tmp_path,)) == []  # ...and shows up nowhere


@pytest.mark.parametrize(
    "failure",
    [
        http_error(401, f"Invalid token {SECRET}"),
        http_error(500, f"oops while checking {SECRET}"),
        httpx2.ConnectError(f"proxy said no to Bearer {SECRET}"),
        RuntimeError(f"unexpected, with {SECRET}"),
    ],
    ids=["401 echoing the token", "500 echoing it", "network error with it", "a bug's message with it"],
)
def test_the_token_is_scrubbed_from_every_failure(export, fake_hub, caplog, tmp_path, failure):
    caplog.set_level("DEBUG")
    fake_hub.create_failures = [failure] * 3
    with pytest.raises(HubError) as caught:
        push_classifier(export, "alice/x", SECRET, retry=NO_WAIT)
    shown = "".join(traceback.format_exception(caught.value))  # the chained causes too
    assert leaked(SECRET, str(caught.value), shown, caplog.text, folders=(tmp_path,)) == []
    if not (isinstance(failure, HfHubHTTPError) and failure.response.status_code == 401):  # 401 quotes no text
        assert "***" in str(caught.value)


def test_other_token_shaped_strings_are_scrubbed_but_ordinary_names_are_kept(export, fake_hub):
    other = "hf_" + "AbCdEfGhIjKlMnOpQrStUvWxYz012345"  # someone else's token, echoed by a server
    fake_hub.create_failures = [http_error(500, f"hf_hub_download failed for {other}")] * 3
    with pytest.raises(HubError) as caught:
        push_classifier(export, "alice/x", SECRET, retry=NO_WAIT)
    assert other not in str(caught.value) and "hf_hub_download failed for hf_***" in str(caught.value)


def test_a_classifier_of_a_local_model_records_a_portable_name_that_loads_against_its_folder(concept, tmp_path):
    from trainer.embed import model_identity

    model_dir = tmp_path / "server" / "secret" / "tiny-clip"
    model_dir.mkdir(parents=True)
    (model_dir / "model.safetensors").write_bytes(b"weights")
    identity = model_identity(str(model_dir))
    probe = LinearProbe.from_prompt(concept.prompt_vector, scale=5.0, bias=-1.0, base_model=identity, prompt="red")
    folder = export_classifier(probe, tmp_path / "export")
    assert "secret" not in (folder / "config.json").read_text() + (folder / "README.md").read_text()
    assert f"a local CLIP model folder, `{identity}`" in (folder / "README.md").read_text()
    load_classifier(folder, expect_base_model=identity, expect_dim=16)  # the app: its workspace's identity
    load_classifier(folder, expect_base_model=str(model_dir), expect_dim=16)  # the CLI: the folder's path
    (model_dir / "model.safetensors").write_bytes(b"other weights")
    with pytest.raises(ClassifierMismatch, match=identity.replace(".", r"\.")):
        load_classifier(folder, expect_base_model=str(model_dir), expect_dim=16)


def test_an_older_export_that_recorded_a_path_still_loads_on_the_machine_that_made_it(concept, tmp_path):
    from trainer.embed import model_identity

    model_dir = tmp_path / "tiny-clip"
    model_dir.mkdir()
    probe = LinearProbe.from_prompt(concept.prompt_vector, scale=5.0, bias=-1.0, base_model=str(model_dir))
    folder = export_classifier(probe, tmp_path / "old")
    loaded = load_classifier(folder, expect_base_model=model_identity(str(model_dir)), expect_dim=16)
    assert loaded.base_model == str(model_dir)
