"""Embedding shards: rows ``start:stop`` of a collection with their ids and vectors, one parquet file each, in a
folder or any object store pyarrow opens. Written whole or not at all, listed and checked on resumption; the Ray
indexer (trainer/ray_indexing.py) writes them and streams them into the embeddings cache.
"""

from __future__ import annotations

import json
import logging
import os
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

__all__ = ["SHARD_FORMAT", "Shard", "ShardPart", "ShardStore", "pending_ranges"]

log = logging.getLogger(__name__)

SHARD_FORMAT = 1
_META_KEY = b"concept_trainer"
_SHARD_NAME = re.compile(r"(\d{10})-(\d{10})\.parquet")


@dataclass(frozen=True)
class Shard:
    """One written shard: rows ``start:stop`` of the collection, ``count`` of them embedded, the rest skipped."""

    start: int
    stop: int
    count: int
    skipped: tuple[tuple[str, str], ...]
    name: str


class ShardStore:
    """The shard folder of one (model, collection): a local path or any URI pyarrow opens (``s3://``, ``gs://``...).

    Picklable (a Ray task writes through it). A shard is written to a hidden temporary name and moved into place,
    so a reader sees it whole or not at all.
    """

    def __init__(self, location: str | os.PathLike[str]) -> None:
        self.location = str(location)
        if "://" in self.location:
            self._fs, self._root = pafs.FileSystem.from_uri(self.location)
        else:
            self._fs, self._root = pafs.LocalFileSystem(), str(Path(location).expanduser().resolve())
        self._fs.create_dir(self._root, recursive=True)

    def __repr__(self) -> str:
        return f"ShardStore({self.location!r})"

    def _path(self, name: str) -> str:
        return f"{self._root}/{name}"

    def write(
        self, start: int, stop: int, ids: list[str], vectors: np.ndarray, skipped: list[tuple[str, str]], key: str
    ) -> Shard:
        """Write rows ``start:stop``: ``ids`` with their (n, D) ``vectors``, and the ``(id, reason)`` skipped."""
        n, dim = vectors.shape
        flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1), type=pa.float32())
        table = pa.table(
            {"id": pa.array(ids, type=pa.string()), "vector": pa.FixedSizeListArray.from_arrays(flat, dim)}
        )
        meta = {"format": SHARD_FORMAT, "key": key, "start": start, "stop": stop, "dim": dim, "skipped": skipped}
        table = table.replace_schema_metadata({_META_KEY: json.dumps(meta).encode()})
        name = f"{start:010d}-{stop:010d}.parquet"
        self._put(name, lambda where: pq.write_table(table, where, filesystem=self._fs))
        return Shard(start, stop, n, tuple((a, b) for a, b in skipped), name)

    def write_skipped(self, shards: Sequence[Shard]) -> str:
        """Write every shard's skipped rows, in row order, to ``skipped.json`` (for people; the shards hold them
        too) and return where it is."""
        text = json.dumps([pair for shard in shards for pair in shard.skipped], indent=1).encode()

        def put(where: str) -> None:
            with self._fs.open_output_stream(where) as f:
                f.write(text)

        self._put("skipped.json", put)
        return f"{self.location.rstrip('/')}/skipped.json"

    def _put(self, name: str, write: Callable[[str], object]) -> None:
        temporary = self._path(f".{name}.{uuid.uuid4().hex[:8]}.tmp")
        write(temporary)
        self._fs.move(temporary, self._path(name))

    def scan(self, key: str, total: int) -> list[Shard]:
        """The sound shards of ``key`` in row order. A shard that cannot be read (a torn write on a store without
        atomic moves) or overlaps another is deleted, so that its rows are embedded again; a shard of another
        (model, collection) is an error, since it means two runs share a folder."""
        found: list[Shard] = []
        for info in self._fs.get_file_info(pafs.FileSelector(self._root, allow_not_found=True)):
            name = info.base_name
            if name.startswith(".") and name.endswith(".tmp"):
                self._fs.delete_file(info.path)  # a write killed before its move: nothing refers to it
                continue
            match = _SHARD_NAME.fullmatch(name)
            if not match:
                continue
            try:
                meta = self._metadata(name)
            except (OSError, ValueError, pa.ArrowException) as err:
                log.warning("Shard %s is unreadable (%s): deleting it, its rows will be embedded again", name, err)
                self._fs.delete_file(info.path)
                continue
            if meta["key"] != key:
                raise ValueError(
                    f"shard {name} in {self.location} belongs to another model or collection ({meta['key']}, not "
                    f"{key}): give each run its own shard folder"
                )
            start, stop = int(match[1]), int(match[2])
            skipped = tuple((str(a), str(b)) for a, b in meta["skipped"])
            found.append(Shard(start, stop, int(meta["count"]), skipped, name))
        shards, covered = [], 0
        for shard in sorted(found, key=lambda s: (s.start, s.stop)):
            if shard.start < covered or shard.stop > total or shard.start >= shard.stop:
                log.warning("Shard %s overlaps another or lies outside the collection: deleting it", shard.name)
                self._fs.delete_file(self._path(shard.name))
                continue
            shards.append(shard)
            covered = shard.stop
        return shards

    def _metadata(self, name: str) -> dict[str, Any]:
        with self._fs.open_input_file(self._path(name)) as f:
            parquet = pq.ParquetFile(f)
            raw = (parquet.schema_arrow.metadata or {}).get(_META_KEY)
            rows = parquet.metadata.num_rows
        if raw is None:
            raise ValueError("no concept_trainer metadata")
        meta = json.loads(raw)
        if meta.get("format") != SHARD_FORMAT:
            raise ValueError(f"shard format {meta.get('format')!r}, expected {SHARD_FORMAT}")
        return {**meta, "count": rows}

    def read(self, shard: Shard, columns: Sequence[str] = ("id", "vector")) -> tuple[list[str], np.ndarray]:
        """The ids and (n, D) float32 vectors of ``shard``; a column left out of ``columns`` comes back empty."""
        table = pq.read_table(self._path(shard.name), columns=list(columns), filesystem=self._fs)
        ids = table.column("id").to_pylist() if "id" in columns else []
        if "vector" not in columns:
            return ids, np.empty((0, 0), np.float32)
        column = table.column("vector").combine_chunks()
        vectors = column.values.to_numpy(zero_copy_only=False).reshape(len(table), column.type.list_size)
        return ids, vectors


def pending_ranges(shards: Sequence[Shard], total: int, rows_per_shard: int) -> list[tuple[int, int]]:
    """Row ranges no shard covers, cut into pieces of at most ``rows_per_shard`` rows."""
    ranges, at = [], 0
    for start, stop in [(s.start, s.stop) for s in shards] + [(total, total)]:
        ranges += [(a, min(a + rows_per_shard, start)) for a in range(at, start, rows_per_shard)]
        at = max(at, stop)
    return ranges


@dataclass(frozen=True)
class ShardPart:
    """A shard as a part of a cache entry (``trainer.indexing.EntryPart``): read when its turn comes."""

    store: ShardStore
    shard: Shard

    def ids(self) -> list[str]:
        return self.store.read(self.shard, ["id"])[0]

    def skipped(self) -> list[tuple[str, str]]:
        return list(self.shard.skipped)

    def vectors(self) -> np.ndarray:
        return self.store.read(self.shard, ["vector"])[1]
