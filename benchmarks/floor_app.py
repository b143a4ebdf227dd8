"""The floor the load test measures the app against: a bare Gradio 6 app with the same scripting API.

``/start(prompt, negative, strategy, batch_size)`` and ``/round(labels)`` return the app's JSON shape,
``{"round", "batch": [{"id", "score", "thumbnail", "label"}], "stats"}``, for a batch of real bundle thumbnails, with a
per-visitor ``gr.State``, the same queue settings and nothing else behind them: no engine, no fit, no search. What
the app costs beyond this is what it adds.

    python -m benchmarks.floor_app                  # GRADIO_SERVER_PORT, CT_CONCURRENCY as for app.py
    CT_FLOOR_THUMBNAILS=url python -m benchmarks.floor_app   # thumbnails as immutable URLs instead of data URIs

The ``url`` variant serves each thumbnail from a route of its own with ``Cache-Control: immutable``, as an app
serving thumbnails by URL would; ``benchmarks/thumbnail_delivery.py`` compares the two.
"""

from __future__ import annotations

import itertools
import os
from typing import Any

import gradio as gr
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from trainer.config import BUNDLE_DATASET
from trainer.data import Collection
from trainer.thumbnails import Thumbnails

POOL = 64  # distinct thumbnails cycled through; each visitor's ids are unique, as a session's are
BATCH = 10  # cards a round, unless /start asks for another batch size
THUMBNAIL_ROUTE = "/thumbnail/"


def build(delivery: str = "data") -> tuple[gr.Blocks, dict[str, Any]]:
    """The floor app and its launch keyword arguments. ``delivery``: "data" (data URIs) or "url"."""
    if delivery not in ("data", "url"):
        raise ValueError(f"delivery must be 'data' or 'url'; got {delivery!r}")
    collection = Collection.open(BUNDLE_DATASET, split="train")
    thumbnails = Thumbnails(collection.image)
    names = list(collection.ids[:POOL])
    jpegs = {name: thumbnails.jpeg(name) for name in names}
    uris = {name: thumbnails.data_uri(name) for name in names}
    counter = itertools.count()

    def thumbnail(name: str) -> str:
        return uris[name] if delivery == "data" else f"{THUMBNAIL_ROUTE}{name}.jpg"

    def batch(round_: int, size: int, labels: int = 0, positives: int = 0) -> dict[str, Any]:
        start = next(counter) * 100
        cards = []
        for k in range(size):
            name = names[(start + k) % POOL]
            cards.append({"id": f"{name}-{start + k}", "score": 0.5, "thumbnail": thumbnail(name), "label": 0.0})
        stats = {
            "round": round_,
            "labels": labels,
            "positives": positives,
            "negatives": labels - positives,
            "seen": size * round_,
            "strategy": "mixed",
        }
        return {"round": round_, "batch": cards, "stats": stats}

    def start(prompt: str, negative: str = "", strategy: str = "mixed", batch_size: float = 10, state=None):
        return (1, int(batch_size), 0, 0), batch(1, int(batch_size))

    def round_(labels: dict, state: tuple[int, int, int, int] | None):
        """Counts the labels, as the app's stats do, so that the load test's checks hold."""
        number, size, given, positives = state or (1, BATCH, 0, 0)
        state = (number + 1, size, given + len(labels), positives + sum(v > 0 for v in labels.values()))
        return state, batch(*state)

    async def serve_thumbnail(request: Request) -> Response:
        name = request.path_params["name"].removesuffix(".jpg")
        if name not in jpegs:
            return Response(status_code=404)
        headers = {"Cache-Control": "public, max-age=31536000, immutable"}
        return Response(jpegs[name], media_type="image/jpeg", headers=headers)

    with gr.Blocks() as demo:
        state = gr.State(None)
        prompt, negative = gr.Textbox(), gr.Textbox()
        strategy, size = gr.Textbox(), gr.Number()
        labels = gr.JSON(visible=False)
        out = gr.HTML(js_on_load=None)  # the app's grid is a gr.HTML whose value is this JSON
        gr.Button().click(start, [prompt, negative, strategy, size, state], [state, out], api_name="start")
        gr.Button().click(round_, [labels, state], [state, out], api_name="round")
    routes = [Route(THUMBNAIL_ROUTE + "{name}", serve_thumbnail)] if delivery == "url" else []
    return demo, {"app_kwargs": {"routes": routes}}


def main() -> None:
    demo, launch_kwargs = build(os.environ.get("CT_FLOOR_THUMBNAILS", "data"))
    # The app's queue setting (app.Blocks.queue): Gradio's monitoring summary is not rebuilt after every event.
    os.environ.setdefault("GRADIO_ANALYTICS_CACHE_FREQUENCY", "100000")
    demo.queue(default_concurrency_limit=int(os.environ.get("CT_CONCURRENCY", "4")))
    demo.launch(server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"), **launch_kwargs)


if __name__ == "__main__":
    main()
