"""The app started for tests on a free loopback port: launched in this process over a workspace loader, or as
``python app.py`` in a child process, as a Space or a load test starts it."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def launched_app(loader: Any, concurrency: int) -> Iterator[tuple[str, Any]]:
    """The app over ``loader``'s workspace, launched in this process; yields its URL and the Gradio demo, closed on
    exit."""
    import app

    loader.wait(timeout=600)
    demo = app.build_demo(loader)
    demo.queue(default_concurrency_limit=concurrency)
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True, **app.LAUNCH_KWARGS)
    try:
        yield url, demo
    finally:
        demo.close()


@contextlib.contextmanager
def app_process(
    env: dict[str, str], log: IO[bytes] | IO[str], argv: list[str] | None = None
) -> Iterator[subprocess.Popen]:
    """Run ``python app.py`` (or another server's ``argv``, e.g. the load test's floor) with exactly ``env``, its
    output to ``log``; stopped (then killed) on exit."""
    argv = argv or [sys.executable, "app.py"]
    server = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield server
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=20)
