"""Files on disk: crash-safe writes (indexes, the embedding cache), and temporary folders that do not pile up."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO

__all__ = ["ScratchSpace", "atomic_write"]

log = logging.getLogger(__name__)


def atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write through a temp file in the same folder, fsync, then rename over ``path``: a crash at any moment leaves
    either the old file or the new one, never a torn one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
