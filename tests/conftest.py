"""Shared fixtures. Tests never touch the network: the Hub is switched off before anything imports huggingface_hub.

Only fixtures live here; the code behind them (and anything else tests share) is in ``tests/helpers/``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers.app_process import launched_app
from tests.helpers.images import write_mixed_folder
from tests.helpers.tiny_clip import build_tiny_clip

# Set before any test module imports transformers / datasets / huggingface_hub: they read these at import time.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder of a tiny random CLIP in Hugging Face format (see tests/helpers/tiny_clip.py)."""
    return build_tiny_clip(tmp_path_factory.mktemp("tiny-clip"))


@pytest.fixture(scope="session")
def tiny_embedder(tiny_clip_dir: Path):
    """The tiny CLIP loaded once per session through ``trainer.embed.load``."""
    from trainer import embed

    return embed.load(str(tiny_clip_dir))


# ------------------------------------------------------------------------------------------------- the engine
@pytest.fixture(scope="module")
def concept():
    """Synthetic embeddings with a planted concept and its prompt: the engine's tests run on these."""
    from trainer.synthetic import planted_concept

    return planted_concept(n=3000, dim=32, seed=1)


@pytest.fixture
def concept_index(concept):
    """A fresh LocalIndex over ``concept``'s vectors."""
    from trainer.index.local import LocalIndex

    return LocalIndex.from_vectors(concept.ids, concept.vectors)


@pytest.fixture
def mixed_folder(tmp_path: Path) -> Path:
    return write_mixed_folder(tmp_path / "mixed")


@pytest.fixture(scope="session")
def ray_cluster() -> str:
    """Ray on this machine with 2 CPUs, shared by every Ray test of the session; yields its address."""
    import logging

    import ray

    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


# ------------------------------------------------------------------------------------------------- the app
@pytest.fixture(scope="session")
def bundle_workspace(tmp_path_factory: pytest.TempPathFactory):
    """The offline bundle, embedded into a fresh cache: exactly what a first start on a fresh machine does."""
    from trainer.config import Settings
    from trainer.workspace import WorkspaceLoader, load_workspace

    settings = Settings.from_env(environ={}, source="bundle", cache_dir=tmp_path_factory.mktemp("cache"))
    return WorkspaceLoader(lambda progress: load_workspace(settings, progress)).start()


@pytest.fixture
def hub_online(bundle_workspace, monkeypatch):
    """The app's workspace as if the Hub had answered at start-up (tests run offline), so that pushes are allowed."""
    import dataclasses

    ws = bundle_workspace.wait(timeout=600)
    monkeypatch.setattr(bundle_workspace, "_workspace", dataclasses.replace(ws, hub_online=True))


@pytest.fixture(scope="session")
def app_url(bundle_workspace):
    """The app launched on a free local port over the bundle; closed when the session ends."""
    with launched_app(bundle_workspace, concurrency=4) as (url, _):
        yield url
