"""Exact dot-product search held in memory: the default index, fast enough for a few million vectors on a laptop.

Saved as one folder: a manifest naming the current vector/id files. A save writes new files first and swaps the
manifest in last with an atomic rename, so a crash at any moment leaves either the old index or the new one, never
a mix. Loading memory-maps the vectors, so a second start costs a page-in, not a parse.
"""

from __future__ import annotations

import functools
import json
import os
import secrets
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise, repeat
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..files import atomic_write
from . import Hit, check_ids, check_norms, check_query, check_vectors

__all__ = ["PARALLEL_BYTES", "LocalIndex", "scan_sliced", "top_rows"]

_FORMAT_VERSION = 1
_DTYPES = {"float32": np.float32, "float16": np.float16}
# float32 rows from this many bytes on are scored in parallel slices (``scan_sliced``). Such a scan is bound by memory
# bandwidth, which one core does not use up: at 1M x 512 (2 GB) on the 2-core target, one einsum takes 82-100 ms and
# four slices on two threads 45-65 ms, for 0-20% more CPU time (threads stalled on memory count as running). Below it
# the rows sit in cache, the scan is bound by arithmetic, and a second thread buys less than it costs (100k x 512:
# 9.0 -> 6.4 ms, CPU 8.9 -> 11.5 ms). benchmarks/RESULTS-engine.md, section 6.
PARALLEL_BYTES = 1 << 28  # 256 MB: 131,072 rows of 512 float32


class LocalIndex:
    """Exact maximum-inner-product search over L2-normalised vectors.

    ``dtype="float16"`` halves memory. float16 rows are scored with torch, whose half-precision matrix-vector
    product is fast on CPU (numpy's is ~18x slower than its float32 one); float32 rows are scored with numpy.
    """

    def __init__(self, dim: int, *, dtype: str = "float32") -> None:
        if dtype not in _DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}; choose one of {', '.join(_DTYPES)}")
        if not isinstance(dim, int) or dim <= 0:
            raise ValueError(f"dim must be a positive integer; got {dim!r}")
        self._dim = dim
        self._dtype = dtype
        self._vectors = np.empty((0, dim), dtype=_DTYPES[dtype])  # (N, D)
        self._ids: list[str] = []
        self._rows: dict[str, int] = {}
        self._metadata: list[dict[str, Any]] = []

    # ----------------------------------------------------------------------------------------------- construction
    @classmethod
    def from_vectors(
        cls,
        ids: Sequence[str],
        vectors: np.ndarray,
        metadata: Sequence[Mapping[str, Any]] | None = None,
        *,
        dtype: str = "float32",
        normalize: bool = False,
    ) -> LocalIndex:
        vectors = np.asarray(vectors)
        if vectors.ndim != 2:
            raise ValueError(f"vectors must be a 2-D array (n, d); got shape {vectors.shape}")
        index = cls(int(vectors.shape[1]), dtype=dtype)
        index.add(ids, vectors, metadata, normalize=normalize)
        return index

    def add(
        self,
        ids: Sequence[str],
        vectors: np.ndarray,
        metadata: Sequence[Mapping[str, Any]] | None = None,
        *,
        normalize: bool = False,
    ) -> None:
        """Append vectors. Everything is checked before anything changes: a refused call leaves the index as it was.

        Memory: the rows are copied once at most. The first ``add`` of a read-only float32 memory map (a cache entry
        or an index loaded from disk) keeps the map itself, as :meth:`load` does; nothing else is shared with the
        caller.
        """
        ids = check_ids(ids, self._rows)
        given = vectors
        vectors = check_norms(check_vectors(vectors, self._dim, len(ids)), normalize=normalize)
        if metadata is None:
            metadata = [{} for _ in ids]
        elif len(metadata) != len(ids):
            raise ValueError(f"got {len(metadata)} metadata records for {len(ids)} ids")
        start = len(self._ids)
        dtype = _DTYPES[self._dtype]
        if start:
            self._vectors = np.concatenate([self._vectors, vectors], dtype=dtype)  # (N + n, D), one allocation
        elif not np.may_share_memory(vectors, given):
            self._vectors = vectors.astype(dtype, copy=False)  # already a private array (converted or normalised)
        elif dtype == np.float32 and _immutable(vectors):
            self._vectors = vectors
        else:
            self._vectors = vectors.astype(dtype)  # the caller's array, copied once
        self._ids.extend(ids)
        self._rows.update((id_, start + i) for i, id_ in enumerate(ids))
        self._metadata.extend(dict(m) for m in metadata)

    # ----------------------------------------------------------------------------------------------- the protocol
    @property
    def dim(self) -> int:
        return self._dim

    @property
    def dtype(self) -> str:
        return self._dtype

    @property
    def ids(self) -> list[str]:
        return list(self._ids)

    def list_ids(self) -> list[str]:
        """Every id, in the order added: :attr:`ids`, under the name every backend that can list gives it."""
        return self.ids

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, id_: object) -> bool:
        return id_ in self._rows

    def scores_all(self, vector: np.ndarray) -> np.ndarray:
        """Dot product of ``vector`` with every stored row, in storage order: (N,) float32."""
        query = check_query(vector, self._dim, 0)
        if self._dtype == "float16":
            with torch.inference_mode():
                rows = torch.from_numpy(self._vectors)  # (N, D) float16, no copy
                return (rows @ torch.from_numpy(query.astype(np.float16))).float().numpy()
        # einsum's own single-threaded SIMD loop, not BLAS gemv: on the 2-core target it takes half the wall and CPU
        # time of OpenBLAS's threaded gemv at 10k-1M rows, which also stalls whenever the cores are busy.
        if self._vectors.nbytes < PARALLEL_BYTES:
            return np.einsum("ij,j->i", self._vectors, query)
        return scan_sliced(self._vectors, query)

    def query(self, vector: np.ndarray, top_k: int, exclude: Iterable[str] | None = None) -> list[Hit]:
        """The ``top_k`` rows with the highest dot product with ``vector``, best first, skipping ``exclude``."""
        query = check_query(vector, self._dim, top_k)
        if top_k == 0 or not self._ids:
            return []
        scores = self.scores_all(query)
        if exclude:
            rows = [self._rows[i] for i in exclude if i in self._rows]
            scores[rows] = -np.inf  # scores is a fresh array: safe to overwrite
        best = top_rows(scores, min(top_k, len(scores)))
        best = best[scores[best] != -np.inf]
        # Plain Python ints and floats first: indexing numpy scalars one by one costs ~2 us per hit. And the tuples
        # built by tuple.__new__ straight: a NamedTuple's own __new__ is Python code, half the time of 1000 hits.
        ids = [self._ids[r] for r in best.tolist()]
        return list(map(tuple.__new__, repeat(Hit), zip(ids, scores[best].tolist(), strict=True)))

    def sample(self, k: int, rng: np.random.Generator, exclude: Iterable[str] | None = None) -> list[str]:
        """Up to ``k`` distinct ids drawn uniformly from the rows not in ``exclude`` (fewer when fewer are left).

        What a session explores with (trainer/exploration.py). Draws rows at random and skips excluded ones while
        most rows are free, so a round costs microseconds, not a pass over the index.
        """
        if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 0:
            raise ValueError(f"k must be a non-negative integer; got {k!r}")
        excluded = {self._rows[i] for i in exclude if i in self._rows} if exclude else set()
        free = len(self._ids) - len(excluded)
        k = min(int(k), free)
        if k <= 0:
            return []
        if free < 2 * len(excluded) or free < 4 * k:  # mostly excluded: draw from what is left
            left = np.setdiff1d(np.arange(len(self._ids)), np.fromiter(excluded, dtype=np.int64, count=len(excluded)))
            return [self._ids[r] for r in rng.choice(left, size=k, replace=False).tolist()]
        chosen: dict[int, None] = {}
        while len(chosen) < k:  # at least half the rows are free: a few draws each
            for row in rng.integers(len(self._ids), size=2 * k).tolist():
                if row not in excluded and row not in chosen and len(chosen) < k:
                    chosen[row] = None
        return [self._ids[r] for r in chosen]

    def fetch(self, ids: Sequence[str]) -> np.ndarray:
        """Stored vectors for ``ids`` as (n, d) float32, in the order asked."""
        missing = [i for i in ids if i not in self._rows]
        if missing:
            raise KeyError(f"{len(missing)} id(s) not in the index: {missing[:5]}{' ...' if len(missing) > 5 else ''}")
        rows = [self._rows[i] for i in ids]
        return np.asarray(self._vectors[rows], dtype=np.float32).reshape(len(rows), self._dim)

    def metadata(self, ids: Sequence[str]) -> list[dict[str, Any]]:
        return [dict(self._metadata[self._rows[i]]) for i in ids]

    @property
    def vectors(self) -> np.ndarray:
        """All rows in storage order, read-only view: (N, D) in the storage dtype."""
        view = self._vectors.view()
        view.flags.writeable = False
        return view

    # ----------------------------------------------------------------------------------------------- persistence
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the index to folder ``path`` atomically (see the module docstring)."""
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        old = _read_manifest(folder) if (folder / "manifest.json").exists() else None
        token = secrets.token_hex(4)
        files = {"vectors": f"vectors-{token}.npy", "ids": f"ids-{token}.json", "metadata": f"metadata-{token}.json"}
        atomic_write(folder / files["vectors"], lambda f: np.save(f, np.ascontiguousarray(self._vectors)))
        atomic_write(folder / files["ids"], lambda f: f.write(json.dumps(self._ids).encode()))
        atomic_write(folder / files["metadata"], lambda f: f.write(json.dumps(self._metadata).encode()))
        manifest = {
            "format": "concept-trainer-local-index",
            "version": _FORMAT_VERSION,
            "dim": self._dim,
            "count": len(self._ids),
            "dtype": self._dtype,
            "files": files,
        }
        # The manifest swap is the commit point: before it the old index is intact, after it the new one is.
        atomic_write(folder / "manifest.json", lambda f: f.write(json.dumps(manifest, indent=2).encode()))
        if old is not None:
            for name in old["files"].values():
                if name not in files.values():
                    (folder / name).unlink(missing_ok=True)
        return folder

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, mmap: bool = True) -> LocalIndex:
        """Load a saved index; with ``mmap`` the vectors are memory-mapped copy-on-write, not read into memory."""
        folder = Path(path)
        manifest = _read_manifest(folder)
        files = manifest["files"]
        try:
            # "c" (copy-on-write) keeps the map writable in-process, which torch.from_numpy needs, never the file.
            vectors = np.load(folder / files["vectors"], mmap_mode="c" if mmap else None)
            ids = json.loads((folder / files["ids"]).read_text())
            metadata = json.loads((folder / files["metadata"]).read_text())
        except (OSError, ValueError) as err:
            raise ValueError(f"index at {folder} is damaged or incomplete ({err}); rebuild it") from err
        expected = (manifest["count"], manifest["dim"])
        if vectors.shape != expected or len(ids) != manifest["count"] or len(metadata) != manifest["count"]:
            raise ValueError(
                f"index at {folder} is inconsistent: manifest says {expected}, files hold vectors "
                f"{vectors.shape}, {len(ids)} ids, {len(metadata)} metadata records; rebuild it"
            )
        if vectors.dtype != _DTYPES[manifest["dtype"]]:
            raise ValueError(f"index at {folder}: vectors are {vectors.dtype}, manifest says {manifest['dtype']}")
        index = cls(manifest["dim"], dtype=manifest["dtype"])
        index._vectors = vectors
        index._ids = ids
        index._rows = {id_: row for row, id_ in enumerate(ids)}
        index._metadata = metadata
        return index

    def __repr__(self) -> str:
        return f"LocalIndex(n={len(self)}, dim={self._dim}, dtype={self._dtype})"


def _immutable(arr: np.ndarray) -> bool:
    """Nothing can change ``arr``'s memory: it and every array it views are read-only, down to a read-only map or
    bytes (an array that owns its memory could make itself writable again)."""
    while isinstance(arr, np.ndarray):
        if arr.flags.writeable:
            return False
        arr = arr.base
    return arr is not None


def _read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / "manifest.json"
    if not path.exists():
        raise FileNotFoundError(f"no index at {folder}: {path.name} is missing")
    try:
        manifest = json.loads(path.read_text())
    except ValueError as err:
        raise ValueError(f"index manifest {path} is not valid JSON ({err}); rebuild the index") from err
    if manifest.get("format") != "concept-trainer-local-index" or manifest.get("version") != _FORMAT_VERSION:
        raise ValueError(
            f"{path} is not a concept-trainer local index of version {_FORMAT_VERSION} "
            f"(format={manifest.get('format')!r}, version={manifest.get('version')!r})"
        )
    return manifest


def top_rows(scores: np.ndarray, k: int) -> np.ndarray:
    """The rows of the ``k`` highest ``scores``, best first (ties in no promised order). A partition, then a sort of
    the ``k`` alone: at 1M scores and the 5,000 of a large collection's pool, 1.9 ms against torch.topk's 4.5 (and
    0.18 against 0.44 at 100k); below 100k both take microseconds (benchmarks/RESULTS-engine.md)."""
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    split = len(scores) - k
    rows = np.argpartition(scores, split)[split:] if split > 0 else np.arange(len(scores))
    return rows[np.argsort(-scores[rows], kind="stable")]


@functools.cache
def _scanners() -> tuple[ThreadPoolExecutor, int]:
    """The threads that large scans are sliced over, and how many: one per core this process may run on (at most 8).
    Plain Python threads: einsum lets go of the GIL, and an idle thread waits on a lock instead of spinning as BLAS's
    do."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    threads = min(cores, 8)
    return ThreadPoolExecutor(max_workers=threads, thread_name_prefix="scan"), threads


# A forked child has none of its parent's threads: it starts its own pool on its first large scan.
os.register_at_fork(after_in_child=_scanners.cache_clear)


def scan_sliced(rows: np.ndarray, query: np.ndarray) -> np.ndarray:
    """``rows @ query`` as einsum computes it, row for row the same floats, in two slices per thread (a slice that
    finishes early leaves its thread free for the next): see ``PARALLEL_BYTES``."""
    scanners, threads = _scanners()
    out = np.empty(len(rows), dtype=np.float32)
    edges = np.linspace(0, len(rows), 2 * threads + 1).astype(np.int64).tolist()
    slices = [slice(a, b) for a, b in pairwise(edges)]
    for done in [scanners.submit(np.einsum, "ij,j->i", rows[s], query, out=out[s]) for s in slices]:
        done.result()
    return out
