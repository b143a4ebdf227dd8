"""The hardening probes of issue 15, rerun as an attacker would: what each hostile input costs and what it is told.

Everything stays on this machine: the app runs in this process on the offline bundle (127.0.0.1), and the Hub is a
stand-in on loopback that answers 500, or never answers. The README's "Hardening probes" table quotes this output;
the same cases are pinned, with assertions, in tests/ (test_bad_input, test_probe_files, test_hub_calls). Times here
are hang checks, not speed claims.

    python -m benchmarks.hardening_probes
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")  # as scripts/run.sh starts the app

import numpy as np  # after the switches above: the Hub libraries read them at import time

from benchmarks.machine import machine_line, today
from tests.helpers import raw_api
from tests.helpers.memory import rss_mb

HOSTILE_STARTS = {
    "9 MB prompt": ["x" * 9_000_000, "", "mixed", 10],
    "lone surrogate": ["a \ud800", "", "mixed", 10],
    "NUL in the prompt": ["a\x00", "", "mixed", 10],
    "batch size NaN": ["a", "", "mixed", float("nan")],
    "too few arguments": ["a"],
}


def measured(action: Callable[[], str]) -> str:
    """Run ``action`` (which returns what the caller was told) and say how long it took and what RSS it added."""
    before, started = rss_mb(), time.perf_counter()
    told = action()
    return f"{(time.perf_counter() - started) * 1000:,.0f} ms, RSS {rss_mb() - before:+.1f} MB: {told}"


def refusal(action: Callable[[], object], *errors: type[BaseException]) -> Callable[[], str]:
    def run() -> str:
        try:
            action()
        except errors as err:
            return str(err)[:160]
        return "ACCEPTED (no refusal)"

    return run


def absurd_dims(folder: Path) -> dict[str, str]:
    from trainer.classifier import LinearProbe
    from trainer.export import export_classifier
    from trainer.hub import load_classifier
    from trainer.hub_calls import HubError

    probe = LinearProbe.from_prompt(np.ones(16, np.float32) / 4, scale=1.0, bias=0.0, base_model="x/clip")
    export = export_classifier(probe, folder / "absurd")
    config = json.loads((export / "config.json").read_text())
    results = {}
    for dim in (500_000_000, 10**18):
        (export / "config.json").write_text(json.dumps({**config, "dim": dim}))
        results[f"Load, config dim {dim:,}"] = measured(refusal(lambda: load_classifier(export), HubError))
    return results


def hostile_api_calls(cache: Path) -> dict[str, str]:
    import app
    from trainer.config import Settings
    from trainer.workspace import WorkspaceLoader, load_workspace

    settings = Settings.from_env(environ={}, source="bundle", cache_dir=cache)
    loader = WorkspaceLoader(lambda progress: load_workspace(settings, progress)).start()
    loader.wait(600)
    demo = app.build_demo(loader)
    demo.queue()
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True, **app.LAUNCH_KWARGS)
    try:
        # One visitor with a session (the first search also warms the tokenizer), so /classify gets past "search first".
        raw_api.call(url, "start", ["a red circle", "", "mixed", 10], session_hash="probe")

        def told(name: str, data: list[object]) -> Callable[[], str]:
            def run() -> str:
                event, answer = raw_api.call(url, name, data, session_hash="probe")
                return f"{event}: {(answer or {}).get('error') if event == 'error' else 'accepted'}"[:160]

            return run

        results = {f"/start, {name}": measured(told("start", data)) for name, data in HOSTILE_STARTS.items()}
        results["/classify, threshold NaN"] = measured(told("classify", ["indexed collection", float("nan")]))
        return results
    finally:
        demo.close()


@contextlib.contextmanager
def stand_in_hub(kind: str) -> Iterator[tuple[str, list[str]]]:
    """A loopback Hub that answers every request with HTTP 500 ("failing"), or accepts and never answers ("silent")."""
    requests: list[str] = []
    if kind == "silent":
        server = socket.create_server(("127.0.0.1", 0))
        server.listen(8)
        try:
            yield f"http://127.0.0.1:{server.getsockname()[1]}", requests
        finally:
            server.close()
        return

    class Failing(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            requests.append(self.path)
            body = b'{"error": "Internal Error"}'
            self.send_response(500)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    http = ThreadingHTTPServer(("127.0.0.1", 0), Failing)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{http.server_address[1]}", requests
    finally:
        http.shutdown()
        http.server_close()


def unreliable_hub() -> dict[str, str]:
    from huggingface_hub import constants

    from trainer.hub import load_classifier
    from trainer.hub_calls import HubError

    results = {}
    offline, endpoint = constants.HF_HUB_OFFLINE, constants.ENDPOINT
    try:
        for kind in ("failing", "silent"):
            with stand_in_hub(kind) as (url, requests):
                constants.HF_HUB_OFFLINE, constants.ENDPOINT = False, url
                told = measured(refusal(lambda: load_classifier("someone/red-circles", token=False), HubError))
                count = f"{len(requests)} request(s) {sorted(set(requests))}, " if kind == "failing" else ""
                results[f"Load, a Hub that is {kind}"] = count + told
    finally:
        constants.HF_HUB_OFFLINE, constants.ENDPOINT = offline, endpoint
    return results


def main(argv: list[str] | None = None) -> None:
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args(argv)
    print(f"# hardening probes, {today()}\n# {machine_line()}")
    with tempfile.TemporaryDirectory() as tmp:
        results = {**absurd_dims(Path(tmp)), **hostile_api_calls(Path(tmp) / "cache"), **unreliable_hub()}
    for probe, outcome in results.items():
        print(f"{probe:<40} {outcome}")


if __name__ == "__main__":
    main()
