"""Thumbnails: small JPEGs made once per image, shared by every visitor, bounded in memory."""

from __future__ import annotations

import base64
import io
import threading

import pytest
from PIL import Image

from trainer.thumbnails import THUMBNAIL_PX, Thumbnails, encode_jpeg


def counting_loader(images: dict[str, Image.Image]):
    calls: list[str] = []

    def load(id_: str) -> Image.Image:
        calls.append(id_)
        return images[id_]  # KeyError for an unknown id, as Collection.image raises it

    return load, calls


def test_a_thumbnail_is_a_jpeg_whose_longest_side_is_the_thumbnail_size_small_images_enlarged():
    images = {"wide": Image.new("RGB", (400, 200), (200, 30, 30)), "tiny": Image.new("RGB", (64, 64), (0, 0, 255))}
    load, _ = counting_loader(images)
    thumbnails = Thumbnails(load)
    for id_, size in [("wide", (THUMBNAIL_PX, THUMBNAIL_PX // 2)), ("tiny", (THUMBNAIL_PX, THUMBNAIL_PX))]:
        decoded = Image.open(io.BytesIO(thumbnails.jpeg(id_)))
        assert decoded.format == "JPEG" and decoded.size == size


def test_each_image_is_encoded_once_and_its_data_uri_holds_the_same_bytes():
    load, calls = counting_loader({"a": Image.new("RGB", (32, 32), (10, 200, 10))})
    thumbnails = Thumbnails(load)
    first = thumbnails.jpeg("a")
    uri = thumbnails.data_uri("a")
    assert thumbnails.jpeg("a") is first and thumbnails.data_uri("a") is uri
    assert calls == ["a"]
    assert uri.startswith("data:image/jpeg;base64,") and base64.b64decode(uri.split(",", 1)[1]) == first


def test_the_cache_keeps_only_the_most_recently_used_capacity_images():
    images = {str(k): Image.new("RGB", (16, 16), (k * 20, 0, 0)) for k in range(5)}
    load, calls = counting_loader(images)
    thumbnails = Thumbnails(load, capacity=3)
    for id_ in ["0", "1", "2", "0", "3"]:  # "1" is the least recently used when "3" arrives
        thumbnails.jpeg(id_)
    assert len(thumbnails) == 3
    thumbnails.jpeg("0")
    thumbnails.jpeg("1")
    assert calls == ["0", "1", "2", "3", "1"]


def test_modes_with_alpha_or_palettes_become_rgb_jpegs():
    for image in [Image.new("RGBA", (20, 20), (255, 0, 0, 0)), Image.new("P", (20, 20)), Image.new("L", (20, 20))]:
        assert Image.open(io.BytesIO(encode_jpeg(image, 32))).mode == "RGB"


def test_an_unknown_id_raises_key_error_and_bad_settings_are_refused():
    load, _ = counting_loader({})
    with pytest.raises(KeyError):
        Thumbnails(load).data_uri("missing")
    with pytest.raises(ValueError, match="size must be >= 16"):
        Thumbnails(load, size=8)


def test_visitors_on_many_threads_get_the_same_thumbnails():
    images = {str(k): Image.new("RGB", (24, 24), (0, k * 10, 0)) for k in range(20)}
    load, _ = counting_loader(images)
    thumbnails = Thumbnails(load, capacity=10)
    results: list[dict[str, str]] = []

    def visitor() -> None:
        results.append({id_: thumbnails.data_uri(id_) for id_ in images})

    threads = [threading.Thread(target=visitor) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(results) == 4 and all(r == results[0] for r in results[1:])
    assert len(thumbnails) == 10


def test_a_pack_written_once_serves_every_thumbnail_without_loading_an_image(tmp_path):
    images = {f"img-{k}": Image.new("RGB", (40, 30), (k * 30, 0, 0)) for k in range(5)}
    load, calls = counting_loader(images)
    progress: list[tuple[int, int]] = []
    first = Thumbnails(load)
    batches = [(["img-0", "img-1"], [images["img-0"], images["img-1"]]), (["img-2"], [images["img-2"]])]
    first.write_pack(tmp_path / "pack", batches, 3, lambda done, total, message: progress.append((done, total)))
    assert progress == [(2, 3), (3, 3)] and first.packed == 3 and calls == []
    later = Thumbnails(load)  # a later start: maps the pack
    assert later.open_pack(tmp_path / "pack") and later.packed == 3
    assert later.jpeg("img-1") == encode_jpeg(images["img-1"]) and calls == []
    later.jpeg("img-4")  # not in the pack: made on first use
    assert calls == ["img-4"]


def test_a_pack_of_another_size_or_a_torn_one_is_not_used(tmp_path):
    images = {"a": Image.new("RGB", (20, 20))}
    load, _ = counting_loader(images)
    Thumbnails(load).write_pack(tmp_path / "pack", [(["a"], [images["a"]])], 1, lambda *args: None)
    assert not Thumbnails(load, size=64).open_pack(tmp_path / "pack")
    with (tmp_path / "pack.jpgs").open("ab") as torn:
        torn.write(b"extra")
    assert not Thumbnails(load).open_pack(tmp_path / "pack")
    assert not Thumbnails(load).open_pack(tmp_path / "no-such-pack")
