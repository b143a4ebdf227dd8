"""trainer/files.py: temporary folders that are removed when their owner is done, or once old enough."""

from __future__ import annotations

import os
import time

from trainer.files import ScratchSpace


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
