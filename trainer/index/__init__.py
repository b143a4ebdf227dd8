"""Vector indexes behind one small protocol, and the input checks every backend shares.

An index holds only what every user shares: ids, vectors and small metadata. Per-user state ("seen", labels) lives
in the Session, so two people working on one index never see each other's work.

Beyond the protocol, a backend may list its ids (``ListingIndex``): what a uniform sample of the collection is drawn
from where the index cannot sample itself (trainer/collection_sample.py). ``LocalIndex`` answers from memory;
``PineconeIndex`` from the ids it wrote, else in a bounded number of calls, or an ``IndexUnavailable`` saying why.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Mapping, Sequence
from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np

__all__ = [
    "CHECK_ROWS",
    "NORM_TOLERANCE",
    "Hit",
    "IndexUnavailable",
    "ListingIndex",
    "VectorIndex",
    "check_ids",
    "check_norms",
    "check_query",
    "check_vectors",
]

# Rows whose norm is further than this from 1 are refused: dot-product search ranks by cosine only on unit vectors.
NORM_TOLERANCE = 1e-3
# Checks walk big arrays in chunks of this many rows, so that their temporaries stay small (a few MB).
CHECK_ROWS = 65_536


class IndexUnavailable(RuntimeError):
    """A remote index cannot serve a request, and the message says what to do about it.

    Raised for a missing or rejected API key, an unreachable service, a spent quota, or repeated server errors. The
    message never contains a secret, so the UI can show it to a visitor as it is, whatever the backend.
    """


class Hit(NamedTuple):
    id: str
    score: float


@runtime_checkable
class VectorIndex(Protocol):
    @property
    def dim(self) -> int: ...

    def __len__(self) -> int: ...

    def add(
        self, ids: Sequence[str], vectors: np.ndarray, metadata: Sequence[Mapping[str, Any]] | None = None
    ) -> None: ...

    def query(self, vector: np.ndarray, top_k: int, exclude: Iterable[str] | None = None) -> list[Hit]: ...

    def fetch(self, ids: Sequence[str]) -> np.ndarray: ...


@runtime_checkable
class ListingIndex(Protocol):
    def list_ids(self) -> list[str]:
        """Every id the index holds, once each (any order); IndexUnavailable where a remote index cannot say."""
        ...


def check_ids(ids: Sequence[str], existing: Container[str] | None = None) -> list[str]:
    """Ids are non-empty strings, unique within the call and, given ``existing``, new to the index."""
    ids = list(ids)
    for i in ids:
        if not isinstance(i, str) or not i:
            raise ValueError(f"ids must be non-empty strings; got {i!r}")
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        dupes = sorted({i for i in ids if i in seen or seen.add(i)})  # type: ignore[func-returns-value]
        raise ValueError(f"duplicate ids in one call: {dupes[:5]}{' ...' if len(dupes) > 5 else ''}")
    if existing is not None:
        clash = [i for i in ids if i in existing]
        if clash:
            raise ValueError(f"ids already in the index: {clash[:5]}{' ...' if len(clash) > 5 else ''}")
    return ids


def check_vectors(vectors: np.ndarray, dim: int | None, n: int | None = None) -> np.ndarray:
    """Return ``vectors`` as a C-contiguous (n, d) float32 array, or raise naming what is wrong."""
    arr = np.asarray(vectors)
    if arr.ndim != 2:
        raise ValueError(f"vectors must be a 2-D array (n, d); got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"got {arr.shape[0]} vectors for {n} ids")
    if dim is not None and arr.shape[1] != dim:
        raise ValueError(f"vectors have dimension {arr.shape[1]}, but this index holds dimension {dim}")
    if not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"vectors must be numeric; got dtype {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    bad = np.concatenate([~np.isfinite(arr[i : i + CHECK_ROWS]).all(axis=1) for i in _row_chunks(arr)])
    if bad.any():
        raise ValueError(f"{int(bad.sum())} vector(s) contain NaN or inf (first at row {int(np.argmax(bad))})")
    return arr


def check_query(vector: np.ndarray, dim: int, top_k: int) -> np.ndarray:
    """Return ``vector`` as a (d,) float32 array, or raise naming what is wrong."""
    arr = np.asarray(vector, dtype=np.float32)
    if arr.ndim == 2 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 1 or arr.shape[0] != dim:
        raise ValueError(f"query vector must have shape ({dim},); got {np.shape(vector)}")
    if not np.isfinite(arr).all():
        raise ValueError("query vector contains NaN or inf")
    if not isinstance(top_k, (int, np.integer)) or isinstance(top_k, bool) or top_k < 0:
        raise ValueError(f"top_k must be a non-negative integer; got {top_k!r}")
    return arr


def check_norms(vectors: np.ndarray, *, normalize: bool = False) -> np.ndarray:
    """Return ``vectors`` with unit-norm rows: normalised when ``normalize``, else checked and returned unchanged."""
    # einsum, not np.linalg.norm, which squares the whole (N, D) array first: a second copy of a 10M-row index.
    norms = np.sqrt(np.einsum("ij,ij->i", vectors, vectors))  # (N,)
    if normalize:
        if (norms == 0).any():
            raise ValueError(f"cannot normalise zero vector(s) at rows {np.flatnonzero(norms == 0)[:5].tolist()}")
        return vectors / norms[:, None]
    if len(norms) and np.abs(norms - 1).max() > NORM_TOLERANCE:
        raise ValueError(
            f"vectors must be L2-normalised per row (norms range {norms.min():.4g}..{norms.max():.4g}); "
            "pass normalize=True to normalise them"
        )
    return vectors


def _row_chunks(arr: np.ndarray) -> range:
    return range(0, max(len(arr), 1), CHECK_ROWS)
