"""Scoring a folder of images with a shared classifier, the push / predict command lines, and the card's snippets.

Most tests use a fake embedder (``predict_folder`` takes one by injection; the command line loads it through
``trainer.predict.load_embedder``, which they replace). The end-to-end tests use conftest's tiny random CLIP, in
the standard Hugging Face format, through the same code paths as a real model.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import trainer.predict as predict
from tests.helpers.fake_hub import SECRET, FakeHub, leaked
from trainer import cli
from trainer.card import REPO_PLACEHOLDER
from trainer.classifier import LinearProbe
from trainer.export import export_classifier
from trainer.hub import ClassifierMismatch
from trainer.hub_calls import SIGN_IN_MESSAGE

CLIP = "openai/clip-vit-base-patch32"
DIM = 16


class FakeEmbedder:
    """Mean colour through a fixed random projection, L2-normalised: distinct images get distinct unit vectors."""

    def __init__(self, model_id: str = CLIP, dim: int = DIM) -> None:
        self.model_id, self.dim = model_id, dim
        self.projection = np.random.default_rng(0).normal(size=(3, dim)).astype(np.float32)
        self.calls: list[int] = []

    def embed_images(self, images):
        self.calls.append(len(images))
        means = np.stack([np.asarray(im.convert("RGB"), np.float32).mean(axis=(0, 1)) / 255 - 0.5 for im in images])
        vectors = means @ self.projection  # (n, 3) @ (3, D)
        return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture
def classifier(tmp_path) -> Path:
    """An export whose head points at reddish images, so some images clear its threshold and some do not."""
    fake = FakeEmbedder()
    red = fake.embed_images([Image.new("RGB", (4, 4), (255, 0, 0))])[0]
    probe = LinearProbe.from_prompt(red, scale=8.0, bias=-4.0, base_model=CLIP, prompt="red things")
    return export_classifier(probe, tmp_path / "classifier")


@pytest.fixture
def images(tmp_path) -> Path:
    folder = tmp_path / "images"
    (folder / "more").mkdir(parents=True)
    colours = {"a-red.png": (250, 10, 10), "b-blue.png": (10, 10, 250), "more/c-orange.jpg": (250, 120, 0)}
    for name, colour in colours.items():
        Image.new("RGB", (20, 10), colour).save(folder / name)
    Image.new("RGBA", (8, 8), (240, 0, 0, 128)).save(folder / "more" / "d-alpha.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.txt").write_text("not an image: ignored")
    (folder / ".thumb.png").write_bytes(b"hidden: ignored")
    return folder


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_predict_writes_one_row_per_image_and_reports_unreadable_ones_by_name(classifier, images, tmp_path):
    fake = FakeEmbedder()
    report = predict.predict_folder(classifier, images, tmp_path / "out" / "scores.csv", embedder=fake, batch_size=3)
    rows = read_csv(report.out)
    assert [r["path"] for r in rows] == ["a-red.png", "b-blue.png", "more/c-orange.jpg", "more/d-alpha.png"]
    assert [name for name, _ in report.unreadable] == ["broken.jpg", "empty.png"]
    assert all(why for _, why in report.unreadable)
    assert sum(fake.calls) == 4 and max(fake.calls) <= 3  # unreadable files never reach the model
    probe = LinearProbe.from_pretrained(classifier)
    for row in rows:
        expected = float(probe.predict_proba(fake.embed_images([Image.open(images / row["path"])]))[0])
        assert float(row["probability"]) == pytest.approx(expected, abs=1e-6)
        assert row["above_threshold"] == ("true" if expected >= probe.threshold else "false")
    assert {r["path"]: r["above_threshold"] for r in rows}["a-red.png"] == "true"
    assert {r["path"]: r["above_threshold"] for r in rows}["b-blue.png"] == "false"
    assert (report.scored, report.above_threshold) == (4, sum(r["above_threshold"] == "true" for r in rows))
    assert [p.name for p in report.out.parent.iterdir()] == ["scores.csv"]  # no partial file left behind


def test_predict_writes_a_file_named_like_a_formula_as_text_for_spreadsheets(classifier, tmp_path):
    folder = tmp_path / "formulas"
    folder.mkdir()
    for name in ("=HYPERLINK(1).png", "+1.png", "plain.png"):
        Image.new("RGB", (4, 4), (200, 30, 30)).save(folder / name)
    report = predict.predict_folder(classifier, folder, tmp_path / "scores.csv", embedder=FakeEmbedder())
    assert sorted(r["path"] for r in read_csv(report.out)) == ["'+1.png", "'=HYPERLINK(1).png", "plain.png"]


@pytest.mark.parametrize(
    ("embedder", "message"),
    [
        (FakeEmbedder(dim=8), r"16-d embeddings of openai/clip-vit-base-patch32, but the current model is .* \(8-d\)"),
        (FakeEmbedder("other/clip"), r"of openai/clip-vit-base-patch32, but the current model is other/clip \(16-d\)"),
    ],
    ids=["other size", "other model"],
)
def test_predict_refuses_embeddings_the_classifier_was_not_trained_on(classifier, images, tmp_path, embedder, message):
    with pytest.raises(ClassifierMismatch, match=message):
        predict.predict_folder(classifier, images, tmp_path / "scores.csv", embedder=embedder)
    assert not (tmp_path / "scores.csv").exists()


def test_predict_with_an_explicit_model_of_the_same_size_is_allowed_with_a_warning(
    classifier, images, tmp_path, caplog
):
    report = predict.predict_folder(
        classifier, images, tmp_path / "s.csv", embedder=FakeEmbedder("copy/of-clip"), model="copy/of-clip"
    )
    assert report.scored == 4
    assert "trained on openai/clip-vit-base-patch32; scoring with copy/of-clip" in caplog.text
    with pytest.raises(ClassifierMismatch, match=r"takes 16-d embeddings .*, but the current model gives 8-d"):
        predict.predict_folder(classifier, images, tmp_path / "s.csv", embedder=FakeEmbedder("x/y", 8), model="x/y")


def test_predict_on_a_folder_without_images_says_so(classifier, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no image files in"):
        predict.predict_folder(classifier, tmp_path / "empty", tmp_path / "s.csv", embedder=FakeEmbedder())


# ------------------------------------------------------------------------------------------------- command line
def run_cli(*argv: str) -> int:
    return cli.main(list(argv))


def test_predict_command_writes_the_csv_and_lists_unreadable_images(classifier, images, tmp_path, monkeypatch, capsys):
    loaded = []
    monkeypatch.setattr(predict, "load_embedder", lambda probe, model: loaded.append(model) or FakeEmbedder())
    out = tmp_path / "scores.csv"
    assert run_cli("predict", "--classifier", str(classifier), "--images", str(images), "--out", str(out)) == 0
    printed = capsys.readouterr().out
    above = sum(r["above_threshold"] == "true" for r in read_csv(out))
    assert f"Scored 4 images, {above} above the threshold, into {out}" in printed
    assert "Skipped 2 unreadable image(s):" in printed
    assert "  broken.jpg: " in printed and "  empty.png: " in printed
    assert len(read_csv(out)) == 4 and loaded == [None]


def test_predict_command_reports_a_bad_classifier_without_a_traceback(images, tmp_path):
    with pytest.raises(SystemExit, match=r"predict failed: No classifier folder at \./nowhere"):
        run_cli("predict", "--classifier", "./nowhere", "--images", str(images))


def test_push_command_uses_the_local_token_and_prints_the_url(classifier, tmp_path, monkeypatch, capsys, caplog):
    fake = FakeHub(tmp_path).install(monkeypatch)
    monkeypatch.setenv("HF_TOKEN", SECRET)
    assert run_cli("push", "--classifier", str(classifier), "--repo", "red-things", "--private") == 0
    printed = capsys.readouterr()
    assert "Pushed" in printed.out and "https://huggingface.co/alice/red-things" in printed.out
    assert fake.tokens == [SECRET, SECRET] and fake.create_calls[0]["private"] is True
    assert leaked(SECRET, printed.out, printed.err, caplog.text) == []


def test_push_command_checks_the_repo_name_first(classifier, tmp_path, monkeypatch):
    fake = FakeHub(tmp_path).install(monkeypatch)
    monkeypatch.setattr("trainer.hub_calls.get_token", lambda: None)
    with pytest.raises(SystemExit, match=r"push failed: .*'red things' contains ' '"):
        run_cli("push", "--classifier", str(classifier), "--repo", "red things")
    assert fake.create_calls == []


def test_push_command_without_a_token_explains_how_to_sign_in(classifier, tmp_path, monkeypatch):
    fake = FakeHub(tmp_path).install(monkeypatch)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr("trainer.hub_calls.get_token", lambda: None)
    with pytest.raises(SystemExit) as caught:
        run_cli("push", "--classifier", str(classifier), "--repo", "alice/red-things")
    assert SIGN_IN_MESSAGE in str(caught.value.code)
    assert fake.create_calls == [] and (classifier / "model.safetensors").is_file()


# --------------------------------------------------------------------------------------- end to end, tiny CLIP
@pytest.fixture
def tiny_classifier(tiny_clip_dir, tiny_embedder, tmp_path) -> tuple[LinearProbe, Path]:
    """A classifier over the tiny CLIP's embeddings, recorded with that model folder as its base model."""
    prompt = tiny_embedder.embed_text(["a red square"])[0]
    probe = LinearProbe.from_prompt(prompt, scale=20.0, bias=-2.0, base_model=str(tiny_clip_dir), prompt="red")
    return probe, export_classifier(probe, tmp_path / "tiny-classifier")


def test_predict_command_embeds_with_the_classifiers_own_base_model(tiny_classifier, tiny_embedder, images, tmp_path):
    probe, folder = tiny_classifier
    out = tmp_path / "scores.csv"
    assert cli.main(["predict", "--classifier", str(folder), "--images", str(images), "--out", str(out)]) == 0
    rows = read_csv(out)
    expected = probe.predict_proba(tiny_embedder.embed_images([Image.open(images / r["path"]) for r in rows]))
    np.testing.assert_allclose([float(r["probability"]) for r in rows], expected, atol=1e-6)


def test_both_card_snippets_run_and_agree_with_the_classifier(tiny_classifier, tiny_embedder, tmp_path, capsys):
    probe, folder = tiny_classifier
    photo = tmp_path / "photo.png"
    Image.new("RGB", (40, 30), (220, 30, 40)).save(photo)
    expected = float(probe.predict_proba(tiny_embedder.embed_images([Image.open(photo)]))[0])
    card = (folder / "README.md").read_text()
    snippets = re.findall(r"```python\n(.*?)```", card, flags=re.DOTALL)
    assert len(snippets) == 2
    for snippet in snippets:
        # Run as a reader would after unzipping the export: the folder stands where the repo id goes.
        code = snippet.replace(REPO_PLACEHOLDER, str(folder)).replace('"photo.jpg"', repr(str(photo)))
        exec(compile(code, "README.md snippet", "exec"), {})
        printed = capsys.readouterr().out
        probability = float(re.search(r"P\(concept\) = ([0-9.]+)", printed).group(1))
        assert probability == pytest.approx(expected, abs=1e-3)
        assert printed.strip().endswith(str(expected >= probe.threshold))
