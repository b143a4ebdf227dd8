"""The shipped collection: each split's items as a pure function of (seed, split, index), written as parquet so that
``datasets.load_dataset("assets/shapes")`` loads it like a Hub dataset."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .captions import make_caption
from .shapes import ATTRIBUTES, draw_image, sample_attributes

SPLITS: dict[str, int] = {"train": 2500, "validation": 500}


def item_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """An independent generator per item, so any item can be redrawn alone and splits never share randomness."""
    split_key = sorted(SPLITS).index(split)
    return np.random.default_rng([seed, split_key, index])


def make_item(seed: int, split: str, index: int) -> tuple[Image.Image, dict[str, str], str]:
    """Image, attributes and stored caption of item ``index`` of ``split``; a pure function of its arguments."""
    rng = item_rng(seed, split, index)
    attributes = sample_attributes(rng)
    image = draw_image(attributes, rng)
    caption = make_caption(attributes, rng)
    return image, attributes, caption


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


@dataclass
class Split:
    ids: list[str]
    images: list[Image.Image]
    attributes: list[dict[str, str]]
    captions: list[str]


def build_split(seed: int, split: str, count: int) -> Split:
    ids, images, attributes, captions = [], [], [], []
    for index in range(count):
        image, attrs, caption = make_item(seed, split, index)
        ids.append(f"shapes-{split}-{index:05d}")
        images.append(image)
        attributes.append(attrs)
        captions.append(caption)
    return Split(ids, images, attributes, captions)


def write_split(data: Split, path: Path) -> None:
    import datasets  # heavy import, only needed when building

    columns: dict[str, list] = {
        "id": data.ids,
        "image": [{"bytes": png_bytes(im), "path": None} for im in data.images],
        "caption": data.captions,
    }
    for name in ATTRIBUTES:
        columns[name] = [a[name] for a in data.attributes]
    dataset = datasets.Dataset.from_dict(columns).cast_column("image", datasets.Image())
    path.parent.mkdir(parents=True, exist_ok=True)
    dataset.to_parquet(str(path))
