"""Image collections with stable string ids (which collection the settings name: trainer/sources.py).

A :class:`Collection` is an ordered list of ids plus a way to decode the image behind each id, on demand: the index
stores only ids and vectors, and thumbnails are fetched here lazily. Three kinds of source open the same way with
:meth:`Collection.open`:

- a Hub dataset: ``name`` + ``config``, ``split``, ``revision``; the image column is the first ``datasets.Image``
  feature unless named;
- a local dataset folder of parquet/arrow files (the offline bundle ``assets/shapes``), or one written by
  ``Dataset.save_to_disk``;
- a local folder of image files, subfolders included. If it has a subfolder named after the split
  (``photos/train/...``) that subfolder is the collection. Otherwise the whole folder is (``split`` is then None),
  but only for split None or "train": asking a plain folder for "validation" is an error, not the same images
  again, so that a held-out split can never silently be the indexed one.

Ids: the dataset's ``id`` column when it has a usable one, else ``<split>-<row>``; for folders the path relative to
the collection's root (``dogs/001.jpg``). Files that cannot be decoded (corrupt, truncated, empty) never stop a
run: batch iteration skips them and reports ``(id, reason)``.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from trainer.files import looks_like_path

__all__ = [
    "Collection",
    "DecodedBatch",
    "RowReader",
    "UndecodableImage",
    "folder_signature",
    "load_image",
]

logger = logging.getLogger(__name__)

_DATA_FILE_SUFFIXES = {".parquet", ".arrow"}
_WHOLE_FOLDER_SPLIT = "train"  # the default split: a plain folder is all "train", and nothing else


class UndecodableImage(ValueError):
    """The file or bytes behind an id are not an image Pillow can decode (corrupt, truncated, empty, unknown)."""


@dataclass(frozen=True)
class DecodedBatch:
    """Images decoded from a range of positions: the good ones in order, and the ``(id, reason)`` of the rest."""

    ids: list[str]
    images: list[Image.Image]
    skipped: list[tuple[str, str]]


class RowReader:
    """Decodes rows of one collection, given their positions and ids: what a worker needs to decode part of it.

    It holds no id list, so it is small to pickle (a Ray stage ships one to each worker and the ids with each block
    of rows), and it reads the source where the process that opened the collection did: the same image folder,
    dataset folder or ``datasets`` cache path. On a cluster that storage must be mounted on every node.
    Subclasses provide ``_records(start, stop, ids)``: the undecoded ``{"path", "bytes"}`` records of those rows.
    """

    def decode(self, start: int, stop: int, ids: Sequence[str]) -> DecodedBatch:
        """Decode rows ``start:stop`` (whose ids are ``ids``). A bad file never raises: it is returned in
        ``skipped`` with the reason."""
        good, images, skipped = [], [], []
        for id_, record in zip(ids, self._records(start, stop, ids), strict=True):
            try:
                images.append(_decode(record))
                good.append(id_)
            except UndecodableImage as err:
                skipped.append((id_, str(err)))
        return DecodedBatch(good, images, skipped)

    def _records(self, start: int, stop: int, ids: Sequence[str]) -> list[dict[str, Any]]:
        raise NotImplementedError


class Collection:
    """An ordered image collection with stable string ids. Open one with :meth:`open` or :func:`open_collection`.

    Subclasses set ``_reader``, the :class:`RowReader` of their rows.
    """

    _reader: RowReader

    def __init__(
        self,
        ids: Sequence[str],
        *,
        source: str,
        config: str | None,
        split: str | None,
        revision: str | None,
        image_column: str | None,
        content_signature: str | None,
    ) -> None:
        self.ids: tuple[str, ...] = tuple(ids)  # a tuple: the order is the collection's identity, never mutated
        self.source = source
        self.config = config
        self.split = split
        self.revision = revision
        self.image_column = image_column
        # For local sources, a hash of file names, sizes and mtimes: a changed folder must not reuse a stale cache.
        self.content_signature = content_signature
        self.skipped: list[tuple[str, str]] = []  # filled by batches()
        self._positions: dict[str, int] | None = None

    # ---------------------------------------------------------------------------------------------- construction
    @classmethod
    def open(
        cls,
        dataset: str,
        *,
        config: str | None = None,
        split: str | None = "train",
        revision: str | None = None,
        image_column: str | None = None,
    ) -> Collection:
        """Open a Hub dataset, a local dataset folder or a local image folder (see the module docstring).

        ``revision`` applies to Hub datasets only; a local folder is read as it is on disk.
        """
        path = Path(dataset).expanduser()
        if path.is_dir():
            if _is_dataset_folder(path):
                return _DatasetCollection.from_local(path, config=config, split=split, image_column=image_column)
            return _FolderCollection.from_folder(path, split=split)
        if looks_like_path(dataset):
            raise FileNotFoundError(f"no dataset or image folder at {dataset!r}")
        return _DatasetCollection.from_hub(
            dataset, config=config, split=split, revision=revision, image_column=image_column
        )

    @classmethod
    def from_dataset(
        cls, dataset: Any, *, source: str, split: str | None = None, image_column: str | None = None
    ) -> Collection:
        """Wrap an already loaded ``datasets.Dataset`` (one split)."""
        return _DatasetCollection(
            dataset, source=source, config=None, split=split, revision=None, image_column=image_column
        )

    # --------------------------------------------------------------------------------------------------- access
    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        where = ", ".join(f"{k}={v!r}" for k, v in self.identity().items() if v is not None and k != "content")
        return f"{type(self).__name__}({where}, n={len(self)})"

    def identity(self) -> dict[str, str | None]:
        """What the embeddings of this collection depend on: used in cache keys and manifests."""
        return {
            "dataset": self.source,
            "config": self.config,
            "split": self.split,
            "revision": self.revision,
            "image_column": self.image_column,
            "content": self.content_signature,
        }

    def caption(self, id_: str) -> str | None:
        """A short text describing ``id_`` if the collection has one (a caption column, or its class name): alt text
        for a thumbnail. None otherwise."""
        return None

    def example_prompts(self, k: int = 3) -> list[str]:
        """Up to ``k`` prompts that suit this collection (some of its captions or class names), to suggest to a
        visitor instead of a generic example that may not exist here. Empty when the collection has no text."""
        return []

    def image(self, id_: str) -> Image.Image:
        """Decode the image behind ``id_`` (in its own mode; ``trainer.embed.to_rgb`` gives what the model saw).

        Raises KeyError for an unknown id and :class:`UndecodableImage` for a file that cannot be decoded.
        """
        if self._positions is None:
            self._positions = {id_: row for row, id_ in enumerate(self.ids)}
        if id_ not in self._positions:
            raise KeyError(f"no image with id {id_!r} in {self!r}")
        row = self._positions[id_]
        batch = self.decode_range(row, row + 1)
        if batch.skipped:
            raise UndecodableImage(f"image {id_!r} cannot be decoded: {batch.skipped[0][1]}")
        return batch.images[0]

    def decode_range(self, start: int, stop: int) -> DecodedBatch:
        """Decode rows ``start:stop``. Never raises for a bad file: it is returned in ``skipped`` with the reason."""
        return self._reader.decode(start, stop, self.ids[start:stop])

    def reader(self) -> RowReader:
        """What a worker process needs to decode rows of this collection (see :class:`RowReader`)."""
        return self._reader

    def batches(self, batch_size: int) -> Iterator[tuple[list[str], list[Image.Image]]]:
        """Yield ``(ids, images)`` batches in order; undecodable rows are left out and listed in ``self.skipped``."""
        if batch_size <= 0:
            raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}")
        self.skipped = []
        for start in range(0, len(self), batch_size):
            batch = self.decode_range(start, min(start + batch_size, len(self)))
            self.skipped.extend(batch.skipped)
            if batch.ids:
                yield batch.ids, batch.images


def load_image(path: str | os.PathLike[str]) -> Image.Image:
    """Decode one image file exactly as collections do (EXIF orientation applied, possible decompression bombs
    refused from the header before decoding): for an image a visitor uploads. UndecodableImage says why not."""
    return _decode({"path": str(path), "bytes": None})


def _decode(record: dict[str, Any]) -> Image.Image:
    """Decode one ``{"path", "bytes"}`` record fully (``load()``), so a truncated file fails here, not later."""
    from datasets import Image as ImageFeature

    path = record.get("path")
    if record.get("bytes") is None and path and os.path.isfile(path) and os.path.getsize(path) == 0:
        raise UndecodableImage("empty file (0 bytes)")  # clearer than Pillow's "cannot identify image file"
    _refuse_huge(record)
    try:
        # The datasets decoder (as datasets itself uses): opens bytes, local or remote paths, loads the pixels and
        # applies the EXIF orientation, so a folder and a Hub dataset decode the same way.
        return ImageFeature().decode_example(record)
    # Pillow reports a bad file through many exception types (UnidentifiedImageError, OSError, SyntaxError,
    # ValueError, struct.error, DecompressionBombError, ...). A bad file must never stop a run of thousands; the
    # reason is kept and reported by id, so nothing is hidden.
    except Exception as err:
        raise UndecodableImage(f"{type(err).__name__}: {err}") from err


def _refuse_huge(record: dict[str, Any]) -> None:
    """Refuse an image whose header promises more than ``Image.MAX_IMAGE_PIXELS`` pixels, before decoding it.

    Pillow itself only *warns* between 1x and 2x that limit and then decodes (a 10,000 x 10,000 PNG of a few KB
    becomes 300 MB of RGB); above 2x it raises. Reading the header is cheap, so every size over the limit is refused
    here, with the size in the message, and never reaches the decoder. Remote paths are left to the decoder.
    """
    source: Any = io.BytesIO(record["bytes"]) if record.get("bytes") is not None else record.get("path")
    if not isinstance(source, io.BytesIO) and not (source and os.path.isfile(source)):
        return
    limit = Image.MAX_IMAGE_PIXELS
    try:
        # Between 1x and 2x the limit Pillow warns here (once); we refuse just below. The warning is not silenced:
        # ``warnings.catch_warnings`` is process-global and the collection is decoded on several threads.
        with Image.open(source) as image:
            width, height = image.size
    except Image.DecompressionBombError as err:
        raise UndecodableImage(f"refused as a possible decompression bomb: {err}") from None
    # Anything else (not an image, a broken header) is for the decoder to report, with its own reason.
    except Exception:
        return
    if limit and width * height > limit:
        raise UndecodableImage(
            f"image is {width:,} x {height:,} pixels, over the limit of {limit:,}: refused as a possible "
            "decompression bomb (resize it first)"
        )


# ---------------------------------------------------------------------------------------------------- datasets
class _DatasetCollection(Collection):
    def __init__(
        self,
        dataset: Any,
        *,
        source: str,
        config: str | None,
        split: str | None,
        revision: str | None,
        image_column: str | None,
        content_signature: str | None = None,
    ) -> None:
        from datasets import Image as ImageFeature

        column = _image_column(dataset, image_column, source)
        ids = _dataset_ids(dataset, split)
        super().__init__(
            ids,
            source=source,
            config=config,
            split=split,
            revision=revision,
            image_column=column,
            content_signature=content_signature,
        )
        # Undecoded records, so that decoding happens in the reader, per row, where a bad row can be skipped.
        self._reader = _DatasetReader(dataset.select_columns([column]).cast_column(column, ImageFeature(decode=False)))
        self._texts = _row_texts(dataset)  # (captions or class names per row, "caption" or "class") or None

    def caption(self, id_: str) -> str | None:
        if self._texts is None:
            return None
        if self._positions is None:
            self._positions = {name: row for row, name in enumerate(self.ids)}
        row = self._positions.get(id_)
        return None if row is None else self._texts[0][row]

    def example_prompts(self, k: int = 3) -> list[str]:
        if self._texts is None:
            return []
        texts, kind = self._texts
        # Captions of three to five words read like prompts (shorter ones are vague, longer ones name everything);
        # evenly spaced through the sorted distinct ones, so the examples differ from each other.
        pool = sorted({t for t in texts if kind == "class" or 3 <= len(t.split()) <= 5})
        return pool[:: max(1, len(pool) // max(k, 1))][:k]

    @classmethod
    def from_hub(
        cls, name: str, *, config: str | None, split: str | None, revision: str | None, image_column: str | None
    ) -> _DatasetCollection:
        import datasets

        split = split or "train"
        dataset = datasets.load_dataset(name, config, split=split, revision=revision)
        return cls(dataset, source=name, config=config, split=split, revision=revision, image_column=image_column)

    @classmethod
    def from_local(
        cls, path: Path, *, config: str | None, split: str | None, image_column: str | None
    ) -> _DatasetCollection:
        import datasets

        split = split or "train"
        if (path / "state.json").exists() or (path / "dataset_dict.json").exists():  # written by save_to_disk
            loaded = datasets.load_from_disk(str(path))
            dataset = loaded[split] if isinstance(loaded, datasets.DatasetDict) else loaded
        else:
            dataset = datasets.load_dataset(str(path), config, split=split)
        signature = _files_signature(path, [p for p in _walk(path) if p.suffix in _DATA_FILE_SUFFIXES])
        return cls(
            dataset,
            source=str(path.resolve()),
            config=config,
            split=split,
            revision=None,
            image_column=image_column,
            content_signature=signature,
        )


class _DatasetReader(RowReader):
    def __init__(self, records: Any) -> None:
        self._table = records  # one column of undecoded image records; memory-mapped, pickled by path
        self._column = records.column_names[0]

    def _records(self, start: int, stop: int, ids: Sequence[str]) -> list[dict[str, Any]]:
        return self._table[start:stop][self._column]


def _image_column(dataset: Any, wanted: str | None, source: str) -> str:
    from datasets import Image as ImageFeature

    image_columns = [name for name, feature in dataset.features.items() if isinstance(feature, ImageFeature)]
    if wanted is None:
        if not image_columns:
            raise ValueError(
                f"dataset {source!r} has no image column (no datasets.Image feature); "
                f"its columns are {', '.join(dataset.column_names)}"
            )
        return image_columns[0]
    if wanted not in image_columns:
        raise ValueError(
            f"image column {wanted!r} is not an image feature of {source!r}; "
            f"image columns: {', '.join(image_columns) or 'none'}"
        )
    return wanted


def _row_texts(dataset: Any) -> tuple[list[str], str] | None:
    """Each row's caption (a "caption" or "text" string column) or class name (the first ClassLabel column)."""
    from datasets import ClassLabel, Value

    features = dataset.features
    for name in ("caption", "text"):
        if isinstance(features.get(name), Value) and features[name].dtype == "string":
            return [str(t or "").strip() for t in dataset[name]], "caption"
    for name, feature in features.items():
        if isinstance(feature, ClassLabel):
            return [f"a photo of a {feature.int2str(int(i))}" for i in dataset[name]], "class"
    return None


def _dataset_ids(dataset: Any, split: str | None) -> list[str]:
    fallback = [f"{split or 'row'}-{row}" for row in range(len(dataset))]
    if "id" not in dataset.column_names:
        return fallback
    values = list(dataset["id"])
    ids = [str(value) for value in values]
    if all(value is not None and text for value, text in zip(values, ids, strict=True)) and len(set(ids)) == len(ids):
        return ids
    logger.warning("The 'id' column has empty or repeated values: using row ids (%s-<row>) instead", split)
    return fallback


# ------------------------------------------------------------------------------------------------ image folders
class _FolderCollection(Collection):
    def __init__(self, root: Path, files: list[Path], *, split: str | None) -> None:
        super().__init__(
            [f.relative_to(root).as_posix() for f in files],
            source=str(root.resolve()),
            config=None,
            split=split,
            revision=None,
            image_column=None,
            content_signature=_files_signature(root, files),
        )
        self._reader = _FolderReader(root)

    @classmethod
    def from_folder(cls, path: Path, *, split: str | None) -> _FolderCollection:
        root = path
        if split and (path / split).is_dir():
            root = path / split
        elif split in (None, _WHOLE_FOLDER_SPLIT):
            if split:
                logger.info("No %r subfolder in %s: the whole folder is the collection", split, path)
            split = None
        else:
            raise ValueError(
                f"no {split!r} subfolder in {path}: a plain image folder has a single split; "
                f"use split=None (or {_WHOLE_FOLDER_SPLIT!r}) for the whole folder"
            )
        extensions = _image_extensions()
        files, ignored = [], 0
        for file in _walk(root):
            if file.suffix.lower() in extensions:
                files.append(file)
            else:
                ignored += 1
        if ignored:
            logger.info("Ignored %d file(s) in %s whose extension is not an image format", ignored, root)
        if not files:
            raise ValueError(f"no image files in {root}")
        return cls(root, files, split=split)


@dataclass(frozen=True)
class _FolderReader(RowReader):
    root: Path

    def _records(self, start: int, stop: int, ids: Sequence[str]) -> list[dict[str, Any]]:
        return [{"path": str(self.root / id_), "bytes": None} for id_ in ids]


def _walk(root: Path) -> list[Path]:
    """Every non-hidden file under ``root``, in a stable (sorted) order."""
    found = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))  # in place: prunes the walk, fixes its order
        found.extend(Path(folder) / n for n in sorted(names) if not n.startswith("."))
    return found


def _image_extensions() -> set[str]:
    return {ext.lower() for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}


def folder_signature(root: str | os.PathLike[str]) -> str:
    """A short hash of every non-hidden file's relative path, size and mtime under ``root``: changes when it does."""
    return _files_signature(Path(root), _walk(Path(root)))


def _files_signature(root: Path, files: list[Path]) -> str:
    digest = hashlib.sha256()
    for file in files:
        stat = file.stat()
        digest.update(f"{file.relative_to(root).as_posix()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def _is_dataset_folder(path: Path) -> bool:
    if (path / "state.json").exists() or (path / "dataset_dict.json").exists():
        return True
    return any(p.suffix in _DATA_FILE_SUFFIXES for p in _walk(path))
