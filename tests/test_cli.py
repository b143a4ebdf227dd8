"""``python -m trainer index``: builds a loadable LocalIndex and prints a summary; a second run is a cache hit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.images import BAD_FILES
from trainer import cli, sources
from trainer.index.local import LocalIndex

REPO = Path(__file__).resolve().parent.parent


def test_index_command_writes_a_loadable_index_and_a_summary(tiny_clip_dir, mixed_folder, tmp_path, capsys):
    out = tmp_path / "index"
    argv = ["index", "--model", str(tiny_clip_dir), "--dataset", str(mixed_folder)]
    argv += ["--cache-dir", str(tmp_path / "cache"), "--batch-size", "3", "--out", str(out)]
    assert cli.main(argv) == 0
    summary = capsys.readouterr().out
    assert "Indexed 4 images (dim 16)" in summary
    assert "cache miss" in summary and "images/s" in summary
    assert "Skipped 2" in summary and all(name in summary for name in BAD_FILES)

    index = LocalIndex.load(out)
    assert len(index) == 4 and index.dim == 16
    hits = index.query(index.fetch(["palette.png"])[0], top_k=1)
    assert hits[0].id == "palette.png" and hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert json.loads((out / "source.json").read_text())["model"] == str(tiny_clip_dir)

    assert cli.main(argv) == 0
    again = capsys.readouterr().out
    assert "Cache hit" in again and "no model forward" in again
    assert np.array_equal(LocalIndex.load(out).vectors, index.vectors)


def test_index_with_no_flags_uses_the_bundle_when_offline(bundle_paths, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(sources, "hub_reachable", lambda timeout=3.0: False)
    assert cli.main(["index", "--batch-size", "4"]) == 0
    summary = capsys.readouterr().out
    assert "Indexed 6 images" in summary and bundle_paths[1] in summary
    assert len(list((tmp_path / "cache" / "indexes").iterdir())) == 1


def test_python_dash_m_trainer_is_the_entry_point_and_help_is_cheap():
    """``python -m trainer`` reaches cli.main; --help must not import torch or transformers (it answers at once)."""
    code = "import sys, runpy; sys.argv = ['trainer', '--help']\n"
    code += "try:\n    runpy.run_module('trainer', run_name='__main__')\nexcept SystemExit:\n    pass\n"
    code += "print('heavy:', sorted(m for m in ('torch', 'transformers', 'datasets') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "{index}" in done.stdout or "index " in done.stdout
    assert "heavy: []" in done.stdout


def test_help_lists_the_index_command(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    assert "index" in capsys.readouterr().out


@pytest.fixture
def bundle_paths(tiny_clip_dir, tmp_path, monkeypatch):
    from tests.helpers.images import write_image_folder

    folder = write_image_folder(tmp_path / "shapes", 6)
    monkeypatch.setattr(sources, "BUNDLE_MODEL", str(tiny_clip_dir))
    monkeypatch.setattr(sources, "BUNDLE_DATASET", str(folder))
    return str(tiny_clip_dir), str(folder)


def test_index_into_pinecone_is_resumable_and_says_what_it_wrote(
    tiny_clip_dir, mixed_folder, tmp_path, capsys, monkeypatch
):
    from tests.helpers.fake_pinecone import FakePinecone
    from trainer.index import pinecone as pinecone_backend

    fake = FakePinecone()
    monkeypatch.setenv("PINECONE_API_KEY", "pc-test")
    monkeypatch.setattr(pinecone_backend, "make_client", lambda api_key: fake)
    argv = ["index", "--model", str(tiny_clip_dir), "--dataset", str(mixed_folder), "--backend", "pinecone"]
    argv += ["--cache-dir", str(tmp_path / "cache")]
    assert cli.main(argv) == 0
    assert "4 record(s) written, 0 already there" in capsys.readouterr().out
    assert cli.main(argv) == 0
    assert "0 record(s) written, 4 already there" in capsys.readouterr().out


def test_index_into_pinecone_without_a_key_says_how_to_set_one(tiny_clip_dir, mixed_folder, tmp_path, monkeypatch):
    monkeypatch.delenv("PINECONE_API_KEY", raising=False)
    argv = ["index", "--model", str(tiny_clip_dir), "--dataset", str(mixed_folder), "--backend", "pinecone"]
    with pytest.raises(SystemExit, match="PINECONE_API_KEY"):
        cli.main([*argv, "--cache-dir", str(tmp_path / "cache")])
