"""The app's HTTP API spoken directly, as a script or an attacker would: any JSON at all (NaN, lone surrogates,
too few arguments), which gradio_client refuses to send. Only ever to 127.0.0.1."""

from __future__ import annotations

import json
from typing import Any

import httpx


def call(
    url: str, api_name: str, data: list[Any], *, session_hash: str | None = None, timeout: float = 60
) -> tuple[str, Any]:
    """POST ``data`` to ``/gradio_api/call/<api_name>`` and read the result stream: ("complete", outputs) or
    ("error", the message Gradio sent, None when it sent none)."""
    body: dict[str, Any] = {"data": data}
    if session_hash is not None:
        body["session_hash"] = session_hash
    payload = json.dumps(body)  # allow_nan: NaN and Infinity go out as Python writes them
    base = url.rstrip("/") + f"/gradio_api/call/{api_name.strip('/')}"
    with httpx.Client(timeout=timeout) as client:
        answer = client.post(base, content=payload, headers={"Content-Type": "application/json"})
        answer.raise_for_status()
        event_id = answer.json()["event_id"]
        event, result = "", None
        with client.stream("GET", f"{base}/{event_id}") as stream:
            for line in stream.iter_lines():
                if line.startswith("event: "):
                    event = line.removeprefix("event: ")
                elif line.startswith("data: ") and event in ("complete", "error"):
                    result = json.loads(line.removeprefix("data: "))
                    return event, result
    raise AssertionError(f"{api_name}: the stream ended without a result (last event {event!r})")
