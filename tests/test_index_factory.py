"""open_index: the backend named in the settings, each imported only when chosen."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers.fake_pinecone import FakePinecone
from tests.helpers.index_contract import DIM, unit_rows
from trainer.config import PROJECT_ROOT, Settings
from trainer.index.factory import open_index
from trainer.index.local import LocalIndex
from trainer.index.pinecone import PineconeIndex


def test_importing_the_factory_imports_no_backend():
    code = "import trainer.index.factory, sys; assert not {'pinecone', 'torch'} & set(sys.modules), sys.modules.keys()"
    result = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_local_without_a_saved_index_is_empty_and_uses_the_configured_dtype(tmp_path):
    index = open_index(Settings(index_dtype="float16"), DIM, "ns", local_path=tmp_path / "none")
    assert isinstance(index, LocalIndex) and len(index) == 0 and index.dtype == "float16"


def test_local_loads_a_saved_index_and_checks_its_dimension(tmp_path):
    LocalIndex.from_vectors(["a", "b"], unit_rows(2)).save(tmp_path / "ix")
    assert open_index(Settings(), DIM, "ns", local_path=tmp_path / "ix").ids == ["a", "b"]
    with pytest.raises(ValueError, match=rf"dimension {DIM}, but this model needs 512"):
        open_index(Settings(), 512, "ns", local_path=tmp_path / "ix")


def test_pinecone_connects_to_the_namespace():
    client = FakePinecone()
    index = open_index(Settings(backend="pinecone", pinecone_index="ix"), DIM, "ns", client=client)
    assert isinstance(index, PineconeIndex) and index.namespace == "ns" and "ix" in client.stores


def test_an_unknown_backend_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown backend 'faiss'; choose one of local, pinecone"):
        open_index(Settings(backend="faiss"), DIM, "ns")
