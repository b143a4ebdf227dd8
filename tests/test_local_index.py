"""LocalIndex: the shared index contract, plus what only an in-memory, file-backed index can promise."""

from __future__ import annotations

import json
import multiprocessing
import os

import numpy as np
import pytest

from tests.helpers.index_contract import DIM, IndexContract, unit_rows
from trainer.index.local import LocalIndex, scan_sliced, top_rows


class TestLocalIndexContract(IndexContract):
    def make_index(self, dim):
        return LocalIndex(dim)

    def reopen(self, index, tmp_path):
        index.save(tmp_path / "index")
        return LocalIndex.load(tmp_path / "index")


class TestSlicedScanLocalIndexContract(TestLocalIndexContract):
    """Every float32 scan sliced over threads, as in a collection past ``PARALLEL_BYTES``: the same contract."""

    @pytest.fixture(autouse=True)
    def _every_scan_sliced(self, monkeypatch):
        monkeypatch.setattr("trainer.index.local.PARALLEL_BYTES", 0)


class TestFloat16LocalIndexContract(IndexContract):
    def make_index(self, dim):
        return LocalIndex(dim, dtype="float16")

    def reopen(self, index, tmp_path):
        index.save(tmp_path / "index")
        return LocalIndex.load(tmp_path / "index", mmap=False)


def test_float16_storage_halves_memory_and_keeps_the_ranking():
    vectors = unit_rows(2000, dim=64)
    ids = [str(i) for i in range(2000)]
    full = LocalIndex.from_vectors(ids, vectors)
    half = LocalIndex.from_vectors(ids, vectors, dtype="float16")
    assert half.vectors.nbytes * 2 == full.vectors.nbytes
    query = unit_rows(1, dim=64, seed=11)[0]
    top_full = [h.id for h in full.query(query, 20)]
    top_half = [h.id for h in half.query(query, 20)]
    assert len(set(top_full) & set(top_half)) >= 18  # ties within float16 rounding may swap a neighbour or two


def test_unnormalised_vectors_are_refused_unless_asked_to_normalise():
    raw = unit_rows(3) * 2
    with pytest.raises(ValueError, match="L2-normalised"):
        LocalIndex.from_vectors(["a", "b", "c"], raw)
    index = LocalIndex.from_vectors(["a", "b", "c"], raw, normalize=True)
    np.testing.assert_allclose(np.linalg.norm(index.fetch(["a", "b", "c"]), axis=1), 1, atol=1e-6)


def test_load_memory_maps_the_vectors(tmp_path):
    LocalIndex.from_vectors(["a", "b"], unit_rows(2)).save(tmp_path / "ix")
    loaded = LocalIndex.load(tmp_path / "ix")
    assert isinstance(loaded.vectors.base, np.memmap) or isinstance(loaded.vectors, np.memmap)


def test_resave_replaces_the_old_files_and_keeps_one_set(tmp_path):
    index = LocalIndex.from_vectors(["a"], unit_rows(1))
    index.save(tmp_path / "ix")
    index.add(["b"], unit_rows(1, seed=1))
    index.save(tmp_path / "ix")
    assert len(LocalIndex.load(tmp_path / "ix")) == 2
    assert len(list((tmp_path / "ix").glob("vectors-*.npy"))) == 1


def test_a_crash_mid_save_leaves_the_previous_index_loadable(tmp_path, monkeypatch):
    index = LocalIndex.from_vectors(["a", "b"], unit_rows(2))
    index.save(tmp_path / "ix")
    index.add(["c"], unit_rows(1, seed=4))
    real_replace = os.replace

    def crash_on_manifest(src, dst):
        if str(dst).endswith("manifest.json"):
            raise OSError("disk full")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash_on_manifest)
    with pytest.raises(OSError, match="disk full"):
        index.save(tmp_path / "ix")
    monkeypatch.setattr(os, "replace", real_replace)
    assert LocalIndex.load(tmp_path / "ix").ids == ["a", "b"]
    assert not list((tmp_path / "ix").glob(".*.tmp"))


def test_a_damaged_index_is_refused_with_a_rebuild_hint(tmp_path):
    LocalIndex.from_vectors(["a", "b"], unit_rows(2)).save(tmp_path / "ix")
    manifest = json.loads((tmp_path / "ix" / "manifest.json").read_text())
    (tmp_path / "ix" / manifest["files"]["ids"]).write_text('["a"]')
    with pytest.raises(ValueError, match="rebuild"):
        LocalIndex.load(tmp_path / "ix")
    with pytest.raises(FileNotFoundError, match="no index"):
        LocalIndex.load(tmp_path / "missing")


def test_metadata_round_trips(tmp_path):
    index = LocalIndex.from_vectors(["a", "b"], unit_rows(2), [{"label": "cat"}, {"label": "dog"}])
    index.save(tmp_path / "ix")
    assert LocalIndex.load(tmp_path / "ix").metadata(["b"]) == [{"label": "dog"}]


def test_unknown_dtype_lists_the_choices():
    with pytest.raises(ValueError, match="float32, float16"):
        LocalIndex(DIM, dtype="int8")


# ----------------------------------------------------------------------------------------------- memory
def test_a_read_only_memory_map_is_shared_not_copied(tmp_path):
    """A cache entry's vectors (np.load with mmap_mode="r") back the index as they are: no second copy in memory."""
    np.save(tmp_path / "v.npy", unit_rows(50))
    mapped = np.load(tmp_path / "v.npy", mmap_mode="r")
    index = LocalIndex.from_vectors([str(i) for i in range(50)], mapped)
    assert np.shares_memory(index.vectors, mapped)
    index.add(["new"], unit_rows(1, seed=3))  # growing moves the rows into memory; the file is never written
    assert len(index) == 51 and not np.shares_memory(index.vectors, mapped)
    assert np.array_equal(np.load(tmp_path / "v.npy"), unit_rows(50))


def test_a_writable_array_is_copied_once_so_later_changes_do_not_reach_the_index():
    vectors = unit_rows(10)
    index = LocalIndex.from_vectors([str(i) for i in range(10)], vectors)
    assert not np.shares_memory(index.vectors, vectors)
    vectors[:] = 0
    assert np.allclose(np.linalg.norm(index.vectors, axis=1), 1)
    read_only_view = unit_rows(10).view()
    read_only_view.flags.writeable = False  # its owner can still write: a view is no promise
    assert not np.shares_memory(LocalIndex.from_vectors(list("abcdefghij"), read_only_view).vectors, read_only_view)


def test_norm_and_finiteness_checks_cover_every_chunk_of_a_large_array(monkeypatch):
    monkeypatch.setattr("trainer.index.CHECK_ROWS", 7)
    vectors = unit_rows(30)
    vectors[23, 0] = np.nan
    with pytest.raises(ValueError, match=r"1 vector\(s\) contain NaN or inf \(first at row 23\)"):
        LocalIndex.from_vectors([str(i) for i in range(30)], vectors)


def test_sample_draws_distinct_ids_uniformly_from_the_rows_not_excluded():
    ids = [f"item-{i:03d}" for i in range(100)]
    index = LocalIndex.from_vectors(ids, unit_rows(100))
    exclude = set(ids[:30])
    counts = dict.fromkeys(ids, 0)
    rng = np.random.default_rng(0)
    for _ in range(2000):
        drawn = index.sample(5, rng, exclude=exclude)
        assert len(drawn) == 5 and len(set(drawn)) == 5 and not exclude & set(drawn)
        for i in drawn:
            counts[i] += 1
    free = np.array([counts[i] for i in ids[30:]])
    # 10,000 draws over 70 rows: about 143 each; a row drawn under 90 or over 200 times would not be uniform.
    assert free.min() > 90 and free.max() < 200


def test_sample_returns_what_is_left_when_little_is_and_refuses_a_bad_k():
    ids = [f"item-{i:03d}" for i in range(20)]
    index = LocalIndex.from_vectors(ids, unit_rows(20))
    rng = np.random.default_rng(1)
    assert sorted(index.sample(5, rng, exclude=[*ids[:18], "not-in-the-index"])) == ids[18:]
    assert index.sample(5, rng, exclude=ids) == []
    assert index.sample(0, rng) == []
    assert len(set(index.sample(20, rng))) == 20
    with pytest.raises(ValueError, match="non-negative integer"):
        index.sample(-1, rng)


def sliced_scans(monkeypatch) -> list[int]:
    """Every scan sliced from now on; returns the list that counts the sliced scans (their rows)."""
    monkeypatch.setattr("trainer.index.local.PARALLEL_BYTES", 0)
    calls: list[int] = []

    def counted(rows, query):
        calls.append(len(rows))
        return scan_sliced(rows, query)

    monkeypatch.setattr("trainer.index.local.scan_sliced", counted)
    return calls


def test_a_large_scan_is_sliced_over_threads_and_gives_einsums_floats_row_for_row(monkeypatch):
    vectors = unit_rows(1001)  # uneven slices
    index = LocalIndex.from_vectors([str(i) for i in range(1001)], vectors)
    query = unit_rows(1, seed=5)[0]
    whole, best = index.scores_all(query), index.query(query, 50, exclude={"3", "700"})
    calls = sliced_scans(monkeypatch)
    assert np.array_equal(index.scores_all(query), whole) and index.query(query, 50, exclude={"3", "700"}) == best
    assert calls == [1001, 1001]


def test_a_forked_child_scans_with_threads_of_its_own(monkeypatch):
    """A forked child has none of its parent's threads: a pool the parent started must not be waited on there."""
    sliced_scans(monkeypatch)
    index = LocalIndex.from_vectors([str(i) for i in range(300)], unit_rows(300))
    query = unit_rows(1, seed=5)[0]
    expected = index.scores_all(query)  # the parent's pool is started
    receive, send = multiprocessing.Pipe(duplex=False)
    child = multiprocessing.get_context("fork").Process(target=lambda: send.send(index.scores_all(query)))
    child.start()
    try:
        assert receive.poll(30), "the forked child's scan never finished"
        assert np.array_equal(receive.recv(), expected)
    finally:
        child.join(5)
        if child.is_alive():
            child.kill()


@pytest.mark.parametrize("k", [0, 1, 7, 499, 500])
def test_top_rows_are_the_k_best_best_first_skipping_nothing_and_ranking_minus_inf_last(k):
    scores = np.random.default_rng(3).standard_normal(500).astype(np.float32)
    scores[[4, 90]] = -np.inf  # what query writes over excluded rows
    scores[[10, 11, 12]] = scores.max() + 1  # ties at the top: all three come first, in some order
    best = top_rows(scores, k)
    assert len(best) == k == len(set(best.tolist()))
    assert np.array_equal(scores[best], np.sort(scores)[::-1][:k])  # the k largest, best first
    if k >= 3:
        assert set(best[:3].tolist()) == {10, 11, 12}
