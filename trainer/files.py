"""Files on disk: crash-safe writes of files and whole folders, temporary folders that do not pile up, and the one
rule that tells a local path from a Hugging Face Hub id."""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, BinaryIO

__all__ = [
    "ScratchSpace",
    "atomic_file",
    "atomic_folder",
    "atomic_write",
    "is_local_path",
    "looks_like_path",
    "shown_name",
    "slug",
]

log = logging.getLogger(__name__)

# How a local path may begin; a Hub id never does (trainer.hub_calls.validate_repo_id refuses every one of these).
_PATH_STARTS = ("/", ".", "~", "\\")


# ------------------------------------------------------------------------------------------------ crash-safe writes
@contextmanager
def atomic_file(path: str | os.PathLike[str], mode: str = "wb", **open_args: Any) -> Iterator[IO[Any]]:
    """Write ``path`` whole or not at all: yields a temp file beside it, opened with ``mode`` (and ``open_args``,
    e.g. ``encoding``), which is flushed, fsynced and renamed over ``path`` when the block ends, or removed if it
    raises. A crash at any moment leaves either the old file or the new one, never a torn one."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **open_args) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """``write(f)`` into a binary file through :func:`atomic_file`."""
    with atomic_file(path) as f:
        write(f)


@contextmanager
def atomic_folder(folder: str | os.PathLike[str]) -> Iterator[Path]:
    """Build ``folder`` in one go: yields an empty staging folder beside it (``.<name>.partial-<id>``) to write into;
    when the block ends, the staging folder takes ``folder``'s place (an earlier one there is replaced: whether it
    may be is the caller's to check first), and if the block raises it is removed. Nobody ever sees a half-written
    folder under the final name, and a failed write leaves an earlier folder as it was."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    staging = folder.with_name(f".{folder.name}.partial-{tag}")
    staging.mkdir()
    try:
        yield staging
        earlier = folder.with_name(f".{folder.name}.old-{tag}") if folder.exists() else None
        if earlier is not None:
            folder.rename(earlier)  # moved aside, not deleted, until the new folder is in place
        try:
            staging.rename(folder)
        except BaseException:
            if earlier is not None:
                earlier.rename(folder)
            raise
        if earlier is not None:
            shutil.rmtree(earlier, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# ------------------------------------------------------------------------------------------ local path or Hub id
def looks_like_path(name: str | os.PathLike[str]) -> bool:
    """Whether ``name`` is shaped like a local path, whatever is on disk: a path object, or text that begins with
    ``/``, ``.``, ``~`` or ``\\``. The check for places that must not look at the disk (a public Space)."""
    return isinstance(name, os.PathLike) or str(name).strip().startswith(_PATH_STARTS)


def is_local_path(name: str | os.PathLike[str]) -> bool:
    """Whether ``name`` means something on this machine rather than a Hub id: shaped like a path, or naming a file
    or folder that exists here (a relative ``assets/tiny-clip``)."""
    return looks_like_path(name) or Path(name).expanduser().exists()


def shown_name(name: str | os.PathLike[str]) -> str:
    """How a model or dataset is named to people and in shared files: a Hub id as it is, a local path by its last
    part only. Where a folder lies on a server differs from machine to machine and is nobody else's business."""
    if not is_local_path(name):
        return str(name)
    return Path(os.path.abspath(Path(name).expanduser())).name


def slug(text: str) -> str:
    """A file or tag name from free text (a prompt, a collection): lower-case letters, digits and dashes, at most
    60 characters; "" when nothing is left."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60]


# ----------------------------------------------------------------------------------------------- temporary folders
class ScratchSpace:
    """Temporary folders of one running app (exports to download, say), all under one root. Each is removed when
    its owner is done with it (``remove``: a visitor's session ended) or, at the latest, once it is older than
    ``max_age_s`` (``sweep``, run whenever a new folder is made), so that a busy server does not fill its disk."""

    def __init__(self, root: str | os.PathLike[str] | None = None, *, max_age_s: float = 3600.0) -> None:
        self.root = Path(root) if root is not None else Path(tempfile.mkdtemp(prefix="concept-trainer-scratch-"))
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_age_s = max_age_s

    def new(self, prefix: str = "") -> Path:
        """A fresh empty folder under the root; older ones past their age are removed first."""
        self.sweep()
        return Path(tempfile.mkdtemp(prefix=prefix, dir=self.root))

    def sweep(self, now: float | None = None) -> int:
        """Remove every folder and file under the root last changed more than ``max_age_s`` ago; how many."""
        now = time.time() if now is None else now
        old = [p for p in self.root.iterdir() if now - p.lstat().st_mtime > self.max_age_s]
        self.remove(old)
        return len(old)

    def remove(self, paths: Iterable[str | os.PathLike[str]]) -> None:
        """Remove these folders or files, each only if it lies under the root (and quietly if already gone)."""
        root = self.root.resolve()
        for path in paths:
            path = Path(path).resolve()
            if path == root or root not in path.parents:
                log.warning("not removing %s: it is not under the scratch space %s", path, root)
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
