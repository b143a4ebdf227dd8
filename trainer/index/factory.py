"""The one way to open or build a vector index: the workspace, the ``index`` command and the Ray indexer all come
here. Each backend is imported only when chosen: the local one needs torch, the Pinecone one the ``pinecone`` SDK,
and a deployment should install only what it uses."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import VectorIndex

if TYPE_CHECKING:
    from trainer.config import Settings
    from trainer.data import Collection
    from trainer.progress import ProgressFn

    from .pinecone import PineconeIndex

__all__ = ["BACKENDS", "BuiltIndex", "build_index", "collection_namespace", "open_index"]

BACKENDS = ("local", "pinecone")


@dataclass(frozen=True)
class BuiltIndex:
    """An index holding a collection's embeddings, and what this build wrote into it."""

    index: VectorIndex
    written: int  # records this build stored: all of them locally; in Pinecone only those not there already
    namespace: str | None  # the Pinecone namespace; None for a local index (its folder names the collection)


def collection_namespace(model_id: str, collection: Collection) -> str:
    """The Pinecone namespace of a collection as opened (its source, split and config, not the settings' defaults).

    The one place every writer (the ``index`` command, on one machine or on Ray) and the app, which searches it,
    get the name from, so they always agree.
    """
    from .pinecone import namespace_for  # plain Python: importing it does not import the SDK

    return namespace_for(model_id, collection.source, collection.split or "all", config=collection.config)


def open_index(
    settings: Settings,
    dim: int,
    namespace: str,
    *,
    local_path: str | os.PathLike[str] | None = None,
    api_key: str | None = None,
    client: Any = None,
) -> VectorIndex:
    """The index for one (model, collection) on ``settings.backend``, ready to query or to fill with ``add``.

    ``local``: the index saved at ``local_path`` when there is one, else an empty ``LocalIndex``; ``namespace`` is
    not used (the path already names the collection). ``pinecone``: ``namespace`` of the index named by
    ``settings.pinecone_index``, created on first use; ``api_key`` and ``client`` are passed to
    :meth:`PineconeIndex.connect <trainer.index.pinecone.PineconeIndex.connect>`.
    """
    if settings.backend == "local":
        from .local import LocalIndex

        if local_path is not None and (Path(local_path) / "manifest.json").exists():
            index = LocalIndex.load(local_path)
            if index.dim != dim:
                raise ValueError(
                    f"the local index at {local_path} holds dimension {index.dim}, but this model needs {dim}; "
                    "rebuild it"
                )
            return index
        return LocalIndex(dim, dtype=settings.index_dtype)
    if settings.backend == "pinecone":
        return _connect_pinecone(settings, dim, namespace, api_key, client)
    raise _unknown_backend(settings)


def build_index(
    settings: Settings,
    collection: Collection,
    ids: Sequence[str],
    vectors: np.ndarray,
    *,
    local_path: str | os.PathLike[str] | None = None,
    progress: ProgressFn | None = None,
    api_key: str | None = None,
    client: Any = None,
) -> BuiltIndex:
    """An index on ``settings.backend`` holding ``ids`` and their (N, D) unit ``vectors`` (``collection``'s embeddings
    by ``settings.model_id``).

    ``local``: a new ``LocalIndex`` of ``settings.index_dtype``, saved to ``local_path`` when given. ``pinecone``:
    the collection's namespace, filled with every record not there yet (batched, retried, and resumable: run it
    again after an interruption); ``local_path`` is not used. ``progress(done, total, message)`` is called after
    each chunk written.
    """
    if settings.backend == "local":
        from .local import LocalIndex

        index = LocalIndex.from_vectors(ids, vectors, dtype=settings.index_dtype)
        if local_path is not None:
            index.save(local_path)
        if progress is not None:
            progress(
                len(index), len(index), "local index built" + (f" and saved to {local_path}" if local_path else "")
            )
        return BuiltIndex(index, len(index), None)
    if settings.backend == "pinecone":
        namespace = collection_namespace(settings.model_id, collection)
        index = _connect_pinecone(settings, int(np.shape(vectors)[1]), namespace, api_key, client)
        return BuiltIndex(index, index.upsert_all(ids, vectors, progress=progress), namespace)
    raise _unknown_backend(settings)


def _connect_pinecone(settings: Settings, dim: int, namespace: str, api_key: str | None, client: Any) -> PineconeIndex:
    from .pinecone import PineconeIndex

    return PineconeIndex.connect(settings, dim, namespace, api_key=api_key, client=client)


def _unknown_backend(settings: Settings) -> ValueError:
    return ValueError(f"unknown backend {settings.backend!r}; choose one of {', '.join(BACKENDS)}")
