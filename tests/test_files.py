"""trainer/files.py: files and folders written whole or not at all, temporary folders that are removed when their
owner is done or once old enough, and the one rule that tells a local path from a Hub id."""

from __future__ import annotations

import os
import time

import pytest

from trainer.files import (
    ScratchSpace,
    atomic_file,
    atomic_folder,
    is_local_path,
    looks_like_path,
    shown_name,
    slug,
)


def test_folders_are_made_under_one_root_and_removed_when_their_owner_is_done(tmp_path):
    scratch = ScratchSpace(tmp_path / "scratch")
    first, second = scratch.new("export-"), scratch.new("export-")
    (first / "model.safetensors").write_bytes(b"x" * 1000)
    assert first.parent == second.parent == scratch.root and first != second
    scratch.remove([first])
    assert not first.exists() and second.is_dir()


def test_folders_older_than_the_age_are_swept_whenever_a_new_one_is_made(tmp_path):
    scratch = ScratchSpace(tmp_path / "scratch", max_age_s=3600)
    old, recent = scratch.new("old-"), scratch.new("recent-")
    hour_ago = time.time() - 3700
    os.utime(old, (hour_ago, hour_ago))
    newest = scratch.new("new-")
    assert not old.exists() and recent.is_dir() and newest.is_dir()
    assert scratch.sweep(now=time.time() + 7200) == 2 and list(scratch.root.iterdir()) == []


def test_nothing_outside_the_root_is_ever_removed(tmp_path):
    scratch = ScratchSpace(tmp_path / "scratch")
    outside = tmp_path / "precious"
    outside.mkdir()
    scratch.remove([outside, scratch.root, scratch.root / ".." / "precious"])
    assert outside.is_dir() and scratch.root.is_dir()


# ------------------------------------------------------------------------------------------------ crash-safe writes
def test_a_folder_appears_whole_and_replaces_an_earlier_one(tmp_path):
    target = tmp_path / "out" / "export"
    with atomic_folder(target) as staging:
        (staging / "a.txt").write_text("first")
        assert staging.parent == target.parent and ".export.partial-" in staging.name and not target.exists()
    with atomic_folder(target) as staging:
        (staging / "b.txt").write_text("second")
    assert sorted(p.name for p in target.parent.iterdir()) == ["export"]  # nothing staged or set aside is left
    assert [p.name for p in target.iterdir()] == ["b.txt"]


def test_a_failed_folder_write_leaves_the_earlier_folder_as_it_was_and_no_staging_behind(tmp_path):
    target = tmp_path / "export"
    target.mkdir()
    (target / "kept.txt").write_text("precious")
    with pytest.raises(RuntimeError, match="disk on fire"), atomic_folder(target) as staging:
        (staging / "half.txt").write_text("half")
        raise RuntimeError("disk on fire")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]
    assert [p.name for p in target.iterdir()] == ["kept.txt"]


def test_a_file_is_written_whole_in_text_or_bytes_or_not_at_all(tmp_path):
    target = tmp_path / "scores.csv"
    with atomic_file(target, "w", encoding="utf-8", newline="") as f:
        f.write("path,probability\r\n")
    with pytest.raises(ValueError, match="bad row"), atomic_file(target) as f:
        f.write(b"half a row")
        raise ValueError("bad row")
    assert target.read_bytes() == b"path,probability\r\n"
    assert [p.name for p in tmp_path.iterdir()] == ["scores.csv"]


# ------------------------------------------------------------------------------------------ local path or Hub id
@pytest.mark.parametrize("name", ["/srv/models/clip", "./clip", "../clip", "~/clip", "\\share\\clip", " ./padded"])
def test_anything_shaped_like_a_path_is_local_without_looking_at_the_disk(name, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert looks_like_path(name) and is_local_path(name)


def test_a_bare_name_is_a_hub_id_unless_it_exists_here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("openai/clip-vit-base-patch32", "tiny-clip"):
        assert not looks_like_path(name) and not is_local_path(name)
    (tmp_path / "tiny-clip").mkdir()
    assert is_local_path("tiny-clip") and not looks_like_path("tiny-clip")
    assert looks_like_path(tmp_path / "anything")  # a path object is a path, there or not


def test_a_local_path_is_shown_by_its_last_part_and_a_hub_id_as_it_is(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models" / "tiny-clip").mkdir(parents=True)
    assert shown_name("openai/CLIP-vit-base-patch32") == "openai/CLIP-vit-base-patch32"
    assert shown_name("models/tiny-clip") == shown_name("./models/tiny-clip/") == "tiny-clip"
    assert shown_name(str(tmp_path / "models" / "tiny-clip")) == "tiny-clip"
    assert shown_name(".") == tmp_path.name  # the folder's own name, never "" or "."


def test_a_slug_keeps_letters_digits_and_single_dashes():
    assert slug("A Large  RED heart, on dots!") == "a-large-red-heart-on-dots"
    assert slug("<img src=x>") == "img-src-x" and slug("¡¿…?!") == ""
    assert len(slug("word " * 40)) <= 60
