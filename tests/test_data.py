"""Collections: stable ids, lazy decoding, bad files skipped and named; source selection with and without the Hub."""

from __future__ import annotations

import dataclasses
import io
import logging
import re
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

from tests.helpers.images import BAD_FILES, GOOD_FILES, write_image_folder
from trainer import data
from trainer.config import Settings
from trainer.data import Collection, UndecodableImage, load_image, open_collection, resolve_source


def _png(colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(buffer, "PNG")
    return buffer.getvalue()


def _write_parquet_dataset(folder: Path, *, with_ids: bool = True, bad_row: int | None = None) -> Path:
    """A dataset folder shaped like the offline bundle: train/validation parquet files, an id and an image column."""
    from datasets import Dataset
    from datasets import Image as ImageFeature

    folder.mkdir(parents=True, exist_ok=True)
    for split, count in (("train", 5), ("validation", 3)):
        rows = {
            "caption": [f"{split} {i}" for i in range(count)],
            "image": [{"bytes": _png((40 * i, 0, 0)), "path": None} for i in range(count)],
        }
        if bad_row is not None and split == "train":
            rows["image"][bad_row] = {"bytes": b"garbage", "path": None}
        if with_ids:
            rows["id"] = [f"{split[0]}{i:03d}" for i in range(count)]
        Dataset.from_dict(rows).cast_column("image", ImageFeature()).to_parquet(str(folder / f"{split}.parquet"))
    return folder


# ------------------------------------------------------------------------------------------------ image folders
def test_folder_ids_are_relative_paths_and_every_image_file_is_listed(mixed_folder):
    collection = Collection.open(str(mixed_folder))
    assert sorted(collection.ids) == sorted(GOOD_FILES + BAD_FILES)
    assert "README.txt" not in collection.ids and ".hidden.png" not in collection.ids
    assert collection.split is None  # no train/ subfolder: the whole folder


def test_folder_batches_skip_bad_files_and_name_them(mixed_folder):
    collection = Collection.open(str(mixed_folder))
    batches = list(collection.batches(batch_size=4))
    ids = [i for batch_ids, _ in batches for i in batch_ids]
    images = [image for _, batch_images in batches for image in batch_images]
    assert sorted(ids) == sorted(GOOD_FILES)
    assert {image.mode for image in images} == {"L", "P", "RGBA", "I;16"}
    assert sorted(name for name, _ in collection.skipped) == sorted(BAD_FILES)
    reasons = dict(collection.skipped)
    assert reasons["empty.png"] == "empty file (0 bytes)"
    assert re.match(r"\w+Error: .+", reasons["corrupt.jpg"])  # Pillow's own words, e.g. "OSError: Truncated File Read"


def test_truncated_image_is_skipped_with_its_reason(tmp_path):
    folder = write_image_folder(tmp_path / "imgs", 2, size=64)
    data_bytes = (folder / "001.png").read_bytes()
    (folder / "001.png").write_bytes(data_bytes[: len(data_bytes) // 2])
    batch = Collection.open(str(folder)).decode_range(0, 2)
    assert batch.ids == ["000.png"]
    assert [name for name, _ in batch.skipped] == ["001.png"]


def test_image_is_fetched_lazily_by_id(mixed_folder):
    collection = Collection.open(str(mixed_folder))
    image = collection.image("layers/rgba.png")
    assert image.mode == "RGBA" and image.size == (40, 30)
    with pytest.raises(KeyError, match=r"nope\.png"):
        collection.image("nope.png")
    with pytest.raises(UndecodableImage, match=r"corrupt\.jpg"):
        collection.image("corrupt.jpg")


def test_split_subfolder_is_used_when_present(tmp_path):
    write_image_folder(tmp_path / "photos" / "train", 3)
    write_image_folder(tmp_path / "photos" / "validation", 2)
    train = Collection.open(str(tmp_path / "photos"), split="train")
    validation = Collection.open(str(tmp_path / "photos"), split="validation")
    assert (len(train), len(validation)) == (3, 2)
    assert train.ids == ("000.png", "001.png", "002.png") and validation.split == "validation"


def test_a_plain_folder_has_no_held_out_split(tmp_path):
    # Were "validation" to fall back to the whole folder, a held-out evaluation would score the indexed images.
    folder = write_image_folder(tmp_path / "imgs", 2)
    assert len(Collection.open(str(folder), split="train")) == len(Collection.open(str(folder), split=None)) == 2
    with pytest.raises(ValueError, match=r"no 'validation' subfolder"):
        Collection.open(str(folder), split="validation")


def test_folder_content_signature_changes_when_a_file_changes(tmp_path):
    folder = write_image_folder(tmp_path / "imgs", 2)
    before = Collection.open(str(folder)).content_signature
    Image.new("RGB", (5, 5)).save(folder / "002.png")
    assert Collection.open(str(folder)).content_signature != before


def test_missing_folder_and_empty_folder_give_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no dataset or image folder"):
        Collection.open(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no image files"):
        Collection.open(str(tmp_path / "empty"))


# ----------------------------------------------------------------------------------------------- dataset folders
def test_parquet_dataset_folder_uses_its_id_column_and_finds_the_image_column(tmp_path):
    folder = _write_parquet_dataset(tmp_path / "shapes")
    train = Collection.open(str(folder), split="train")
    assert train.ids == ("t000", "t001", "t002", "t003", "t004")
    assert train.image_column == "image"
    assert train.image("t002").getpixel((0, 0)) == (80, 0, 0)
    validation = Collection.open(str(folder), split="validation")
    assert validation.ids == ("v000", "v001", "v002")


def test_dataset_without_id_column_gets_split_row_ids(tmp_path):
    folder = _write_parquet_dataset(tmp_path / "plain", with_ids=False)
    assert Collection.open(str(folder), split="validation").ids == ("validation-0", "validation-1", "validation-2")


def test_repeated_ids_fall_back_to_row_ids_with_a_warning(caplog):
    from datasets import Dataset
    from datasets import Image as ImageFeature

    dataset = Dataset.from_dict({"id": ["a", "a"], "img": [{"bytes": _png((0, 0, 0)), "path": None}] * 2}).cast_column(
        "img", ImageFeature()
    )
    with caplog.at_level(logging.WARNING, logger="trainer.data"):
        collection = Collection.from_dataset(dataset, source="memory", split="train")
    assert collection.ids == ("train-0", "train-1")
    assert "repeated" in caplog.text


def test_undecodable_dataset_row_is_skipped_by_id(tmp_path):
    folder = _write_parquet_dataset(tmp_path / "shapes", bad_row=3)
    collection = Collection.open(str(folder), split="train")
    ids = [i for batch_ids, _ in collection.batches(2) for i in batch_ids]
    assert ids == ["t000", "t001", "t002", "t004"]
    assert [name for name, _ in collection.skipped] == ["t003"]


def test_wrong_image_column_lists_the_image_columns(tmp_path):
    folder = _write_parquet_dataset(tmp_path / "shapes")
    with pytest.raises(ValueError, match=r"'caption' is not an image feature.*image columns: image"):
        Collection.open(str(folder), image_column="caption")


def test_open_collection_reads_dataset_and_split_from_settings(tmp_path):
    folder = _write_parquet_dataset(tmp_path / "shapes")
    settings = Settings(model_id="unused", dataset=str(folder), dataset_config=None, split="validation")
    assert len(open_collection(settings)) == 3
    assert len(open_collection(settings, "train")) == 5


# ---------------------------------------------------------------------------------------------- source selection
@pytest.fixture
def bundle(tmp_path, monkeypatch, tiny_clip_dir):
    """Point the bundle paths at a tiny model and a dataset folder, as they will be once assets/ lands."""
    dataset = _write_parquet_dataset(tmp_path / "shapes")
    monkeypatch.setattr(data, "BUNDLE_MODEL", str(tiny_clip_dir))
    monkeypatch.setattr(data, "BUNDLE_DATASET", str(dataset))
    return str(tiny_clip_dir), str(dataset)


def test_unreachable_hub_falls_back_to_the_bundle_and_says_why(bundle, monkeypatch, caplog):
    monkeypatch.setattr(data, "hub_reachable", lambda timeout=3.0: False)
    with caplog.at_level(logging.WARNING, logger="trainer.data"):
        resolved = resolve_source(Settings())
    assert (resolved.model_id, resolved.dataset) == bundle
    assert resolved.source == "bundle" and resolved.dataset_config is None
    assert "not reachable" in caplog.text and "offline bundle" in caplog.text
    assert "openai/clip-vit-base-patch32" in caplog.text


def test_reachable_hub_keeps_the_real_defaults(bundle, monkeypatch):
    monkeypatch.setattr(data, "hub_reachable", lambda timeout=3.0: True)
    assert resolve_source(Settings()) == Settings()


def test_source_hub_without_the_hub_is_a_clear_error(bundle, monkeypatch):
    monkeypatch.setattr(data, "hub_reachable", lambda timeout=3.0: False)
    with pytest.raises(RuntimeError, match=r"not reachable.*CT_SOURCE=auto"):
        resolve_source(Settings(source="hub"))


def test_source_bundle_never_asks_the_hub(bundle, monkeypatch):
    monkeypatch.setattr(data, "hub_reachable", lambda timeout=3.0: pytest.fail("the Hub was probed"))
    assert resolve_source(Settings(source="bundle")).model_id == bundle[0]


def test_local_model_and_dataset_need_no_hub(bundle, monkeypatch, tmp_path):
    monkeypatch.setattr(data, "hub_reachable", lambda timeout=3.0: pytest.fail("the Hub was probed"))
    settings = Settings(model_id=bundle[0], dataset=str(write_image_folder(tmp_path / "imgs", 1)))
    assert resolve_source(settings) == settings


def test_unknown_source_lists_the_choices():
    with pytest.raises(ValueError, match="choose one of auto, bundle, hub"):
        resolve_source(Settings(source="cloud"))


def test_missing_bundle_is_named(monkeypatch, tmp_path):
    monkeypatch.setattr(data, "hub_reachable", lambda timeout=3.0: False)
    monkeypatch.setattr(data, "BUNDLE_MODEL", str(tmp_path / "no-model"))
    with pytest.raises(FileNotFoundError, match=r"offline bundle is missing.*no-model"):
        resolve_source(Settings())


def test_offline_mode_means_unreachable_without_any_request(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: pytest.fail("a request was made"))
    assert data.hub_reachable() is False


def test_network_failure_means_unreachable(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)

    def refuse(*args, **kwargs):
        raise urllib.error.URLError(OSError("connection refused"))

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    assert data.hub_reachable(timeout=0.1) is False


def test_settings_replace_keeps_other_fields(bundle, monkeypatch):
    # The fallback swaps model and dataset only: engine settings (batch size, strategy, cache) are the user's.
    monkeypatch.setattr(data, "hub_reachable", lambda timeout=3.0: False)
    settings = Settings(batch_size=7, strategy="top", cache_dir=Path("/x"))
    resolved = resolve_source(settings)
    changed = {f.name for f in dataclasses.fields(Settings) if getattr(resolved, f.name) != getattr(settings, f.name)}
    assert changed == {"model_id", "dataset", "dataset_config", "source"}


@pytest.mark.parametrize(("status", "reachable"), [(404, True), (401, True), (503, False)])
def test_an_http_error_answer_counts_as_reachable_unless_the_server_fails(monkeypatch, status, reachable):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)

    def answer(request, timeout):
        raise urllib.error.HTTPError(request.full_url, status, "status", {}, None)

    monkeypatch.setattr(urllib.request, "urlopen", answer)
    assert data.hub_reachable(timeout=0.1) is reachable


def test_captions_and_example_prompts_come_from_the_collections_own_text(tmp_path):
    from trainer.config import BUNDLE_DATASET

    shapes = Collection.open(BUNDLE_DATASET, split="train")
    assert shapes.caption(shapes.ids[0]) == "a photo of a pink star"
    examples = shapes.example_prompts(3)
    assert len(examples) == 3 and all(3 <= len(e.split()) <= 5 for e in examples)
    parquet = Collection.open(str(_write_parquet_dataset(tmp_path / "parquet")), split="train")
    assert parquet.caption(parquet.ids[1]) == "train 1" and parquet.example_prompts() == []  # two words: too vague
    folder = Collection.open(str(write_image_folder(tmp_path / "images", 3)), split=None)
    assert folder.caption(folder.ids[0]) is None and folder.example_prompts() == []


def test_an_uploaded_image_is_decoded_like_the_collections_and_a_bomb_refused(tmp_path):
    Image.new("RGBA", (10, 10), (255, 0, 0, 128)).save(tmp_path / "ok.png")
    assert load_image(tmp_path / "ok.png").size == (10, 10)
    (tmp_path / "text.png").write_bytes(b"not an image")
    with pytest.raises(UndecodableImage):
        load_image(tmp_path / "text.png")
