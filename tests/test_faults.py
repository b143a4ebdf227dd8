"""Faults a running app meets (a cache folder it cannot write, a Hub or Pinecone that times out, rate-limits or
fails) and the security rules a public Space needs, through the session and app layers. Lower layers have their own
tests: kill -9 mid-indexing (test_indexing), Hub retries and token scrubbing (test_hub), Pinecone retries
(test_pinecone_index).
"""

from __future__ import annotations

import dataclasses
import errno
import tempfile
from pathlib import Path

import httpx
import httpx2
import numpy as np
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

import app
import trainer.hub
import trainer.hub_calls
import trainer.indexing
from tests.helpers.fake_hub import SECRET, FakeHub, http_error
from tests.helpers.fake_pinecone import SETTINGS, FakePinecone, connect
from tests.helpers.images import write_image_folder
from trainer.classifier import LinearProbe
from trainer.config import Settings
from trainer.export import export_classifier
from trainer.hub import load_classifier
from trainer.hub_calls import HubError, HubRetry
from trainer.index.pinecone_calls import RetryPolicy
from trainer.workspace import WorkspaceLoader, load_workspace


def start(client: Client, prompt: str = "a red circle") -> dict:
    return client.predict(prompt, api_name="/start")


def label_round(client: Client, reply: dict, positives: int) -> dict:
    """Label the reply's batch (the first ``positives`` "it", the rest "not it") and train."""
    labels = {card["id"]: (1.0 if k < positives else -1.0) for k, card in enumerate(reply["batch"])}
    return client.predict(labels, api_name="/round")


# ------------------------------------------------------------------------------------------------ the cache folder
@pytest.mark.parametrize(
    "failure",
    [errno.EROFS, errno.EACCES, errno.ENOSPC],
    ids=["read-only file system", "no permission", "disk full"],
)
def test_an_unwritable_cache_folder_falls_back_to_memory_with_a_visible_note(
    tiny_clip_dir, tmp_path, monkeypatch, failure
):
    folder = write_image_folder(tmp_path / "images", 12)
    settings = Settings.from_env(
        environ={}, model_id=str(tiny_clip_dir), dataset=str(folder), eval_split=None, cache_dir=tmp_path / "cache"
    )
    cached = load_workspace(settings)  # the reference: a normal start that writes the cache

    def refuse(path, write):  # every cache write fails the way the OS says it does (root ignores chmod, so patch)
        raise OSError(failure, f"{errno.errorcode[failure]} (simulated)", str(path))

    monkeypatch.setattr(trainer.indexing, "atomic_write", refuse)
    settings = dataclasses.replace(settings, cache_dir=tmp_path / "other-cache")
    ws = load_workspace(settings)
    assert np.array_equal(np.asarray(ws.embeddings.vectors), np.asarray(cached.embeddings.vectors))
    assert ws.embeddings.path is None and sum("not writable" in note for note in ws.notes) == 1
    loader = WorkspaceLoader(lambda progress: ws).start()
    loader.wait(timeout=10)
    assert "not writable" in app.header_markdown(loader) and "kept in memory" in app.header_markdown(loader)


def test_any_other_cache_error_is_not_hidden(tiny_clip_dir, tmp_path, monkeypatch):
    folder = write_image_folder(tmp_path / "images", 4)
    settings = Settings.from_env(
        environ={}, model_id=str(tiny_clip_dir), dataset=str(folder), eval_split=None, cache_dir=tmp_path / "cache"
    )

    def broken(path, write):
        raise OSError(errno.EIO, "I/O error", str(path))

    monkeypatch.setattr(trainer.indexing, "atomic_write", broken)
    with pytest.raises(OSError, match="I/O error"):
        load_workspace(settings)


# ------------------------------------------------------------------------------------------------ Pinecone via the app
@pytest.fixture(scope="module")
def pinecone_app(bundle_workspace):
    """The app over the bundle, but searching a Pinecone index (the in-memory double) that can be told to fail."""
    ws = bundle_workspace.wait(timeout=600)
    client = FakePinecone()
    index = connect(client, ws.index.dim, "faults", retry=RetryPolicy(attempts=3))
    index.add(ws.embeddings.ids, np.asarray(ws.embeddings.vectors))
    loader = WorkspaceLoader(lambda progress: dataclasses.replace(ws, index=index)).start()
    loader.wait(timeout=60)
    demo = app.build_demo(loader)
    demo.queue(default_concurrency_limit=2)
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True, **app.LAUNCH_KWARGS)
    yield url, client.store(SETTINGS.pinecone_index)
    demo.close()


@pytest.mark.parametrize(
    ("status", "failures", "message"),
    # 503 and 429 are retried 3 times by us; a timeout has had the SDK's own retries and fails at once.
    [(503, 3, "503"), (429, 3, "429"), (None, 1, "did not answer in time")],
    ids=["503", "429", "timeout"],
)
def test_pinecone_failing_during_a_round_is_explained_and_keeps_every_label(pinecone_app, status, failures, message):
    url, store = pinecone_app
    visitor = Client(url, verbose=False)
    first = start(visitor)
    store.fail("query", status, times=failures)
    with pytest.raises(AppError, match=rf"(?s){message}.*[^.]\. Your labels are kept"):
        label_round(visitor, first, positives=4)
    retried = label_round(visitor, first, positives=4)  # Pinecone is back: the same round goes through
    assert retried["round"] == 2 and (retried["stats"]["positives"], retried["stats"]["negatives"]) == (4, 6)


def test_pinecone_down_at_search_time_is_explained(pinecone_app):
    url, store = pinecone_app
    store.fail("query", 503, times=3)
    with pytest.raises(AppError, match="503"):
        start(Client(url, verbose=False))


# ------------------------------------------------------------------------------------------------ the Hub via the app
@pytest.fixture
def no_waiting(monkeypatch):
    # Every back-off capped at 0 s (the schedule itself is tested in test_hub). Not time.sleep: the server and the
    # client poll with it, and a no-op there turns their waits into busy loops.
    monkeypatch.setattr(trainer.hub_calls, "HUB_RETRY", HubRetry(backoff_s=0))


@pytest.mark.parametrize(
    "failures",
    [
        [http_error(503, "busy")] * 3,  # 429 takes the same path (test_hub has both)
        [httpx2.ReadTimeout("read timed out")] * 3,  # huggingface_hub's own HTTP client
    ],
    ids=["503", "timeout"],
)
def test_a_push_that_keeps_failing_is_explained_and_the_session_goes_on(
    app_url, tmp_path, monkeypatch, no_waiting, failures, hub_online
):
    monkeypatch.delenv("SPACE_ID", raising=False)
    monkeypatch.setattr(trainer.hub_calls, "get_token", lambda: SECRET)
    hub = FakeHub(tmp_path).install(monkeypatch)
    hub.create_failures = list(failures)
    visitor = Client(app_url, verbose=False)
    second = label_round(visitor, start(visitor), positives=3)
    with pytest.raises(AppError, match=r"after 3 attempts") as caught:
        visitor.predict("alice/red-circles", False, False, api_name="/push")
    assert SECRET not in str(caught.value) and len(hub.create_calls) == 3
    stats = label_round(visitor, second, positives=0)["stats"]  # nothing was lost
    assert (stats["labels"], stats["positives"], stats["negatives"]) == (20, 3, 17)


def test_a_hub_download_that_keeps_failing_is_explained(monkeypatch, no_waiting):
    calls = []

    def download(*args, **kwargs):
        calls.append(args)
        raise http_error(503, "busy")

    monkeypatch.setattr(trainer.hub, "fetch_file", download)
    with pytest.raises(HubError, match=r"busy or unavailable \(HTTP 503\) after 3 attempts"):
        load_classifier("someone/red-circles", local=False)
    assert len(calls) == 3


# ------------------------------------------------------------------------------------------------ security
@pytest.fixture
def export(tmp_path) -> Path:
    probe = LinearProbe.from_prompt(np.ones(16, np.float32) / 4, scale=1.0, bias=0.0, base_model="x/clip")
    return export_classifier(probe, tmp_path / "export")


@pytest.mark.parametrize("source", ["{export}", "/etc", "~/.cache", "./assets", "..\\secrets", "a/../../etc"])
def test_a_space_never_reads_local_folders_for_a_visitor(export, monkeypatch, source):
    source = source.format(export=export)
    monkeypatch.setattr(trainer.hub, "fetch_file", pytest.fail)  # nothing may be fetched for these either
    with pytest.raises(HubError, match=r"turned off here|repository id"):
        load_classifier(source, local=False)
    assert load_classifier(export).dim == 16  # run locally, the same folder loads


def test_on_a_space_a_name_that_is_also_a_local_folder_means_the_hub_repo(monkeypatch):
    asked = []

    def download(repo_id, filename, *args, **kwargs):
        asked.append(repo_id)
        raise http_error(404, "not found")

    monkeypatch.setattr(trainer.hub, "fetch_file", download)
    assert Path("tests").is_dir()  # run from the repository root, as pytest is
    with pytest.raises(HubError):
        load_classifier("tests", local=False)
    assert asked == ["tests"]


def test_the_app_on_a_space_refuses_a_folder_path(app_url, export, monkeypatch):
    monkeypatch.setenv("SPACE_ID", "someone/concept-trainer")
    with pytest.raises(AppError, match="turned off here"):
        Client(app_url, verbose=False).predict(str(export), api_name="/load")


def test_an_export_stays_in_its_temporary_folder_whatever_the_prompt(app_url):
    visitor = Client(app_url, verbose=False)
    label_round(visitor, start(visitor, prompt="../../../../tmp/owned/.."), positives=10)
    temp = Path(tempfile.gettempdir()).resolve()
    for path in visitor.predict(api_name="/export"):
        assert temp in Path(path).resolve().parents
    assert not Path("/tmp/owned").exists()


def test_secrets_in_the_environment_never_reach_the_page(app_url, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", SECRET)
    monkeypatch.setenv("PINECONE_API_KEY", "pcsk_2Hq7_secretsecretsecret")
    for route in ("", "config", "gradio_api/info"):
        body = httpx.get(app_url + route, timeout=30).text
        assert SECRET not in body and "pcsk_2Hq7" not in body


def test_uploads_over_the_limit_are_refused(app_url):
    big = b"\0" * (6 * 1024 * 1024)  # MAX_UPLOAD is 5 MB
    response = httpx.post(app_url + "gradio_api/upload", files={"files": ("big.bin", big)}, timeout=60)
    assert response.status_code == 413
    small = httpx.post(app_url + "gradio_api/upload", files={"files": ("small.bin", b"ok")}, timeout=60)
    assert small.status_code == 200
