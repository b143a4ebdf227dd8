"""Source selection: the configured model and collection or the offline bundle, and opening what the settings name."""

from __future__ import annotations

import dataclasses
import logging
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.helpers.images import write_image_folder, write_parquet_dataset
from trainer import sources
from trainer.config import Settings
from trainer.sources import open_collection, resolve_source


def test_open_collection_reads_dataset_and_split_from_settings(tmp_path):
    folder = write_parquet_dataset(tmp_path / "shapes")
    settings = Settings(model_id="unused", dataset=str(folder), dataset_config=None, split="validation")
    assert len(open_collection(settings)) == 3
    assert len(open_collection(settings, "train")) == 5


@pytest.fixture
def bundle(tmp_path, monkeypatch, tiny_clip_dir):
    """Point the bundle paths at a tiny model and a dataset folder, as they will be once assets/ lands."""
    dataset = write_parquet_dataset(tmp_path / "shapes")
    monkeypatch.setattr(sources, "BUNDLE_MODEL", str(tiny_clip_dir))
    monkeypatch.setattr(sources, "BUNDLE_DATASET", str(dataset))
    return str(tiny_clip_dir), str(dataset)


def test_unreachable_hub_falls_back_to_the_bundle_and_says_why(bundle, monkeypatch, caplog):
    monkeypatch.setattr(sources, "hub_reachable", lambda timeout=3.0: False)
    with caplog.at_level(logging.WARNING, logger="trainer.sources"):
        resolved = resolve_source(Settings())
    assert (resolved.model_id, resolved.dataset) == bundle
    assert resolved.source == "bundle" and resolved.dataset_config is None
    assert "not reachable" in caplog.text and "offline bundle" in caplog.text
    assert "openai/clip-vit-base-patch32" in caplog.text


def test_reachable_hub_keeps_the_real_defaults(bundle, monkeypatch):
    monkeypatch.setattr(sources, "hub_reachable", lambda timeout=3.0: True)
    assert resolve_source(Settings()) == Settings()


def test_source_hub_without_the_hub_is_a_clear_error(bundle, monkeypatch):
    monkeypatch.setattr(sources, "hub_reachable", lambda timeout=3.0: False)
    with pytest.raises(RuntimeError, match=r"not reachable.*CT_SOURCE=auto"):
        resolve_source(Settings(source="hub"))


def test_source_bundle_never_asks_the_hub(bundle, monkeypatch):
    monkeypatch.setattr(sources, "hub_reachable", lambda timeout=3.0: pytest.fail("the Hub was probed"))
    assert resolve_source(Settings(source="bundle")).model_id == bundle[0]


def test_local_model_and_dataset_need_no_hub(bundle, monkeypatch, tmp_path):
    monkeypatch.setattr(sources, "hub_reachable", lambda timeout=3.0: pytest.fail("the Hub was probed"))
    settings = Settings(model_id=bundle[0], dataset=str(write_image_folder(tmp_path / "imgs", 1)))
    assert resolve_source(settings) == settings


def test_unknown_source_lists_the_choices():
    with pytest.raises(ValueError, match="choose one of auto, bundle, hub"):
        resolve_source(Settings(source="cloud"))


def test_missing_bundle_is_named(monkeypatch, tmp_path):
    monkeypatch.setattr(sources, "hub_reachable", lambda timeout=3.0: False)
    monkeypatch.setattr(sources, "BUNDLE_MODEL", str(tmp_path / "no-model"))
    with pytest.raises(FileNotFoundError, match=r"offline bundle is missing.*no-model"):
        resolve_source(Settings())


def test_offline_mode_means_unreachable_without_any_request(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: pytest.fail("a request was made"))
    assert sources.hub_reachable() is False


def test_network_failure_means_unreachable(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)

    def refuse(*args, **kwargs):
        raise urllib.error.URLError(OSError("connection refused"))

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    assert sources.hub_reachable(timeout=0.1) is False


def test_settings_replace_keeps_other_fields(bundle, monkeypatch):
    # The fallback swaps model and dataset only: engine settings (batch size, strategy, cache) are the user's.
    monkeypatch.setattr(sources, "hub_reachable", lambda timeout=3.0: False)
    settings = Settings(batch_size=7, strategy="top", cache_dir=Path("/x"))
    resolved = resolve_source(settings)
    changed = {f.name for f in dataclasses.fields(Settings) if getattr(resolved, f.name) != getattr(settings, f.name)}
    assert changed == {"model_id", "dataset", "dataset_config", "source"}


@pytest.mark.parametrize(("status", "reachable"), [(404, True), (401, True), (503, False)])
def test_an_http_error_answer_counts_as_reachable_unless_the_server_fails(monkeypatch, status, reachable):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)

    def answer(request, timeout):
        raise urllib.error.HTTPError(request.full_url, status, "status", {}, None)

    monkeypatch.setattr(urllib.request, "urlopen", answer)
    assert sources.hub_reachable(timeout=0.1) is reachable
