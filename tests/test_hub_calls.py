"""One retry policy for every Hub call, against a stand-in Hub on loopback that answers as the real one does (or
not at all): how many requests a call sends, how long it takes to give up, and what the message says."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from huggingface_hub import constants as hub_constants

from trainer.classifier import LinearProbe
from trainer.hub import load_classifier
from trainer.hub_calls import HubError


class FakeHubServer:
    """Serves /<repo>/resolve/<revision>/<file> from ``files``, or answers every request with ``status``."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.status = 200
        self.headers: dict[str, str] = {}
        self.message = ""
        self.requests: list[str] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                hub.requests.append(self.path)
                name = self.path.rsplit("/", 1)[-1]
                status = hub.status if hub.status != 200 or name in hub.files else 404
                body = hub.files.get(name, b"") if status == 200 else json.dumps({"error": hub.message}).encode()
                self.send_response(status)
                for key, value in hub.headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hub_at(monkeypatch) -> Iterator:
    """Point huggingface_hub at a loopback address, with offline mode off (conftest turns it on)."""
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)

    def point(url: str) -> None:
        monkeypatch.setattr(hub_constants, "ENDPOINT", url)

    return point


@pytest.fixture
def fake(hub_at) -> Iterator[FakeHubServer]:
    server = FakeHubServer()
    hub_at(server.url)
    yield server
    server.close()


def classifier_files(tmp_path: Path, **config) -> dict[str, bytes]:
    probe = LinearProbe.from_prompt(np.ones(16, np.float32) / 4, scale=5.0, bias=-1.0, base_model="some/clip")
    probe.save_pretrained(tmp_path / "probe")
    files = {p.name: p.read_bytes() for p in (tmp_path / "probe").iterdir()}
    files["config.json"] = json.dumps({**json.loads(files["config.json"]), **config}).encode()
    return files


def test_a_classifier_is_pulled_with_one_request_a_file_and_nothing_left_on_disk(fake, tmp_path):
    fake.files = classifier_files(tmp_path)
    before = set(Path(__import__("tempfile").gettempdir()).glob("concept-trainer-pull-*"))
    probe = load_classifier("alice/red-circles", expect_dim=16, token=False)
    assert probe.base_model == "some/clip"
    assert [r.rsplit("/", 1)[-1] for r in fake.requests] == ["config.json", "model.safetensors"]
    assert set(Path(__import__("tempfile").gettempdir()).glob("concept-trainer-pull-*")) == before


def test_a_hub_answering_500_gets_three_requests_in_a_few_seconds_and_the_message_has_the_cause(fake):
    fake.status, fake.message = 500, "Internal Error - We're working hard to fix this"
    started = time.perf_counter()
    with pytest.raises(HubError, match=r"busy or unavailable \(HTTP 500\) after 3 attempts.*working hard") as caught:
        load_classifier("alice/red-circles", token=False)
    elapsed = time.perf_counter() - started
    assert len(fake.requests) == 3  # was 21 requests over 36 s: hf_hub_download retried inside each of ours
    assert elapsed < 5, f"{elapsed:.1f} s"  # the policy waits 1 s then 2 s: a hang check, not a speed claim
    assert "config.json" in str(caught.value)


@pytest.mark.parametrize(
    ("status", "error_code", "message"),
    [
        (404, "RepoNotFound", "No model repository 'alice/red-circles' on the Hub"),
        (404, "EntryNotFound", "is not a Concept Trainer classifier: a file is missing"),
        (401, None, r"did not accept the token .*\(HTTP 401\)"),
        (403, None, r"No access to 'alice/red-circles' \(HTTP 403\).*gated or private"),
        (400, None, r"refused downloading config.json .*\(HTTP 400\)"),
    ],
    ids=["no repo", "no file", "401", "403", "400"],
)
def test_a_refusal_is_never_retried_and_says_what_to_do(fake, status, error_code, message):
    fake.status, fake.message = status, "refused"
    fake.headers = {"X-Error-Code": error_code} if error_code else {}
    with pytest.raises(HubError, match=message):
        load_classifier("alice/red-circles", token=False)
    assert len(fake.requests) == 1


def test_a_retry_after_beyond_the_deadline_is_not_waited_for(fake):
    fake.status, fake.headers = 503, {"Retry-After": "60"}
    started = time.perf_counter()
    with pytest.raises(HubError, match=r"busy or unavailable \(HTTP 503\)"):
        load_classifier("alice/red-circles", token=False)
    assert len(fake.requests) == 1 and time.perf_counter() - started < 2


def test_an_unreachable_hub_is_given_up_on_within_the_timeout(hub_at):
    """A host that takes the connection and never answers, the worst case of "unreachable": a blackholed address
    would hang the same way. One request, and a verdict after the 5 s timeout instead of after a minute."""
    silent = socket.create_server(("127.0.0.1", 0))
    silent.listen(16)
    hub_at(f"http://127.0.0.1:{silent.getsockname()[1]}")
    started = time.perf_counter()
    try:
        with pytest.raises(HubError, match=r"Could not reach the Hugging Face Hub while downloading config.json"):
            load_classifier("alice/red-circles", token=False)
    finally:
        silent.close()
    elapsed = time.perf_counter() - started
    assert 4.5 < elapsed < 8, f"{elapsed:.1f} s"  # the 5 s timeout, once: a hang check, not a speed claim


def test_a_refused_connection_is_retried_within_the_deadline_then_explained(hub_at):
    with socket.create_server(("127.0.0.1", 0)) as closed:
        port = closed.getsockname()[1]  # closed again at once: connections to it are refused
    hub_at(f"http://127.0.0.1:{port}")
    started = time.perf_counter()
    with pytest.raises(HubError, match=r"Could not reach the Hugging Face Hub after 3 attempts"):
        load_classifier("alice/red-circles", token=False)
    assert time.perf_counter() - started < 5


def test_an_absurd_config_stops_the_pull_before_the_weights_are_requested(fake, tmp_path):
    fake.files = classifier_files(tmp_path, dim=500_000_000)
    with pytest.raises(HubError, match="dim must be from 1 to 16,384"):
        load_classifier("alice/red-circles", token=False)
    assert [r.rsplit("/", 1)[-1] for r in fake.requests] == ["config.json"]


def test_a_huge_file_is_refused_from_its_announced_size_without_being_read(fake, tmp_path):
    fake.files = classifier_files(tmp_path)
    fake.files["config.json"] = b" " * 5_000_000 + fake.files["config.json"]
    with pytest.raises(HubError, match=r"config.json of 'alice/red-circles' is 5,000,\d+ bytes"):
        load_classifier("alice/red-circles", token=False)
