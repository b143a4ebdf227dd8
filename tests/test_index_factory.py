"""open_index and build_index: the one way to open or fill an index, on the backend the settings name."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers.fake_pinecone import FakePinecone
from tests.helpers.index_contract import DIM, unit_rows
from trainer.config import PROJECT_ROOT, Settings
from trainer.index.factory import build_index, collection_namespace, open_index
from trainer.index.local import LocalIndex
from trainer.index.pinecone import PineconeIndex, namespace_for


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


# ----------------------------------------------------------------------------------------------- build_index
class _Opened:
    """What build_index needs of a collection to name its namespace: as ``trainer.data.Collection`` has it."""

    source, split, config = "test/shapes", "train", None


def test_build_index_local_uses_the_configured_dtype_saves_and_reports(tmp_path):
    ids, vectors, calls = ["a", "b", "c"], unit_rows(3), []
    settings = Settings(index_dtype="float16")
    built = build_index(
        settings, _Opened(), ids, vectors, local_path=tmp_path / "ix", progress=lambda *a: calls.append(a)
    )
    assert isinstance(built.index, LocalIndex) and built.index.dtype == "float16"
    assert built.written == 3 and built.namespace is None
    assert LocalIndex.load(tmp_path / "ix").ids == ids
    assert calls[-1][:2] == (3, 3)


def test_build_index_pinecone_fills_the_collection_namespace_and_resumes():
    client, ids, vectors = FakePinecone(), [f"img-{i}" for i in range(30)], unit_rows(30)
    settings = Settings(backend="pinecone", pinecone_index="ct-test", model_id="test/tiny-clip")
    first = build_index(settings, _Opened(), ids, vectors, client=client)
    assert first.written == 30 and isinstance(first.index, PineconeIndex)
    assert first.namespace == collection_namespace("test/tiny-clip", _Opened()) == first.index.namespace
    again = build_index(settings, _Opened(), ids, vectors, client=client)
    assert again.written == 0 and len(again.index) == 30


def test_collection_namespace_names_the_collection_as_opened():
    train = collection_namespace("m", _Opened())
    assert train == namespace_for("m", "test/shapes", "train")

    class Folder(_Opened):
        split = None  # a plain image folder has no split

    assert collection_namespace("m", Folder()) == namespace_for("m", "test/shapes", "all")


def test_build_index_refuses_an_unknown_backend():
    with pytest.raises(ValueError, match="unknown backend 'faiss'; choose one of local, pinecone"):
        build_index(Settings(backend="faiss"), _Opened(), ["a"], unit_rows(1))
