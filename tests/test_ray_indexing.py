"""``python -m trainer index --engine ray``: the local indexer's outputs from a Ray Data pipeline, resumable after a
kill, into a local index or Pinecone; bad images named as locally. Ray runs on this machine with 2 CPUs (one
session-wide instance, ``ray_cluster``); the collection is a slice of the offline bundle and its real tiny model."""

from __future__ import annotations

import ast
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.helpers.images import BAD_FILES, GOOD_FILES
from trainer import cli
from trainer.config import BUNDLE_DATASET, BUNDLE_MODEL
from trainer.index.local import LocalIndex

REPO = Path(__file__).resolve().parent.parent
SLICE_ROWS = 192  # of the bundle's 2,500 training images: enough for many shards, quick on 2 cores


def index_argv(model: str, dataset: Path, cache: Path, out: Path, *extra: str) -> list[str]:
    return ["index", "--model", model, "--dataset", str(dataset), "--cache-dir", str(cache), "--out", str(out), *extra]


def assert_same_index(ours: LocalIndex, reference: LocalIndex) -> None:
    assert ours.ids == reference.ids
    np.testing.assert_allclose(ours.vectors, reference.vectors, atol=1e-4, rtol=0)


@pytest.fixture(scope="module")
def bundle_slice(tmp_path_factory) -> Path:
    """The first rows of the bundle's training split, as a local parquet dataset (its schema kept)."""
    folder = tmp_path_factory.mktemp("shapes-slice")
    table = pq.read_table(Path(BUNDLE_DATASET) / "train.parquet").slice(0, SLICE_ROWS)
    pq.write_table(table, folder / "train.parquet")
    return folder


@pytest.fixture(scope="module")
def local_reference(bundle_slice, tmp_path_factory) -> LocalIndex:
    """The slice indexed by today's indexer (``--engine local``, the default)."""
    work = tmp_path_factory.mktemp("local")
    assert cli.main(["-q", *index_argv(BUNDLE_MODEL, bundle_slice, work / "cache", work / "index")]) == 0
    return LocalIndex.load(work / "index")


@pytest.fixture(scope="module")
def ray_indexed(ray_cluster, bundle_slice, tmp_path_factory) -> tuple[Path, Path, Path, str]:
    """The slice indexed on Ray once: (its cache folder, its shard folder, its index folder, the command's summary).
    The shards have a folder of their own (--shard-dir), as on a cluster's shared storage."""
    work = tmp_path_factory.mktemp("ray")
    argv = index_argv(BUNDLE_MODEL, bundle_slice, work / "cache", work / "index", "--engine", "ray")
    summary = run_cli([*argv, "--shard-size", "48", "--batch-size", "16", "--shard-dir", str(work / "shards")])
    return work / "cache", work / "shards", work / "index", summary


def run_cli(argv: list[str]) -> str:
    """Run the command in this process (it joins the session's Ray) and return what it printed."""
    import contextlib
    import io

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert cli.main(["-q", *argv]) == 0
    return printed.getvalue()


def shard_files(root: Path) -> dict[str, tuple[int, int]]:
    """Every shard under ``root``: name -> (inode, mtime in ns), which change if the file is rewritten."""
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in root.glob("*/ray-shards/*.parquet")}


# -------------------------------------------------------------------------------------------- same index as local
def test_the_bundle_indexed_on_ray_equals_the_local_indexers_index(ray_indexed, local_reference):
    _, shards, out, summary = ray_indexed
    assert f"Indexed {SLICE_ROWS} images (dim {local_reference.dim})" in summary and "on Ray" in summary, summary
    assert "Skipped: none" in summary
    assert_same_index(LocalIndex.load(out), local_reference)
    assert json.loads((out / "source.json").read_text())["engine"] == "ray"
    assert len(shard_files(shards)) == 4  # 192 rows in shards of 48


def test_after_a_ray_run_the_local_indexer_finds_a_cache_hit(ray_indexed, bundle_slice, local_reference, tmp_path):
    cache, _, _, _ = ray_indexed
    summary = run_cli(index_argv(BUNDLE_MODEL, bundle_slice, cache, tmp_path / "index"))
    assert "Cache hit" in summary and "no model forward" in summary
    assert_same_index(LocalIndex.load(tmp_path / "index"), local_reference)


def test_bad_images_of_every_mode_are_converted_or_named_as_locally(ray_cluster, tiny_clip_dir, mixed_folder, tmp_path):
    local, ray = tmp_path / "local", tmp_path / "ray"
    run_cli(index_argv(str(tiny_clip_dir), mixed_folder, local / "cache", local / "index"))
    summary = run_cli(index_argv(str(tiny_clip_dir), mixed_folder, ray / "cache", ray / "index", "--engine", "ray"))
    assert "Indexed 4 images" in summary and "Skipped 2 undecodable image(s):" in summary
    assert all(f"  {name}: " in summary for name in BAD_FILES), summary
    ours = LocalIndex.load(ray / "index")
    assert sorted(ours.ids) == sorted(GOOD_FILES)  # grey, palette, RGBA and 16-bit all converted to RGB
    assert_same_index(ours, LocalIndex.load(local / "index"))
    skipped_file = next((ray / "cache").glob("*/ray-shards/skipped.json"))
    assert sorted(name for name, _ in json.loads(skipped_file.read_text())) == sorted(BAD_FILES)


# ------------------------------------------------------------------------------------------------------- resume
def test_a_killed_run_resumes_without_embedding_anything_twice(ray_cluster, bundle_slice, local_reference, tmp_path):
    cache, out = tmp_path / "cache", tmp_path / "index"
    argv = [*index_argv(BUNDLE_MODEL, bundle_slice, cache, out, "--engine", "ray"), "--shard-size", "8"]
    total_shards = SLICE_ROWS // 8
    # A separate driver on the same Ray cluster, killed (SIGKILL: no clean-up of any kind) once a shard is written.
    child = subprocess.Popen(
        [sys.executable, "-m", "trainer", "-q", *argv, "--ray-address", ray_cluster, "--batch-size", "8"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 300
        while not shard_files(cache) and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        child.send_signal(signal.SIGKILL)
        _, stderr = child.communicate(timeout=60)
    before = settled(cache)
    assert 0 < len(before) < total_shards, f"the kill came too late or too early: {len(before)} shards\n{stderr}"
    assert not out.exists()

    summary = run_cli([*argv, "--batch-size", "8"])
    after = shard_files(cache)
    assert all(after[name] == stamp for name, stamp in before.items()), "a shard written before the kill changed"
    assert len(after) == total_shards
    resumed = 8 * len(before)
    assert f"Embedded {SLICE_ROWS - resumed} images on Ray" in summary, summary  # nothing embedded twice
    assert f"{resumed} row(s) resumed from earlier shards" in summary
    assert_same_index(LocalIndex.load(out), local_reference)

    again = run_cli([*argv, "--batch-size", "8"])  # a rerun after success: the cache entry, as with --engine local
    assert "Cache hit: no model forward, no Ray" in again


def settled(cache: Path) -> dict[str, tuple[int, int]]:
    """The shards once no write of the killed driver's workers is still landing (Ray stops them within seconds)."""
    listing, stable_since = shard_files(cache), time.monotonic()
    while time.monotonic() - stable_since < 3:
        time.sleep(0.2)
        now = shard_files(cache)
        if now != listing:
            listing, stable_since = now, time.monotonic()
    return listing


# ------------------------------------------------------------------------------------------------------ Pinecone
def test_pinecone_upserts_come_from_a_ray_stage_in_batches_within_the_limits(
    ray_indexed, bundle_slice, local_reference, tmp_path, monkeypatch
):
    from tests.helpers.remote_pinecone import RemotePinecone
    from trainer.index.factory import collection_namespace

    _, shards, _, _ = ray_indexed  # every shard is written: with an empty cache, this run only upserts, on Ray
    remote = RemotePinecone()
    monkeypatch.setenv("PINECONE_API_KEY", "pc-test")
    monkeypatch.setattr("trainer.index.pinecone.make_client", lambda key: remote)  # the driver's early check
    monkeypatch.setattr("trainer.ray_indexing.pinecone_client", lambda: remote)  # shipped to the Ray writers
    argv = [*index_argv(BUNDLE_MODEL, bundle_slice, tmp_path / "cache", tmp_path / "unused"), "--engine", "ray"]
    argv += ["--shard-dir", str(shards)]
    summary = run_cli([*argv, "--backend", "pinecone"])
    assert "Every row was in a shard already" in summary
    assert f"{SLICE_ROWS} record(s) written, 0 already there (from 4 shard(s), on Ray)" in summary

    fake = remote.snapshot()
    store = fake.store("concept-trainer")
    from trainer.data import Collection

    namespace = collection_namespace(BUNDLE_MODEL, Collection.open(str(bundle_slice)))
    records = store.namespaces[namespace]
    assert sorted(records) == sorted(local_reference.ids)
    stored = np.stack([records[i][0] for i in local_reference.ids])
    np.testing.assert_allclose(stored, local_reference.vectors, atol=1e-4, rtol=0)
    assert all(0 < r.detail["records"] <= 1000 for r in store.requests_of("upsert"))

    again = run_cli([*argv, "--backend", "pinecone"])
    assert f"0 record(s) written, {SLICE_ROWS} already there" in again  # resumable: present ids are skipped


# ---------------------------------------------------------------------------------------------------- the command
def test_importing_the_cli_and_indexing_locally_never_imports_ray(tiny_clip_dir, mixed_folder, tmp_path):
    argv = index_argv(str(tiny_clip_dir), mixed_folder, tmp_path / "cache", tmp_path / "index", "--engine", "local")
    code = f"import sys\nfrom trainer import cli\nassert cli.main({['-q', *argv]!r}) == 0\nprint(sorted(sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    modules = ast.literal_eval(done.stdout.splitlines()[-1])
    assert "torch" in modules and not [m for m in modules if m == "ray" or m.startswith("ray.")]


def test_ray_flags_without_the_ray_engine_are_refused(tmp_path):
    with pytest.raises(SystemExit, match=r"--num-gpus, --shard-dir only apply to --engine ray"):
        cli.main(["index", "--num-gpus", "1", "--shard-dir", str(tmp_path)])


def test_a_bad_shard_size_is_refused_naming_the_flag(tmp_path):
    with pytest.raises(SystemExit, match=r"--shard-size\) must be a positive integer; got 0"):
        cli.main(
            index_argv(BUNDLE_MODEL, tmp_path, tmp_path / "c", tmp_path / "i", "--engine", "ray", "--shard-size", "0")
        )


def test_asking_for_more_gpus_than_the_cluster_has_says_how_many_it_has(ray_cluster, bundle_slice, tmp_path):
    argv = index_argv(BUNDLE_MODEL, bundle_slice, tmp_path / "cache", tmp_path / "index", "--engine", "ray")
    with pytest.raises(SystemExit, match=r"--num-gpus 2: the Ray cluster has 0 GPU\(s\)"):
        cli.main([*argv, "--num-gpus", "2"])
