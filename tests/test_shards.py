"""Embedding shards (trainer/shards.py): which row ranges are still to embed, torn writes, and shards that belong to
another model or collection. The Ray pipeline that writes them is tested in tests/test_ray_indexing.py."""

from __future__ import annotations

import os

import numpy as np
import pytest

from trainer.shards import Shard, ShardStore, pending_ranges


def test_pending_ranges_fill_the_gaps_between_written_shards():
    written = [Shard(0, 10, 10, (), "a"), Shard(30, 40, 9, (("x", "bad"),), "b")]
    assert pending_ranges(written, 55, 8) == [(10, 18), (18, 26), (26, 30), (40, 48), (48, 55)]
    assert pending_ranges([], 5, 8) == [(0, 5)]
    assert pending_ranges([Shard(0, 5, 5, (), "a")], 5, 8) == []


def test_a_torn_shard_is_deleted_and_its_rows_pending_again(tmp_path):
    store = ShardStore(tmp_path / "shards")
    vectors = np.eye(3, 4, dtype=np.float32)
    store.write(0, 3, ["a", "b", "c"], vectors, [], key="k")
    store.write(3, 6, ["d"], vectors[:1], [("e", "corrupt"), ("f", "empty")], key="k")
    (tmp_path / "shards" / "0000000006-0000000009.parquet").write_bytes(b"PAR1 torn")
    (tmp_path / "shards" / ".0000000009-0000000012.parquet.1234abcd.tmp").write_bytes(b"half")
    shards = store.scan("k", 12)
    assert [(s.start, s.stop, s.count) for s in shards] == [(0, 3, 3), (3, 6, 1)]
    assert shards[1].skipped == (("e", "corrupt"), ("f", "empty"))
    assert sorted(os.listdir(tmp_path / "shards")) == ["0000000000-0000000003.parquet", "0000000003-0000000006.parquet"]
    ids, read = store.read(shards[0])
    assert ids == ["a", "b", "c"] and np.array_equal(read, vectors)
    assert pending_ranges(shards, 12, 8) == [(6, 12)]


def test_shards_of_another_model_or_collection_are_refused(tmp_path):
    store = ShardStore(tmp_path)
    store.write(0, 1, ["a"], np.ones((1, 2), np.float32) / np.sqrt(2), [], key="model-a")
    with pytest.raises(ValueError, match="belongs to another model or collection"):
        store.scan("model-b", 1)
