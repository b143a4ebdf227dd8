"""Start-up assembly: model + collection + embeddings + index + 2-D map, loaded in the background with progress."""

from __future__ import annotations

import dataclasses
import threading

import numpy as np
import pytest

from tests.helpers.images import write_image_folder
from trainer.config import Settings
from trainer.workspace import WorkspaceLoader, load_workspace, project_2d


@pytest.fixture
def workspace_settings(tiny_clip_dir, tmp_path):
    folder = write_image_folder(tmp_path / "images", 30)
    return Settings.from_env(
        environ={}, model_id=str(tiny_clip_dir), dataset=str(folder), eval_split=None, cache_dir=tmp_path / "cache"
    )


def test_load_workspace_indexes_the_collection_and_reports_progress(workspace_settings):
    reports: list[tuple[float, str]] = []
    ws = load_workspace(workspace_settings, lambda done, total, message: reports.append((done / total, message)))
    assert len(ws.index) == len(ws.collection) == 30
    assert ws.index.dim == ws.embedder.dim
    assert ws.eval is None and not ws.offline_bundle
    fractions = [f for f, _ in reports]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert ws.map_xy.shape == (30, 2)


def test_a_second_start_uses_the_cache(workspace_settings):
    load_workspace(workspace_settings)
    again = load_workspace(workspace_settings)
    assert again.embeddings.cache_hit


def test_a_negative_prompt_pushes_the_prior_away_from_it(workspace_settings):
    ws = load_workspace(workspace_settings)
    plain = ws.prompt_vector("a red circle")
    negative_vector = ws.embedder.embed_text(["stripes"])[0]
    pushed = ws.prompt_vector("a red circle", negative="stripes")
    assert np.isclose(np.linalg.norm(pushed), 1, atol=1e-5)
    assert pushed @ negative_vector < plain @ negative_vector
    np.testing.assert_array_equal(ws.prompt_vector("a red circle", negative="   "), plain)
    with pytest.raises(ValueError, match="Describe the concept"):
        ws.prompt_vector("  ")


def test_projection_places_new_vectors_on_the_same_map():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(500, 12)).astype(np.float32)
    projection = project_2d(vectors, limit=100, seed=0)
    assert len(projection.rows) == 100 and len(set(projection.rows.tolist())) == 100
    np.testing.assert_allclose(projection.project(vectors[projection.rows]), projection.xy, atol=1e-5)
    assert project_2d(vectors[:1], limit=100).xy.shape == (1, 2)


def test_the_loader_reports_progress_then_the_workspace():
    release = threading.Event()

    def build(progress):
        progress(1, 2, "embedding")
        release.wait(5)
        return "workspace"

    loader = WorkspaceLoader(build).start()
    for _ in range(100):
        if loader.status()[1] == 0.5:
            break
        threading.Event().wait(0.01)
    assert loader.status() == (False, 0.5, "embedding")
    with pytest.raises(RuntimeError, match="still preparing the collection"):
        loader.get()
    release.set()
    assert loader.wait(5) == "workspace"
    assert loader.status()[0]


def test_a_failed_start_is_reported_not_swallowed():
    def build(progress):
        raise FileNotFoundError("the offline bundle is missing")

    loader = WorkspaceLoader(build).start()
    with pytest.raises(RuntimeError, match="start-up failed: the offline bundle is missing"):
        loader.wait(5)
    ready, _, message = loader.status()
    assert not ready and loader.failed and "bundle is missing" in message


# ------------------------------------------------------------------------------------------------ sessions
def test_new_sessions_take_their_batch_size_and_strategy_from_the_settings(workspace_settings):
    ws = load_workspace(dataclasses.replace(workspace_settings, batch_size=7, strategy="top"))
    session = ws.new_session("a red circle", "stripes")
    assert (session.batch_size, session.strategy, len(session.batch())) == (7, "top", 7)
    assert session.classifier.prompt == "a red circle"
    assert ws.new_session("a red circle", batch_size=4, strategy="boundary").strategy == "boundary"
    with pytest.raises(ValueError, match="Describe the concept"):
        ws.new_session("   ")


def test_an_image_can_start_a_session_and_finds_itself_first(workspace_settings):
    ws = load_workspace(workspace_settings)
    query = ws.collection.ids[4]
    vector = ws.image_vector(ws.collection.image(query))
    np.testing.assert_allclose(vector, ws.vectors_of([query])[0], atol=1e-4)
    session = ws.new_session("images like it", query=vector, strategy="top", batch_size=3)
    assert session.batch()[0].id == query and session.classifier.prompt == "images like it"
    pushed = ws.new_session("images like it", "a red circle", query=vector)
    assert pushed.classifier.negative_prompt == "a red circle"


def test_a_session_continues_a_trained_classifier(workspace_settings):
    ws = load_workspace(workspace_settings)
    first = ws.new_session("a red circle", batch_size=5)
    first.label({h.id: (1.0 if k < 2 else -1.0) for k, h in enumerate(first.batch())})
    first.train_and_requery()
    again = ws.session_from(first.classifier)
    assert again.classifier is first.classifier and again.batch_size == ws.settings.batch_size
    np.testing.assert_allclose(again.classifier.weight, first.classifier.weight)


def test_a_saved_copy_is_offered_and_resumed_only_for_this_model_and_collection(workspace_settings):
    ws = load_workspace(workspace_settings)
    first = ws.new_session("a red circle", batch_size=5)
    first.label({h.id: (1.0 if k < 2 else -1.0) for k, h in enumerate(first.batch())})
    first.train_and_requery()
    saved = first.to_saved()
    assert ws.resume_offer(saved) == {"labels": 5, "checks": 0, "prompt": "a red circle"}
    again = ws.session_from_saved(saved, max_batch_size=50)
    assert again.labels == first.labels and again.classifier.prompt == "a red circle" and not again.can_undo
    checked = ws.new_session("a red circle", batch_size=5)
    checked.label({h.id: -1.0 for h in checked.audit(4)})  # checked before any training: worth resuming too
    assert ws.resume_offer(checked.to_saved()) == {"labels": 0, "checks": 4, "prompt": "a red circle"}
    assert len(ws.session_from_saved(checked.to_saved(), max_batch_size=50).audit_labels) == 4
    elsewhere = {**saved, "collection": "another collection"}
    for refused in (None, "text", {**saved, "labels": {}}, elsewhere):
        assert ws.resume_offer(refused) is None
        with pytest.raises(ValueError, match="no saved session for this model and collection"):
            ws.session_from_saved(refused, max_batch_size=50)
    with pytest.raises(ValueError, match="batch"):
        ws.session_from_saved(saved, max_batch_size=2)  # checked as untrusted input: a batch of 5 is too big here


def test_the_prior_for_a_prompt_or_an_embedding_is_pushed_away_from_a_negative_prompt(workspace_settings):
    ws = load_workspace(workspace_settings)
    np.testing.assert_allclose(ws.prior_for("a red circle", "stripes"), ws.prompt_vector("a red circle", "stripes"))
    vector = ws.vectors_of([ws.collection.ids[3]])[0]
    np.testing.assert_allclose(ws.prior_for(vector, "stripes"), ws.away_from(vector, "stripes"))
    np.testing.assert_allclose(ws.prior_for(vector, ""), vector / np.linalg.norm(vector), atol=1e-6)


def test_vectors_of_reads_the_local_copy_and_names_an_unknown_id(workspace_settings):
    ws = load_workspace(workspace_settings)
    ids = list(ws.collection.ids[:3])
    np.testing.assert_array_equal(ws.vectors_of(ids), ws.index.fetch(ids))
    with pytest.raises(KeyError, match="no item 'nope'"):
        ws.vectors_of(["nope"])


def test_thumbnails_are_packed_at_the_first_start_and_mapped_at_the_next(workspace_settings, monkeypatch):
    ws = load_workspace(workspace_settings)
    assert ws.thumbnails.packed == 30
    again = load_workspace(workspace_settings)
    monkeypatch.setattr(again.collection, "image", pytest.fail)  # a later start never decodes an image for one
    assert again.thumbnails.packed == 30 and again.thumbnails.data_uri(again.collection.ids[3]).startswith("data:")
