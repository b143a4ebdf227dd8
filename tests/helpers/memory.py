"""How much memory this process holds, for tests that a hostile input does not make it grow."""

from __future__ import annotations

from pathlib import Path


def rss_mb() -> float:
    """This process's resident set size in MB, from /proc (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status: these memory checks need Linux")
