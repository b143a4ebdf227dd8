"""The embeddings cache's key (trainer/embedding_cache.py): a new entry whenever the collection or the model changes,
the same entry whatever revision argument a local model is given. Writing, resuming and repairing entries is tested
through the indexer in tests/test_indexing.py."""

from __future__ import annotations

import os
import time

import pytest

from tests.helpers.images import write_image_folder
from trainer.data import Collection
from trainer.embedding_cache import cache_key


@pytest.fixture
def folder40(tmp_path):
    return write_image_folder(tmp_path / "forty", 40)


def test_cache_key_changes_with_the_collection(tiny_embedder, tiny_clip_dir, folder40, tmp_path):
    key = cache_key(tiny_embedder, Collection.open(str(folder40)))
    assert key.startswith(f"{tiny_clip_dir.name}__forty-")  # a readable slug, then a hash
    other_folder = write_image_folder(tmp_path / "forty2", 40)
    assert cache_key(tiny_embedder, Collection.open(str(other_folder))) != key
    os.utime(folder40 / "000.png", ns=(1, 1))  # a file rewritten in place: the old vectors must not be reused
    assert cache_key(tiny_embedder, Collection.open(str(folder40))) != key


def test_cache_key_of_a_local_model_ignores_the_revision_argument(tiny_clip_dir, folder40):
    # The CLI passes settings.model_revision ("main"), the app may pass None: a local folder has no revisions, and
    # both must find the same cache entry.
    from trainer import embed

    collection = Collection.open(str(folder40))
    keys = {cache_key(embed.load(str(tiny_clip_dir), revision), collection) for revision in (None, "main", "v2")}
    assert len(keys) == 1


def test_cache_key_changes_when_a_local_model_is_rebuilt_in_place(folder40, tmp_path):
    from tests.helpers.tiny_clip import build_tiny_clip
    from trainer import embed

    collection = Collection.open(str(folder40))
    before = cache_key(embed.load(str(build_tiny_clip(tmp_path / "model", seed=1))), collection)
    time.sleep(0.01)  # a distinct mtime even on coarse-grained filesystems
    after = cache_key(embed.load(str(build_tiny_clip(tmp_path / "model", seed=2))), collection)
    assert before != after
