"""build_embeddings: correct vectors, bad files reported, cache hits without a forward, exact resume after a kill."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.images import BAD_FILES, GOOD_FILES, write_image_folder
from trainer.data import Collection
from trainer.embedding_cache import cache_key
from trainer.indexing import build_embeddings

REPO = Path(__file__).resolve().parent.parent


class Interrupted(Exception):
    pass


@pytest.fixture
def counted(tiny_embedder, monkeypatch):
    """Count model forwards: ``embed_pixels`` is the only way indexing reaches the model."""
    calls = []
    original = tiny_embedder.embed_pixels

    def embed_pixels(pixels):
        calls.append(len(pixels))
        return original(pixels)

    monkeypatch.setattr(tiny_embedder, "embed_pixels", embed_pixels)
    return calls


@pytest.fixture
def folder40(tmp_path):
    return write_image_folder(tmp_path / "forty", 40)


def test_mixed_folder_indexes_every_good_image_and_names_the_bad_ones(tiny_embedder, mixed_folder, tmp_path):
    collection = Collection.open(str(mixed_folder))
    result = build_embeddings(tiny_embedder, collection, tmp_path / "cache", batch_size=2)
    assert sorted(result.ids) == sorted(GOOD_FILES)
    assert sorted(name for name, _ in result.skipped) == sorted(BAD_FILES)
    assert result.vectors.shape == (4, tiny_embedder.dim) and result.vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(result.vectors, axis=1), 1.0, atol=1e-5)
    # The pipeline gives what the embedder gives for the same images, one by one.
    direct = np.concatenate([tiny_embedder.embed_images([collection.image(i)]) for i in result.ids])
    np.testing.assert_allclose(result.vectors, direct, atol=1e-5)


def test_second_run_is_a_cache_hit_with_no_model_forward(tiny_embedder, folder40, tmp_path, counted):
    collection = Collection.open(str(folder40))
    first = build_embeddings(tiny_embedder, collection, tmp_path / "cache", batch_size=8)
    assert not first.cache_hit and sum(counted) == 40
    counted.clear()
    messages = []
    second = build_embeddings(
        tiny_embedder,
        Collection.open(str(folder40)),
        tmp_path / "cache",
        batch_size=8,
        progress=lambda *a: messages.append(a),
    )
    assert counted == []
    assert second.cache_hit
    assert isinstance(second.vectors, np.memmap)
    assert second.ids == first.ids and np.array_equal(second.vectors, first.vectors)
    assert messages[-1][:2] == (40, 40)


def test_interrupted_run_resumes_to_exactly_the_clean_result(tiny_embedder, folder40, tmp_path, counted):
    collection = Collection.open(str(folder40))
    clean = build_embeddings(tiny_embedder, collection, tmp_path / "clean", batch_size=4, shard_size=8)

    def stop_after_two_shards(done, total, message):
        if done >= 16:  # two shards of 8 are on disk by now
            raise Interrupted

    with pytest.raises(Interrupted):
        build_embeddings(
            tiny_embedder, collection, tmp_path / "cache", batch_size=4, shard_size=8, progress=stop_after_two_shards
        )
    entry = tmp_path / "cache" / cache_key(tiny_embedder, collection)
    assert sorted(p.name for p in (entry / "shards").glob("*.npz")) == [
        "0000000000-0000000008.npz",
        "0000000008-0000000016.npz",
    ]
    assert not (entry / "manifest.json").exists()

    counted.clear()
    resumed = build_embeddings(tiny_embedder, collection, tmp_path / "cache", batch_size=4, shard_size=8)
    assert sum(counted) == 24  # only the rows after the two shards went through the model again
    assert resumed.ids == clean.ids and len(set(resumed.ids)) == 40
    assert np.array_equal(resumed.vectors, clean.vectors)
    assert not (entry / "shards").exists()


def test_resume_keeps_the_interrupted_runs_batch_size(tiny_embedder, folder40, tmp_path, counted, caplog):
    collection = Collection.open(str(folder40))

    def stop_early(done, total, message):
        if done >= 8:
            raise Interrupted

    with pytest.raises(Interrupted):
        build_embeddings(tiny_embedder, collection, tmp_path / "cache", batch_size=4, shard_size=8, progress=stop_early)
    counted.clear()
    with caplog.at_level(logging.INFO, logger="trainer.indexing"):
        result = build_embeddings(tiny_embedder, collection, tmp_path / "cache", batch_size=16, shard_size=8)
    assert set(counted) == {4}  # same batch boundaries as the first run: same vectors as one clean run
    assert "batch size 4" in caplog.text
    assert result.manifest["batch_size"] == 4


def test_kill_9_while_writing_a_shard_leaves_a_resumable_cache(tiny_clip_dir, folder40, tmp_path, tiny_embedder):
    """A real SIGKILL in the middle of a shard write (half the bytes out): the rerun must not see a broken shard."""
    cache = tmp_path / "cache"
    script = textwrap.dedent(
        f"""
        import os, signal
        import numpy as np
        from trainer import embed, indexing
        from trainer.data import Collection

        real_savez, writes = np.savez, []

        def savez_then_die(f, **arrays):
            writes.append(1)
            if len(writes) == 3:  # the third shard: write half of it, then die without cleaning up
                import io
                buffer = io.BytesIO()
                real_savez(buffer, **arrays)
                f.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
                f.flush()
                os.kill(os.getpid(), signal.SIGKILL)
            real_savez(f, **arrays)

        np.savez = savez_then_die
        embedder = embed.load({str(tiny_clip_dir)!r})
        indexing.build_embeddings(embedder, Collection.open({str(folder40)!r}), {str(cache)!r}, batch_size=4,
                                  shard_size=8)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.run([sys.executable, "-c", script], env=env, cwd=REPO, capture_output=True, timeout=120)
    assert child.returncode == -9, child.stderr.decode()[-2000:]
    collection = Collection.open(str(folder40))
    shard_dir = cache / cache_key(tiny_embedder, collection) / "shards"
    assert len(list(shard_dir.glob("*.npz"))) == 2 and list(shard_dir.glob(".*.tmp"))  # a half-written temp file

    resumed = build_embeddings(tiny_embedder, collection, cache, batch_size=4, shard_size=8)
    clean = build_embeddings(tiny_embedder, collection, tmp_path / "clean", batch_size=4, shard_size=8)
    assert resumed.ids == clean.ids
    assert np.array_equal(resumed.vectors, clean.vectors)
    assert not list(resumed.path.glob(".*.tmp")) and not shard_dir.exists()


def test_preprocessing_of_the_next_batch_overlaps_the_forward_of_this_one(
    tiny_embedder, folder40, tmp_path, monkeypatch
):
    events = []
    original_pixels, original_pre = tiny_embedder.embed_pixels, tiny_embedder.preprocess_images

    def slow_forward(pixels):
        events.append(("forward-start", time.perf_counter()))
        time.sleep(0.15)  # long enough that the worker must finish the next batch meanwhile
        out = original_pixels(pixels)
        events.append(("forward-end", time.perf_counter()))
        return out

    def preprocess(images):
        events.append(("preprocess-" + threading.current_thread().name.split("_")[0], time.perf_counter()))
        return original_pre(images)

    monkeypatch.setattr(tiny_embedder, "embed_pixels", slow_forward)
    monkeypatch.setattr(tiny_embedder, "preprocess_images", preprocess)
    build_embeddings(tiny_embedder, Collection.open(str(folder40)), tmp_path / "cache", batch_size=10)
    names = [name for name, _ in events]
    assert set(n for n in names if n.startswith("preprocess")) == {"preprocess-ct-preprocess"}  # off the main thread
    first_end = next(t for name, t in events if name == "forward-end")
    second_preprocess = [t for name, t in events if name.startswith("preprocess")][1]
    assert second_preprocess < first_end  # batch 2 was being prepared while batch 1 was in the model


def test_progress_reports_every_batch_up_to_the_total(tiny_embedder, mixed_folder, tmp_path):
    calls = []
    build_embeddings(
        tiny_embedder,
        Collection.open(str(mixed_folder)),
        tmp_path / "c",
        batch_size=2,
        progress=lambda *a: calls.append(a),
    )
    done = [d for d, _, _ in calls]
    assert done == sorted(done) and done[0] == 0 and done[-1] == 6
    assert all(total == 6 and isinstance(message, str) for _, total, message in calls)


def test_damaged_cache_entry_is_rebuilt_with_a_warning(tiny_embedder, folder40, tmp_path, counted, caplog):
    collection = Collection.open(str(folder40))
    first = build_embeddings(tiny_embedder, collection, tmp_path / "cache", batch_size=8)
    (first.path / "ids.json").write_text(json.dumps(first.ids[:-1]))  # one id lost
    counted.clear()
    with caplog.at_level(logging.WARNING, logger="trainer.embedding_cache"):
        again = build_embeddings(tiny_embedder, collection, tmp_path / "cache", batch_size=8)
    assert "inconsistent" in caplog.text and sum(counted) == 40
    assert not again.cache_hit and again.ids == first.ids and np.array_equal(again.vectors, first.vectors)


def test_manifest_describes_the_entry(tiny_embedder, mixed_folder, tmp_path):
    result = build_embeddings(tiny_embedder, Collection.open(str(mixed_folder)), tmp_path / "cache", batch_size=3)
    manifest = json.loads((result.path / "manifest.json").read_text())
    assert manifest["count"] == 4 and manifest["dim"] == 16 and manifest["skipped"] == 2
    assert manifest["model"] == tiny_embedder.model_id and manifest["dataset"] == str(mixed_folder.resolve())
    assert "created" in manifest
    assert sorted(os.listdir(result.path)) == ["ids.json", "manifest.json", "skipped.json", "vectors.npy"]


def test_an_image_the_processor_rejects_is_skipped_alone(tiny_embedder, folder40, tmp_path, monkeypatch):
    from PIL import Image

    Image.new("RGB", (7, 24)).save(folder40 / "010.png")  # the one the (patched) processor refuses
    original = tiny_embedder.preprocess_images

    def picky(images):
        if any(image.width == 7 for image in images):
            raise ValueError("cannot resize a 7-pixel-wide image")
        return original(images)

    monkeypatch.setattr(tiny_embedder, "preprocess_images", picky)
    result = build_embeddings(tiny_embedder, Collection.open(str(folder40)), tmp_path / "cache", batch_size=8)
    assert len(result) == 39 and "010.png" not in result.ids
    assert result.skipped == [("010.png", "image processor failed: ValueError: cannot resize a 7-pixel-wide image")]


def test_an_empty_collection_gives_empty_embeddings_and_a_valid_cache(tiny_embedder, tmp_path, counted):
    from datasets import Dataset
    from datasets import Image as ImageFeature

    empty = Dataset.from_dict({"image": []}).cast_column("image", ImageFeature())
    collection = Collection.from_dataset(empty, source="empty", split="train")
    first = build_embeddings(tiny_embedder, collection, tmp_path / "cache")
    second = build_embeddings(tiny_embedder, collection, tmp_path / "cache")
    assert first.vectors.shape == second.vectors.shape == (0, 16)
    assert second.cache_hit and counted == []
