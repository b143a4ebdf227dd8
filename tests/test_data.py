"""Collections: stable ids, lazy decoding, bad files skipped and named; source selection with and without the Hub."""

from __future__ import annotations

import logging
import re

import pytest
from PIL import Image

from tests.helpers.images import BAD_FILES, GOOD_FILES, png, write_image_folder, write_parquet_dataset
from trainer.data import Collection, UndecodableImage, load_image


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
    folder = write_parquet_dataset(tmp_path / "shapes")
    train = Collection.open(str(folder), split="train")
    assert train.ids == ("t000", "t001", "t002", "t003", "t004")
    assert train.image_column == "image"
    assert train.image("t002").getpixel((0, 0)) == (80, 0, 0)
    validation = Collection.open(str(folder), split="validation")
    assert validation.ids == ("v000", "v001", "v002")


def test_dataset_without_id_column_gets_split_row_ids(tmp_path):
    folder = write_parquet_dataset(tmp_path / "plain", with_ids=False)
    assert Collection.open(str(folder), split="validation").ids == ("validation-0", "validation-1", "validation-2")


def test_repeated_ids_fall_back_to_row_ids_with_a_warning(caplog):
    from datasets import Dataset
    from datasets import Image as ImageFeature

    dataset = Dataset.from_dict({"id": ["a", "a"], "img": [{"bytes": png((0, 0, 0)), "path": None}] * 2}).cast_column(
        "img", ImageFeature()
    )
    with caplog.at_level(logging.WARNING, logger="trainer.data"):
        collection = Collection.from_dataset(dataset, source="memory", split="train")
    assert collection.ids == ("train-0", "train-1")
    assert "repeated" in caplog.text


def test_undecodable_dataset_row_is_skipped_by_id(tmp_path):
    folder = write_parquet_dataset(tmp_path / "shapes", bad_row=3)
    collection = Collection.open(str(folder), split="train")
    ids = [i for batch_ids, _ in collection.batches(2) for i in batch_ids]
    assert ids == ["t000", "t001", "t002", "t004"]
    assert [name for name, _ in collection.skipped] == ["t003"]


def test_wrong_image_column_lists_the_image_columns(tmp_path):
    folder = write_parquet_dataset(tmp_path / "shapes")
    with pytest.raises(ValueError, match=r"'caption' is not an image feature.*image columns: image"):
        Collection.open(str(folder), image_column="caption")


def test_captions_and_example_prompts_come_from_the_collections_own_text(tmp_path):
    from trainer.config import BUNDLE_DATASET

    shapes = Collection.open(BUNDLE_DATASET, split="train")
    assert shapes.caption(shapes.ids[0]) == "a photo of a pink star"
    examples = shapes.example_prompts(3)
    assert len(examples) == 3 and all(3 <= len(e.split()) <= 5 for e in examples)
    parquet = Collection.open(str(write_parquet_dataset(tmp_path / "parquet")), split="train")
    assert parquet.caption(parquet.ids[1]) == "train 1" and parquet.example_prompts() == []  # two words: too vague
    folder = Collection.open(str(write_image_folder(tmp_path / "images", 3)), split=None)
    assert folder.caption(folder.ids[0]) is None and folder.example_prompts() == []


def test_an_uploaded_image_is_decoded_like_the_collections_and_a_bomb_refused(tmp_path):
    Image.new("RGBA", (10, 10), (255, 0, 0, 128)).save(tmp_path / "ok.png")
    assert load_image(tmp_path / "ok.png").size == (10, 10)
    (tmp_path / "text.png").write_bytes(b"not an image")
    with pytest.raises(UndecodableImage):
        load_image(tmp_path / "text.png")
