"""Embedding snapshots: export, push, download and install at start-up; refusals fall back to local indexing.

The Hub is never contacted: ``HfApi.create_repo`` / ``upload_folder`` and ``trainer.snapshot.snapshot_download``
are replaced where trainer.snapshot(_publish) uses them. The collection is a small image folder with train and
validation subfolders, embedded by the tiny random CLIP of conftest.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from huggingface_hub import DatasetCard, metadata_load, metadata_save
from huggingface_hub.errors import OfflineModeIsEnabled

from tests.helpers.fake_hub import FakeHub
from tests.helpers.fake_pinecone import MAX_UPSERT_RECORDS, FakePinecone
from tests.helpers.images import write_image_folder
from tests.helpers.tiny_clip import build_tiny_clip
from trainer import cli
from trainer.config import Settings
from trainer.embed import Embedder
from trainer.embedding_cache import Embeddings
from trainer.snapshot import CARD_KEY, SnapshotError, SnapshotMismatch, install_snapshot, read_snapshot
from trainer.snapshot_publish import export_snapshot, push_snapshot
from trainer.workspace import load_workspace

TRAIN, HELD_OUT = 30, 10
SECRET = "hf_SnapshotSecretToken0123456789abcd"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


# ---------------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("photos")
    write_image_folder(root / "train", TRAIN, seed=0)
    write_image_folder(root / "validation", HELD_OUT, seed=1)
    return root


def settings_for(model: Path, photos: Path, cache: Path, **overrides) -> Settings:
    return Settings.from_env(
        environ={}, model_id=str(model), dataset=str(photos), eval_split="validation", cache_dir=cache, **overrides
    )


@pytest.fixture(scope="module")
def made(tiny_clip_dir, photos, tmp_path_factory):
    """A workspace indexed locally, and a snapshot of it (both splits) exported from its embeddings."""
    settings = settings_for(tiny_clip_dir, photos, tmp_path_factory.mktemp("cache-a"))
    ws = load_workspace(settings)
    folder = tmp_path_factory.mktemp("snapshots") / "snap"
    parts = [(ws.collection, ws.embeddings), (ws.eval.collection, ws.eval.embeddings)]
    export_snapshot(ws.embedder, parts, folder, command="python -m trainer index --test")
    return ws, folder


@pytest.fixture
def snapshot_copy(made, tmp_path) -> Path:
    """A copy of the snapshot for a test to damage."""
    return Path(shutil.copytree(made[1], tmp_path / "snap"))


@pytest.fixture
def forwards(monkeypatch) -> list[int]:
    """Images that reach the model in a forward pass (every embedder: load_workspace loads its own)."""
    calls: list[int] = []
    original = Embedder.embed_pixels

    def embed_pixels(self, pixels):
        calls.append(len(pixels))
        return original(self, pixels)

    monkeypatch.setattr(Embedder, "embed_pixels", embed_pixels)
    return calls


def query_results(index, vectors) -> list[list[tuple[str, float]]]:
    return [[(h.id, h.score) for h in index.query(v, top_k=10)] for v in vectors]


def edit_card(folder: Path, change) -> None:
    metadata = metadata_load(folder / "README.md")
    change(metadata[CARD_KEY])
    metadata_save(folder / "README.md", metadata)


def rewrite_split(folder: Path, change, split: str = "train") -> None:
    """Rewrite data/<split>.parquet as ``change(ids, vectors)`` returns it (list<float32> vectors, as exported)."""
    path = folder / "data" / f"{split}.parquet"
    table = pq.read_table(path)
    ids = table.column("id").to_pylist()
    vectors = np.array(table.column("vector").to_pylist(), dtype=np.float32)
    ids, vectors = change(ids, vectors)
    column = pa.array([list(map(float, v)) for v in vectors], type=pa.list_(pa.float32()))
    pq.write_table(pa.table({"id": pa.array(ids, pa.string()), "vector": column}), path)


# --------------------------------------------------------------------------------------------------- round trip
def test_a_snapshot_round_trip_gives_identical_search_results(made, tiny_clip_dir, photos, tmp_path, forwards):
    ws, folder = made
    settings = settings_for(tiny_clip_dir, photos, tmp_path / "cache-b", snapshot=str(folder))
    started = load_workspace(settings)

    assert len(started.index) == TRAIN and len(started.eval.embeddings) == HELD_OUT
    assert started.embeddings.manifest["origin"]["snapshot"] == str(folder)
    assert started.embeddings.ids == ws.embeddings.ids
    np.testing.assert_array_equal(np.asarray(started.embeddings.vectors), np.asarray(ws.embeddings.vectors))
    np.testing.assert_array_equal(np.asarray(started.eval.embeddings.vectors), np.asarray(ws.eval.embeddings.vectors))
    probes = [ws.prompt_vector("a red circle"), ws.prompt_vector("stripes"), *np.asarray(ws.embeddings.vectors[:3])]
    assert query_results(started.index, probes) == query_results(ws.index, probes)
    # Only the spot check reached the model: two images per split, not the collection.
    assert sum(forwards) == 4
    assert any("loaded from snapshot" in note for note in started.notes)

    forwards.clear()
    again = load_workspace(settings)  # the snapshot now sits in the cache: a plain hit, no download, no note
    assert again.embeddings.cache_hit and again.notes == () and forwards == []


def test_the_card_records_model_collection_splits_and_how_it_was_made(made):
    ws, folder = made
    card = DatasetCard.load(folder / "README.md")
    facts = metadata_load(folder / "README.md")[CARD_KEY]
    assert card.data.to_dict()[CARD_KEY] == facts
    assert facts["format"] == 1
    assert facts["model"] == {
        "id": ws.embedder.model_id.rsplit("/", 1)[-1],  # a local folder by its name: no home path in a public card
        "local": True,
        "revision": None,
        "commit": None,
        "dim": 16,
        "normalization": "l2",
        "dtype": "float32",
    }
    assert facts["collection"]["dataset"] == "photos0" and facts["collection"]["config"] is None
    assert facts["splits"] == {
        "train": {"file": "data/train.parquet", "count": TRAIN, "skipped": 0},
        "validation": {"file": "data/validation.parquet", "count": HELD_OUT, "skipped": 0},
    }
    made_with = facts["made_with"]
    assert made_with["command"] == "python -m trainer index --test" and made_with["date"].startswith("20")
    assert made_with["versions"]["torch"] and made_with["versions"]["pyarrow"]
    data_files = card.data.to_dict()["configs"][0]["data_files"]
    assert {f["split"]: f["path"] for f in data_files} == {
        "train": "data/train.parquet",
        "validation": "data/validation.parquet",
    }
    assert "L2-normalised" in card.text and "| train | 30 | 0 |" in card.text
    table = pq.read_table(folder / "data" / "train.parquet")
    vector_type = table.schema.field("vector").type
    assert table.column_names == ["id", "vector"]
    assert pa.types.is_list(vector_type) and pa.types.is_float32(vector_type.value_type)


def test_exporting_over_a_folder_that_is_not_a_snapshot_is_refused(made, tmp_path):
    ws, _ = made
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not an earlier snapshot"):
        export_snapshot(ws.embedder, [(ws.collection, ws.embeddings)], tmp_path / "precious")
    assert (tmp_path / "precious" / "notes.txt").read_text() == "mine"


# ---------------------------------------------------------------------------------------------------- the Hub
def uploaded_text(folder: Path) -> str:
    return "".join(p.read_bytes().decode("latin-1") for p in sorted(folder.rglob("*")) if p.is_file())


def test_push_uploads_the_card_and_the_parquet_files_to_a_dataset_repo(made, tmp_path, monkeypatch):
    hub = FakeHub(tmp_path).install(monkeypatch)
    url = push_snapshot(made[1], "snapper", SECRET)  # a bare name lands in the token owner's namespace

    assert url == "https://huggingface.co/datasets/alice/snapper"
    (created,), (uploaded,) = hub.create_calls, hub.upload_calls
    assert created == {"repo_id": "snapper", "repo_type": "dataset", "private": False, "exist_ok": False}
    assert uploaded["repo_id"] == "alice/snapper" and uploaded["repo_type"] == "dataset"
    assert uploaded["delete_patterns"] == ["data/*"]  # an older snapshot's splits never outlive its card
    files = sorted(p.relative_to(hub.uploaded).as_posix() for p in hub.uploaded.rglob("*") if p.is_file())
    assert files == ["README.md", "data/train.parquet", "data/validation.parquet"]
    assert metadata_load(hub.uploaded / "README.md")[CARD_KEY]["splits"]["train"]["count"] == TRAIN
    assert "CT_SNAPSHOT=alice/snapper" in (hub.uploaded / "README.md").read_text()
    assert hub.tokens == [SECRET, SECRET] and SECRET not in uploaded_text(hub.uploaded)
    assert "<owner>" in (made[1] / "README.md").read_text()  # the local folder is left as it was


def test_push_refuses_a_damaged_snapshot_before_creating_anything(snapshot_copy, tmp_path, monkeypatch):
    hub = FakeHub(tmp_path).install(monkeypatch)
    rewrite_split(snapshot_copy, lambda ids, v: (ids, v * 2))
    with pytest.raises(SnapshotError, match="not L2-normalised"):
        push_snapshot(snapshot_copy, "alice/snap", SECRET)
    assert hub.create_calls == [] and hub.upload_calls == []


def test_index_push_to_hub_embeds_both_splits_and_pushes_them(tiny_clip_dir, photos, tmp_path, monkeypatch, capsys):
    hub = FakeHub(tmp_path).install(monkeypatch)
    monkeypatch.setenv("HF_TOKEN", SECRET)
    argv = ["index", "--model", str(tiny_clip_dir), "--dataset", str(photos), "--split", "train"]
    argv += ["--eval-split", "validation", "--cache-dir", str(tmp_path / "cache"), "--batch-size", "8"]
    assert cli.main([*argv, "--push-to-hub", "alice/shapes-snapshot"]) == 0

    out = capsys.readouterr().out
    assert (
        "Pushed the snapshot of train (30), validation (10) to https://huggingface.co/datasets/alice/shapes-snapshot"
        in out
    )
    assert "CT_SNAPSHOT=alice/shapes-snapshot" in out
    facts = metadata_load(hub.uploaded / "README.md")[CARD_KEY]
    assert facts["splits"]["train"]["count"] == TRAIN and facts["splits"]["validation"]["count"] == HELD_OUT
    assert facts["made_with"]["command"].startswith("python -m trainer index --model ")
    assert "--push-to-hub alice/shapes-snapshot" in facts["made_with"]["command"]
    assert SECRET not in uploaded_text(hub.uploaded) and SECRET not in out


def test_index_push_to_hub_checks_the_repo_id_before_embedding(tiny_clip_dir, photos, tmp_path, forwards):
    argv = ["index", "--model", str(tiny_clip_dir), "--dataset", str(photos), "--cache-dir", str(tmp_path)]
    with pytest.raises(SystemExit, match="Invalid repository id"):
        cli.main([*argv, "--push-to-hub", "alice/bad name"])
    assert forwards == []


def test_a_hub_snapshot_is_downloaded_as_a_dataset_and_installed(made, tiny_clip_dir, photos, tmp_path, monkeypatch):
    downloaded = shutil.copytree(made[1], tmp_path / "hub-cache" / "snapshots" / COMMIT)
    calls = []

    def snapshot_download(repo_id, **kwargs):
        calls.append({"repo_id": repo_id, **kwargs})
        return str(downloaded)

    monkeypatch.setattr("trainer.snapshot.snapshot_download", snapshot_download)
    settings = settings_for(tiny_clip_dir, photos, tmp_path / "cache", snapshot="alice/snap", snapshot_revision="v1")
    ws = load_workspace(settings)

    assert len(ws.index) == TRAIN and ws.embeddings.manifest["origin"] == {
        "snapshot": "alice/snap",
        "commit": COMMIT,
        "split": "train",
    }
    (call,) = calls  # one download serves both splits
    assert call["repo_id"] == "alice/snap" and call["repo_type"] == "dataset" and call["revision"] == "v1"
    assert set(call["allow_patterns"]) == {"README.md", "data/*.parquet"}


def test_an_unreachable_snapshot_falls_back_to_local_indexing(tiny_clip_dir, photos, tmp_path, monkeypatch, caplog):
    def snapshot_download(repo_id, **kwargs):
        raise OfflineModeIsEnabled("offline")

    monkeypatch.setattr("trainer.snapshot.snapshot_download", snapshot_download)
    settings = settings_for(tiny_clip_dir, photos, tmp_path / "cache", snapshot="alice/snap")
    with caplog.at_level(logging.WARNING, logger="trainer.workspace"):
        ws = load_workspace(settings)
    assert len(ws.index) == TRAIN and "origin" not in ws.embeddings.manifest
    (note,) = ws.notes
    assert "alice/snap could not be loaded" in note and "offline mode" in note and "Indexing locally" in note
    assert note in caplog.text


# ------------------------------------------------------------------------------------------------- refusals
def assert_fell_back(ws, *phrases: str) -> None:
    """Ready with every image, embedded locally, and a note for each split that names the problem."""
    assert len(ws.index) == TRAIN and len(ws.eval.embeddings) == HELD_OUT
    assert "origin" not in ws.embeddings.manifest and not ws.embeddings.cache_hit
    refused = [n for n in ws.notes if "Indexing locally instead" in n]
    assert refused, ws.notes
    for phrase in phrases:
        assert any(phrase in n for n in refused), (phrase, ws.notes)


@pytest.mark.parametrize(
    ("change", "phrases"),
    [
        (lambda f: f["model"].update(id="openai/clip-vit-base-patch32"), ["model openai/clip-vit-base-patch32"]),
        (lambda f: f["model"].update(dim=32), ["embedding size 32 (snapshot) vs 16 (loaded)"]),
        (lambda f: f["collection"].update(dataset="frgfm/imagenette"), ["dataset frgfm/imagenette (snapshot) vs"]),
        (lambda f: f["collection"].update(config="320px"), ["dataset config 320px (snapshot) vs None"]),
        (lambda f: f["splits"].update(test=f["splits"].pop("train")), ["split validation/test (snapshot) vs train"]),
    ],
    ids=["other-model", "other-dim", "other-dataset", "other-config", "other-split"],
)
def test_a_snapshot_of_something_else_is_refused_naming_both(
    change, phrases, snapshot_copy, tiny_clip_dir, photos, tmp_path, caplog
):
    edit_card(snapshot_copy, change)
    settings = settings_for(tiny_clip_dir, photos, tmp_path / "cache", snapshot=str(snapshot_copy))
    with caplog.at_level(logging.WARNING, logger="trainer.workspace"):
        ws = load_workspace(settings)
    assert_fell_back(ws, "refused", *phrases)
    assert "tiny-clip" in " ".join(ws.notes)  # the loaded model is named too
    assert "Indexing locally instead" in caplog.text


def test_a_snapshot_made_by_another_model_is_refused(made, photos, tmp_path):
    other = build_tiny_clip(tmp_path / "other-clip", seed=1)
    settings = settings_for(other, photos, tmp_path / "cache", snapshot=str(made[1]))
    assert_fell_back(load_workspace(settings), "model tiny-clip0 (snapshot) vs other-clip (loaded)")


def test_same_name_and_size_but_other_weights_fails_the_spot_check(made, tmp_path):
    ws, _ = made
    rng = np.random.default_rng(0)
    fake = rng.normal(size=(TRAIN, ws.embedder.dim)).astype(np.float32)
    fake /= np.linalg.norm(fake, axis=1, keepdims=True)
    impostor = Embeddings(list(ws.embeddings.ids), fake, [])
    folder = export_snapshot(ws.embedder, [(ws.collection, impostor)], tmp_path / "impostor")
    with pytest.raises(SnapshotMismatch, match="made with other weights"):
        install_snapshot(read_snapshot(folder), ws.embedder, ws.collection, tmp_path / "cache")
    assert not (tmp_path / "cache").exists()  # nothing was written for a refused snapshot


def test_a_snapshot_of_another_version_of_the_collection_is_refused(snapshot_copy, made, tmp_path):
    ws, _ = made
    rewrite_split(snapshot_copy, lambda ids, v: ([f"x/{i}" for i in ids], v))
    with pytest.raises(SnapshotMismatch, match="not in"):
        install_snapshot(read_snapshot(snapshot_copy), ws.embedder, ws.collection, tmp_path / "cache")


def truncate(folder: Path) -> None:
    path = folder / "data" / "train.parquet"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def not_parquet(folder: Path) -> None:
    (folder / "data" / "train.parquet").write_bytes(b"PAR1 this is not parquet at all PAR1")


def nan(ids, vectors):
    vectors[3, 0] = np.nan
    return ids, vectors


def duplicate(ids, vectors):
    return [*ids[:-1], ids[0]], vectors


def short_rows(ids, vectors):
    return ids, vectors[:, :15] / np.linalg.norm(vectors[:, :15], axis=1, keepdims=True)


@pytest.mark.parametrize(
    ("damage", "phrase"),
    [
        (truncate, "not a readable parquet file"),
        (not_parquet, "not a readable parquet file"),
        (lambda f: rewrite_split(f, short_rows), "are not of size 16"),
        (lambda f: rewrite_split(f, nan), "NaN or infinite"),
        (lambda f: rewrite_split(f, duplicate), "duplicate ids"),
        (lambda f: rewrite_split(f, lambda ids, v: (ids[:-1], v[:-1])), "has 29 rows but the card says 30"),
        (lambda f: rewrite_split(f, lambda ids, v: (ids, v * 3)), "not L2-normalised"),
        (lambda f: (f / "data" / "train.parquet").unlink(), "is missing"),
        (lambda f: edit_card(f, lambda facts: facts.update(format=99)), "has format 99"),
        (lambda f: (f / "README.md").write_text("---\n: [unbalanced\n---\n"), "cannot be read"),
    ],
    ids=[
        "truncated",
        "not-parquet",
        "wrong-size",
        "nan",
        "duplicate-ids",
        "count",
        "norm",
        "missing",
        "format",
        "card",
    ],
)
def test_a_corrupted_snapshot_is_refused_and_the_workspace_indexes_locally(
    damage, phrase, snapshot_copy, tiny_clip_dir, photos, tmp_path, caplog
):
    damage(snapshot_copy)
    settings = settings_for(tiny_clip_dir, photos, tmp_path / "cache", snapshot=str(snapshot_copy))
    with caplog.at_level(logging.WARNING, logger="trainer.workspace"):
        ws = load_workspace(settings)
    assert_fell_back(ws, phrase)
    assert phrase in caplog.text


def test_the_header_shows_the_notes(snapshot_copy, tiny_clip_dir, photos, tmp_path):
    import app
    from trainer.workspace import WorkspaceLoader

    truncate(snapshot_copy)
    settings = settings_for(tiny_clip_dir, photos, tmp_path / "cache", snapshot=str(snapshot_copy))
    loader = WorkspaceLoader(lambda progress: load_workspace(settings, progress)).start()
    loader.wait(120)
    header = app.header_markdown(loader)
    assert "not a readable parquet file" in header and "Indexing locally instead" in header


def test_without_a_snapshot_the_owner_is_told_how_to_publish_one(tiny_clip_dir, photos, tmp_path, caplog):
    settings = settings_for(tiny_clip_dir, photos, tmp_path / "cache")
    with caplog.at_level(logging.WARNING, logger="trainer.workspace"):
        ws = load_workspace(settings)
    (note,) = ws.notes
    assert "No embedding snapshot configured: embedding 40 images locally" in note
    assert f"python -m trainer index --model {tiny_clip_dir} --dataset {photos}" in note
    assert "--split train --eval-split validation --push-to-hub <you>/<name>" in note
    assert "CT_SNAPSHOT" in note and note in caplog.text
    assert load_workspace(settings).notes == ()  # a cache hit has nothing to publish


# ----------------------------------------------------------------------------------------------------- Pinecone
def test_a_snapshot_seeds_a_pinecone_index_without_re_embedding(
    made, tiny_clip_dir, photos, tmp_path, monkeypatch, forwards
):
    ws, folder = made
    client = FakePinecone()
    monkeypatch.setattr("trainer.index.pinecone.make_client", lambda key: client)
    monkeypatch.setenv("PINECONE_API_KEY", "pcsk_test_key")
    settings = settings_for(tiny_clip_dir, photos, tmp_path / "cache", snapshot=str(folder), backend="pinecone")
    started = load_workspace(settings)

    assert sum(forwards) == 4  # the spot check only
    (store,) = client.stores.values()
    (records,) = store.namespaces.values()
    assert len(records) == TRAIN
    for id_, row in zip(ws.embeddings.ids, np.asarray(ws.embeddings.vectors), strict=True):
        np.testing.assert_array_equal(records[id_][0], row)
    upserts = [r for r in store.requests if r.op == "upsert"]
    assert upserts and all(r.detail["records"] <= MAX_UPSERT_RECORDS for r in upserts)
    probe = ws.prompt_vector("a red circle")
    assert [h.id for h in started.index.query(probe, top_k=5)] == [h.id for h in ws.index.query(probe, top_k=5)]


def test_settings_read_the_snapshot_from_the_environment():
    settings = Settings.from_env({"CT_SNAPSHOT": "alice/snap", "CT_SNAPSHOT_REVISION": "none"})
    assert settings.snapshot == "alice/snap" and settings.snapshot_revision is None
    assert Settings.from_env({}).snapshot is None
