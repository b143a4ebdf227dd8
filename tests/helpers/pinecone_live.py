"""A real Pinecone project for the live tests: an index they may write to, a fresh namespace per use, and
everything they made deleted afterwards, whether the tests passed or not.

``LiveProject`` takes the client as an argument, so the clean-up is tested without a key against the in-memory
double (tests/test_pinecone_live.py), and ``Settled`` makes Pinecone's eventually consistent reads safe for the
index contract suite, which reads right after it writes.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from tests.helpers.index_contract import DIM
from trainer.config import Settings
from trainer.index import Hit
from trainer.index.pinecone import PineconeIndex


def eventually(condition: Callable[[], bool], timeout: float = 90.0, interval: float = 2.0) -> None:
    """Pinecone is eventually consistent: writes show up in stats and queries after a few seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


class LiveProject:
    """An index of dimension ``DIM`` (``index_name`` if given, else a throwaway one created on first use) and the
    namespaces handed out on it. ``close()`` deletes the index if this project created it, else each namespace."""

    def __init__(self, client: Any, index_name: str | None = None) -> None:
        self.client = client
        self.name = index_name or f"ct-live-test-{secrets.token_hex(3)}"
        self.created = not client.has_index(self.name)  # decided before anything is made, so close() knows
        self.settings = Settings.from_env(backend="pinecone", pinecone_index=self.name)
        self.namespaces: list[str] = []

    def connect(self, namespace: str | None = None, dim: int = DIM, **options: Any) -> PineconeIndex:
        """A ``PineconeIndex`` on ``namespace``, or on a fresh one; either way ``close()`` deletes it."""
        namespace = namespace or f"live-test-{secrets.token_hex(4)}"
        if namespace not in self.namespaces:
            self.namespaces.append(namespace)
        return PineconeIndex.connect(self.settings, dim, namespace, client=self.client, **options)

    def close(self) -> None:
        from pinecone import NotFoundError

        if not self.client.has_index(self.name):
            return  # never created (connecting failed before): nothing to delete
        if self.created:
            self.client.delete_index(self.name, timeout=-1)
            return
        index = self.client.Index(host=self.client.describe_index(self.name).host)
        for namespace in self.namespaces:
            with contextlib.suppress(NotFoundError):  # nothing was ever written to it, so Pinecone never made it
                index.delete_namespace(name=namespace)

    def __enter__(self) -> LiveProject:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Settled:
    """A ``PineconeIndex`` whose ``add`` returns only once the new records are counted and found by a query.

    Everything else is the index's own behaviour: this only waits, so the contract suite's read-after-write checks
    test Pinecone's answers rather than its replication delay.
    """

    def __init__(self, index: PineconeIndex, count: int = 0) -> None:
        self.index = index
        self._count = count  # records written through this object (or known to be there when it was made)

    @property
    def dim(self) -> int:
        return self.index.dim

    @property
    def namespace(self) -> str:
        return self.index.namespace

    def __len__(self) -> int:
        return len(self.index)

    def add(self, ids: Sequence[str], vectors: np.ndarray, metadata: Sequence[Mapping[str, Any]] | None = None) -> None:
        self.index.add(ids, vectors, metadata)
        self._count += len(ids)
        probe = np.asarray(vectors, dtype=np.float32)[0]

        def visible() -> bool:
            found = {hit.id for hit in self.index.query(probe, top_k=self._count)}
            return len(self.index) == self._count and set(ids) <= found

        eventually(visible)

    def query(self, vector: np.ndarray, top_k: int, exclude: Iterable[str] | None = None) -> list[Hit]:
        return self.index.query(vector, top_k, exclude)

    def fetch(self, ids: Sequence[str]) -> np.ndarray:
        return self.index.fetch(ids)
