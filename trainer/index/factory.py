"""Pick the vector index backend named in the settings. Each backend is imported only when chosen: the local one
needs torch, the Pinecone one the ``pinecone`` SDK, and a deployment should install only what it uses."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import VectorIndex

if TYPE_CHECKING:
    from trainer.config import Settings

__all__ = ["BACKENDS", "open_index"]

BACKENDS = ("local", "pinecone")


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
        from .pinecone import PineconeIndex

        return PineconeIndex.connect(settings, dim, namespace, api_key=api_key, client=client)
    raise ValueError(f"unknown backend {settings.backend!r}; choose one of {', '.join(BACKENDS)}")
