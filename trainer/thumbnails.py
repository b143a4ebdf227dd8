"""Small JPEG thumbnails, made once per image and shared by every visitor.

A labelling round shows about ten images. Decoding and resizing one costs a few milliseconds (1.7 ms to decode a
bundle image from its parquet file, 3 ms to resize and encode it): on the round's path, ten of them cost more than
the rest of the round. So a collection's thumbnails are made once, at start-up, and written to one **pack** in the
cache folder (the JPEGs end to end, and an index of where each starts), which later starts map into memory at
once. Anything not in the pack (a held-out split, a collection too big to pack) is made on first use; everything is
kept in a bounded in-memory LRU and handed out as bytes or as a ``data:`` URI. ``benchmarks/thumbnail_delivery.py``
measured data URIs against immutable URLs served by the app; the app sends data URIs (results in the README).

Thumbnails are not a UI idea: the model card, an export or a notebook can use them too, so they live in the engine.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import mmap
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from pathlib import Path

from PIL import Image

from .embed import to_rgb
from .files import atomic_write
from .progress import ProgressFn

__all__ = ["THUMBNAIL_PX", "Thumbnails", "encode_jpeg"]

log = logging.getLogger(__name__)

# Longest side in pixels. A card is about 170 CSS px wide on a desktop and on a phone in two columns; 192 px keeps a
# photo sharp enough at that size while a JPEG stays at 4-10 KB (4.2 KB for a bundle shape at quality 85).
THUMBNAIL_PX = 192
# JPEG: 0.2 ms to encode against 4 ms for WebP and 5 ms for PNG (measured on this project's 2-core machine).
_QUALITY = 85


class Thumbnails:
    """``jpeg(id)`` / ``data_uri(id)`` for the images ``load(id)`` returns, each encoded once.

    Thread-safe: visitors' requests run on several worker threads. Two threads asking for the same new image at
    once may both encode it (harmless, and cheaper than holding a lock while decoding).
    """

    def __init__(
        self,
        load: Callable[[str], Image.Image],
        *,
        size: int = THUMBNAIL_PX,
        quality: int = _QUALITY,
        capacity: int = 8192,
    ) -> None:
        if size < 16 or not 1 <= quality <= 95 or capacity < 1:
            raise ValueError(f"size must be >= 16, quality 1-95 and capacity >= 1; got {size}, {quality}, {capacity}")
        self._load = load
        self.size = size
        self.quality = quality
        self.capacity = capacity  # ~8,192 x 4-10 KB: at most ~80 MB, with the data URIs beside the bytes
        self._jpegs: OrderedDict[str, bytes] = OrderedDict()
        self._uris: OrderedDict[str, str] = OrderedDict()
        self._packed: dict[str, tuple[int, int]] = {}  # id -> (offset, length) in the open pack
        self._pack: mmap.mmap | None = None
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._jpegs)

    def jpeg(self, id_: str) -> bytes:
        """The thumbnail of ``id_`` as JPEG bytes. KeyError for an unknown id, as ``load`` raises it."""
        cached = self._get(self._jpegs, id_)
        if cached is not None:
            return cached
        where = self._packed.get(id_)
        if where is not None and self._pack is not None:
            data = self._pack[where[0] : where[0] + where[1]]
        else:
            data = encode_jpeg(self._load(id_), self.size, self.quality)
        self._put(self._jpegs, id_, data)
        return data

    @property
    def packed(self) -> int:
        """How many thumbnails the open pack holds."""
        return len(self._packed)

    def open_pack(self, path: Path) -> bool:
        """Use the pack at ``path`` (``<path>.jpgs`` and its index ``<path>.json``) if it exists and was made at
        this size and quality. Returns whether it was opened."""
        index_path, data_path = path.with_suffix(".json"), path.with_suffix(".jpgs")
        try:
            index = json.loads(index_path.read_text())
            if (index.get("size"), index.get("quality")) != (self.size, self.quality):
                return False
            with data_path.open("rb") as file:
                pack = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
            ids, offsets = index["ids"], index["offsets"]
            packed = {id_: (offsets[k], offsets[k + 1] - offsets[k]) for k, id_ in enumerate(ids)}
        except (OSError, ValueError, KeyError, TypeError, IndexError) as err:
            if index_path.exists():
                log.warning("thumbnail pack %s cannot be read (%s): thumbnails are made on first use", path, err)
            return False
        if len(pack) != offsets[-1]:
            log.warning("thumbnail pack %s is %d bytes, its index says %d: not used", path, len(pack), offsets[-1])
            return False
        with self._lock:
            self._pack, self._packed = pack, packed
        return True

    def write_pack(
        self, path: Path, batches: Iterable[tuple[list[str], list[Image.Image]]], total: int, progress: ProgressFn
    ) -> None:
        """Make a thumbnail of every image in ``batches`` (``(ids, images)``, ``total`` in all), write them as one
        pack at ``path`` and open it. The index is written last: a pack without one is not a pack."""
        ids: list[str] = []
        offsets = [0]
        chunks: list[bytes] = []
        for batch_ids, images in batches:
            for id_, image in zip(batch_ids, images, strict=True):
                data = encode_jpeg(image, self.size, self.quality)
                ids.append(id_)
                chunks.append(data)
                offsets.append(offsets[-1] + len(data))
            progress(len(ids), total, "thumbnails")
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path.with_suffix(".jpgs"), lambda f: f.writelines(chunks))
        index = {"size": self.size, "quality": self.quality, "ids": ids, "offsets": offsets}
        atomic_write(path.with_suffix(".json"), lambda f: f.write(json.dumps(index).encode()))
        self.open_pack(path)

    def data_uri(self, id_: str) -> str:
        """``data:image/jpeg;base64,...``: the thumbnail inline, so a page shows it with no request of its own."""
        cached = self._get(self._uris, id_)
        if cached is not None:
            return cached
        uri = "data:image/jpeg;base64," + base64.b64encode(self.jpeg(id_)).decode("ascii")
        self._put(self._uris, id_, uri)
        return uri

    def _get(self, store: OrderedDict, id_: str):
        with self._lock:
            value = store.get(id_)
            if value is not None:
                store.move_to_end(id_)
            return value

    def _put(self, store: OrderedDict, id_: str, value: object) -> None:
        with self._lock:
            store[id_] = value
            store.move_to_end(id_)
            while len(store) > self.capacity:
                store.popitem(last=False)


def encode_jpeg(image: Image.Image, size: int = THUMBNAIL_PX, quality: int = _QUALITY) -> bytes:
    """``image`` in RGB, its longest side scaled to ``size`` (small images enlarged here with Lanczos rather than
    blurred by the browser; the offline bundle's are 64 px), as JPEG bytes."""
    image = to_rgb(image)
    scale = size / max(image.size)
    if scale != 1:
        target = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(target, Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()
