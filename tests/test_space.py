"""The app started exactly as a Hugging Face Space starts it: ``python app.py`` with the variables the Spaces runtime
sets (``SYSTEM=spaces``, ``SPACE_ID``, ``SPACE_HOST`` and, for ``hf_oauth: true``, the OAuth ones) in the environment
*before* anything is imported. Gradio reads the OAuth variables at import time and wires the real sign-in routes only
when it sees a Space, so an in-process app built first and given ``SPACE_ID`` afterwards never runs this path.

The OpenID provider is a stand-in on loopback; nothing leaves the machine.
"""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.helpers.app_process import app_process, free_port

SPACE_HOST = "someone-concept-trainer.hf.space"
CLIENT_ID = "client-id-of-this-space"


@pytest.fixture(scope="module")
def openid_provider() -> Iterator[str]:
    """Serves the OpenID discovery document the way huggingface.co does, pointing at itself."""

    class Discovery(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            base = f"http://127.0.0.1:{self.server.server_address[1]}"
            if self.path != "/.well-known/openid-configuration":
                self.send_error(404)
                return
            body = json.dumps(
                {
                    "issuer": base,
                    "authorization_endpoint": f"{base}/oauth/authorize",
                    "token_endpoint": f"{base}/oauth/token",
                    "userinfo_endpoint": f"{base}/oauth/userinfo",
                    "jwks_uri": f"{base}/oauth/jwks",
                }
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:  # keep the test output quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Discovery)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def space_url(openid_provider: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``python app.py`` as the Spaces runtime starts it, on a free loopback port; stopped after the module."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("space") / "app.log"
    env = {
        **os.environ,
        "SYSTEM": "spaces",
        "SPACE_ID": "someone/concept-trainer",
        "SPACE_HOST": SPACE_HOST,
        "SPACE_AUTHOR_NAME": "someone",
        "SPACE_REPO_NAME": "concept-trainer",
        "OAUTH_CLIENT_ID": CLIENT_ID,
        "OAUTH_CLIENT_SECRET": "client-secret-of-this-space",
        "OAUTH_SCOPES": "openid profile contribute-repos",
        "OPENID_PROVIDER_URL": openid_provider,
        "GRADIO_SERVER_NAME": "127.0.0.1",
        "GRADIO_SERVER_PORT": str(port),
        "GRADIO_ANALYTICS_ENABLED": "False",
        "HF_HUB_OFFLINE": "1",
        "CT_SOURCE": "bundle",
        "CT_CACHE_DIR": str(tmp_path_factory.mktemp("space-cache")),
    }
    url = f"http://127.0.0.1:{port}"
    with log_path.open("w") as log, app_process(env, log) as server:
        deadline = time.monotonic() + 120
        while True:
            if server.poll() is not None:
                pytest.fail(f"app.py exited with {server.returncode} as a Space:\n{log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(url + "/", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"app.py did not serve a page within 300 s:\n{log_path.read_text()[-3000:]}")
                time.sleep(0.5)
        yield url


def test_the_app_starts_as_a_space_and_serves_the_sign_in_button(space_url):
    with urllib.request.urlopen(space_url + "/", timeout=10) as page:
        assert "Sign in with Hugging Face" in page.read().decode()
    with urllib.request.urlopen(space_url + "/config", timeout=10) as response:
        config = json.load(response)
    buttons = [c for c in config["components"] if c.get("type") == "button"]
    assert "Sign in with Hugging Face" in [b["props"].get("value") for b in buttons]


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object) -> None:
        return None  # let the 302 surface as an HTTPError, to read where it points


def test_signing_in_on_the_space_sends_the_visitor_to_the_openid_provider(space_url, openid_provider):
    opener = urllib.request.build_opener(NoRedirect)
    with pytest.raises(urllib.error.HTTPError) as answer:
        opener.open(space_url + "/login/huggingface", timeout=10)
    assert answer.value.code == 302
    target = urlsplit(answer.value.headers["Location"])
    query = parse_qs(target.query)
    assert f"{target.scheme}://{target.netloc}{target.path}" == f"{openid_provider}/oauth/authorize"
    assert query["client_id"] == [CLIENT_ID]
    assert query["redirect_uri"][0].startswith(f"https://{SPACE_HOST}/login/callback")
    assert "contribute-repos" in query["scope"][0]
