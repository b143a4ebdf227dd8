"""Concept Trainer: teach CLIP a concept in a few rounds. Describe it, score what comes back, train, repeat.

Layout and wiring only: constants, typed handler functions, the Blocks layout, one-line wiring, launch.
All logic lives in ``trainer/``; each browser tab owns one ``Session`` in ``gr.State``.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import re
import tempfile
import threading
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
import pandas as pd
import torch
from PIL import Image

from trainer.classifier import LinearProbe
from trainer.config import Settings
from trainer.embed import to_rgb
from trainer.hub import (
    LABELS_CSV,
    LABELS_JSONL,
    HubError,
    export_classifier,
    load_classifier,
    on_space,
    push_classifier,
    token_for_push,
    zip_export,
)
from trainer.index import IndexUnavailable
from trainer.session import RECIPE_NAMES, Session
from trainer.workspace import Workspace, WorkspaceLoader, load_workspace

log = logging.getLogger("concept_trainer.app")

MAX_BATCH = 20  # the grid has this many image + slider cells; a batch shows the first ``batch_size``
THUMBNAIL = 224  # px, longest side: enough for a 160 px cell on a high-density screen
GALLERY_SIZE = 48  # how many top matches Classify shows
STRATEGY_HELP = {
    "mixed": "mixed: half best matches, half the classifier's borderline cases (default)",
    "top": "top: only the best matches (the original article)",
    "boundary": "boundary: only borderline cases (learns fastest, fewer hits to see)",
    "random": "random: a uniform sample (a baseline)",
    "original": "original: the article's exact recipe, to compare against",
}
THEME = gr.themes.Default(
    primary_hue="indigo",
    secondary_hue="slate",
    # System fonts: the default theme's web font would be fetched from the internet, which a Space may not reach.
    font=[gr.themes.Font("system-ui"), gr.themes.Font("Segoe UI"), "sans-serif"],
    font_mono=[gr.themes.Font("ui-monospace"), "monospace"],
)
# The browser keeps each visitor's labels (gr.BrowserState) so a restarted server loses nothing. Gradio encrypts the
# value with this key; it must stay the same across restarts to be readable. Labels of a public collection are not
# secret, so a fixed default is fine; set CT_BROWSER_SECRET to make the saved state unreadable to others.
BROWSER_SECRET = os.environ.get("CT_BROWSER_SECRET", "concept-trainer-browser-state")
MAP_COLOURS = {
    "collection": "#94a3b8",
    "predicted: not it": "#cbd5e1",
    "predicted: it": "#86efac",
    "labelled: not it": "#ef4444",
    "labelled: it": "#15803d",
    "current batch": "#6366f1",
}
CSS = """
.ct-grid { flex-wrap: wrap !important; gap: 10px !important; }
.ct-cell { flex: 0 1 160px !important; min-width: 140px !important; max-width: 200px; gap: 4px !important; }
.ct-cell img { border-radius: 6px; width: 100%; height: 100%; object-fit: contain; }
.ct-cell input[type=number] { width: 3.5em !important; }
.ct-cell input[type=range] { min-width: 0 !important; width: 100% !important; }
.ct-stats { font-size: 1.05rem; }
.ct-header h1 { margin-bottom: 0; }
footer { display: none !important; }
"""


# ------------------------------------------------------------------------------------------------ plain functions
def header_markdown(loader: WorkspaceLoader) -> str:
    ready, fraction, message = loader.status()
    if not ready:
        if loader.failed:
            return f"**{message}** Check the server log; the app cannot search until this is fixed."
        return f"⏳ **Preparing the collection: {fraction:.0%}** · {message}. Search works as soon as this is done."
    ws = loader.get()
    line = (
        f"`{ws.model_name}` · **{ws.dataset_name}** {len(ws.index):,} images · "
        f"{ws.settings.backend} index · ready in {ws.load_seconds:.1f} s"
    )
    if ws.offline_bundle:
        line += (
            "  \n**Offline demo**: the Hugging Face Hub is not reachable, so this runs on the bundled tiny CLIP "
            "model and a generated collection of shapes (colour, shape, size, texture, background)."
        )
    return line + "".join(f"  \n{note}" for note in ws.notes)


def example_prompt(loader: WorkspaceLoader) -> str:
    ready, _, _ = loader.status()
    if ready and loader.get().offline_bundle:
        return "a large red heart"
    return "dogs in the snow"


def workspace_or_error(loader: WorkspaceLoader) -> Workspace:
    ready, fraction, message = loader.status()
    if not ready:
        raise gr.Error(f"Still preparing the collection ({fraction:.0%}: {message}). Try again in a moment.")
    return loader.get()


def new_session(
    ws: Workspace, prompt: str, negative: str, strategy: str, batch_size: float, prior_strength: float
) -> Session:
    if not prompt or not prompt.strip():
        raise gr.Error("Describe the concept first, in a few words: for example 'dogs in the snow'.")
    try:
        vector = ws.prompt_vector(prompt.strip(), negative)
        return Session(
            ws.index,
            vector,
            strategy=strategy,
            batch_size=int(batch_size),
            seed=ws.settings.seed,
            prior_strength=float(prior_strength),
            prompt=prompt.strip(),
            negative_prompt=(negative or "").strip() or None,
            base_model=ws.settings.model_id,
        )
    except (ValueError, IndexUnavailable) as err:  # IndexUnavailable: a remote index down; says what to do
        raise gr.Error(str(err)) from err


def batch_updates(session: Session | None, thumbnail: Callable[[str], str]) -> list[Any]:
    """Updates for every grid cell: (column, image, slider) x MAX_BATCH, in that order.

    ``gr.update`` dicts, not component objects: building 60 components costs ~20 ms a round, dicts nothing.
    """
    batch = session.batch() if session else []
    labels = session.labels if session else {}
    updates: list[Any] = []
    for position in range(MAX_BATCH):
        if position < len(batch):
            hit = batch[position]
            updates += [
                gr.update(visible=True),
                gr.update(value=thumbnail(hit.id), label=hit.id),
                gr.update(value=labels.get(hit.id, 0.0), label=f"{hit.score:.2f}"),
            ]
        else:
            updates += [gr.update(visible=False), gr.update(value=None), gr.update(value=0.0, label="score")]
    return updates


def stats_markdown(session: Session | None) -> str:
    if session is None:
        return "Type a concept above and press **Search** to see the images CLIP ranks highest."
    labels = session.labels
    positives = sum(v > 0 for v in labels.values())
    negatives = sum(v < 0 for v in labels.values())
    text = (
        f"**Round {session.round}** · {positives + negatives} labels (+{positives} / −{negatives}) · "
        f"{positives} positives found · {len(session.seen):,} seen · strategy `{session.strategy}`"
    )
    if session.exhausted:
        text += "  \n✅ You have seen the whole collection. Classify it or export the classifier."
    return text


def progress_frame(session: Session | None) -> pd.DataFrame:
    # Gradio's plots fix their axis types and colour categories from the first value they get (categories that
    # appear later are never drawn), so even the empty start holds both series, typed.
    rows = [{"round": 0, "count": 0, "series": name} for name in ("labels", "positives found")]
    for stats in session.history if session else []:
        rows.append({"round": stats.round, "count": stats.labelled, "series": "labels"})
        rows.append({"round": stats.round, "count": stats.positives, "series": "positives found"})
    return pd.DataFrame(rows, columns=["round", "count", "series"]).astype({"round": "int64", "count": "int64"})


def map_legend() -> pd.DataFrame:
    """One undrawn (NaN) point of every kind: keeps every colour category known to the plot from its first value."""
    return pd.DataFrame({"x": np.nan, "y": np.nan, "kind": list(MAP_COLOURS)})


def map_frame(ws: Workspace, session: Session | None) -> pd.DataFrame:
    """The collection in 2-D: predictions for a sample of it, plus every labelled and current item on top."""
    vectors = np.asarray(ws.embeddings.vectors[ws.map_rows], dtype=np.float32)
    xy = ws.map_xy
    if session is None:
        kinds = np.full(len(xy), "collection", dtype=object)
        return pd.concat([map_legend(), pd.DataFrame({"x": xy[:, 0], "y": xy[:, 1], "kind": kinds})], ignore_index=True)
    threshold = session.classifier.threshold
    kinds = np.where(session.scores(vectors) >= threshold, "predicted: it", "predicted: not it").astype(object)
    frames = [map_legend(), pd.DataFrame({"x": xy[:, 0], "y": xy[:, 1], "kind": kinds})]
    labels = session.labels
    marked = {i: ("labelled: it" if v > 0 else "labelled: not it") for i, v in labels.items() if v != 0}
    marked.update({h.id: "current batch" for h in session.batch()})
    if marked:
        ids = list(marked)
        coords = ws.project(ws.index.fetch(ids))
        frames.append(pd.DataFrame({"x": coords[:, 0], "y": coords[:, 1], "kind": [marked[i] for i in ids]}))
    return pd.concat(frames, ignore_index=True)


def saved_session(ws: Workspace, session: Session | None) -> dict[str, Any] | None:
    """What the browser keeps of a session (labels and how it was started), so a restarted app loses nothing."""
    if session is None:
        return None
    prior = session.classifier.prior_weight.numpy()
    return {
        "model": ws.settings.model_id,
        "dataset": ws.settings.dataset,
        "prompt": session.classifier.prompt or "",
        "prompt_vector": (prior / max(float(np.linalg.norm(prior)), 1e-12)).tolist(),  # includes a negative prompt
        "strategy": session.strategy,
        "batch_size": session.batch_size,
        "prior_strength": session.classifier.prior_strength,
        "labels": session.labels,
    }


def resume_offer(ws: Workspace, saved: Any) -> str | None:
    """The line offering to resume a saved session of this model and collection, or None."""
    if not isinstance(saved, dict) or not saved.get("labels"):
        return None
    if (saved.get("model"), saved.get("dataset")) != (ws.settings.model_id, ws.settings.dataset):
        return None
    labels = saved["labels"]
    return f"You have **{len(labels)} labels** for “{saved.get('prompt', '')}” from an earlier visit."


def session_from_saved(ws: Workspace, saved: Any) -> Session:
    """Rebuild a saved session: the same prior and settings, every label taken over (values from the browser are
    untrusted: the Session checks every id and score)."""
    if resume_offer(ws, saved) is None:
        raise gr.Error("There is no saved session for this model and collection to resume.")
    try:
        session = Session(
            ws.index,
            np.asarray(saved["prompt_vector"], dtype=np.float32),
            strategy=str(saved["strategy"]),
            batch_size=int(saved["batch_size"]),
            seed=ws.settings.seed,
            prior_strength=float(saved["prior_strength"]),
            prompt=str(saved["prompt"]),
            base_model=ws.settings.model_id,
        )
        session.resume(saved["labels"])
    except (KeyError, TypeError, ValueError) as err:
        raise gr.Error(f"The saved session cannot be resumed ({err}). Start a new search instead.") from None
    return session


def require_session(session: Session | None) -> Session:
    if session is None:
        raise gr.Error("Search for a concept and label a round or two first.")
    return session


def export_folder(session: Session, ws: Workspace) -> Path:
    """Write the classifier, its card and its labels to a fresh temporary folder."""
    folder = Path(tempfile.mkdtemp(prefix="concept-trainer-")) / slug(session.classifier.prompt or "classifier")
    return export_classifier(session, folder, collection=f"{ws.dataset_name} ({ws.settings.split})")


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60] or "classifier"


def session_from_classifier(ws: Workspace, probe: LinearProbe) -> Session:
    """A session that starts from a pulled classifier, its prompt prior as the prior to keep training toward."""
    prior = probe.prior_weight.numpy()
    norm = float(np.linalg.norm(prior))
    prompt_vector = prior / norm if norm > 0 else probe.weight / np.linalg.norm(probe.weight)
    return Session(
        ws.index,
        prompt_vector,
        seed=ws.settings.seed,
        classifier=probe,
        prompt=probe.prompt,
        base_model=ws.settings.model_id,
    )


def scores_from_sliders(session: Session, values: tuple[float, ...]) -> dict[str, float]:
    return {hit.id: float(value) for hit, value in zip(session.batch(), values, strict=False)}


# ------------------------------------------------------------------------------------------------ the app
def build_demo(loader: WorkspaceLoader) -> gr.Blocks:
    """The whole UI over one (possibly still loading) workspace. Launch with ``demo.launch(**LAUNCH_KWARGS)``."""

    thumbnails = Path(tempfile.mkdtemp(prefix="concept-trainer-thumbnails-"))

    @functools.lru_cache(maxsize=8192)
    def thumbnail(id_: str, held_out: bool = False) -> str:
        """A thumbnail file, encoded once per image for every visitor: a round then sends paths, not pixels."""
        ws = loader.get()
        collection = ws.eval.collection if held_out and ws.eval else ws.collection
        image = to_rgb(collection.image(id_))
        # Small images (the offline bundle's are 64 px) are enlarged once here rather than blurred by the browser.
        scale = THUMBNAIL / max(image.size)
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)
        path = thumbnails / f"{hashlib.sha1(f'{held_out}:{id_}'.encode()).hexdigest()}.jpg"
        image.save(path, quality=90)  # JPEG: 0.2 ms a thumbnail, against 4 ms for WebP and 5 ms for PNG (measured)
        return str(path)

    with gr.Blocks(title="Concept Trainer", fill_width=True) as demo:
        session_state = gr.State(None)
        with gr.Column(elem_classes="ct-header"):
            gr.Markdown("# Concept Trainer")
            gr.Markdown("Teach CLIP a concept in a few rounds: **describe it, score what comes back, train, repeat.**")
            header = gr.Markdown(elem_id="status")
        with gr.Row(equal_height=True):
            prompt = gr.Textbox(
                placeholder="describe the concept, e.g. " + repr(example_prompt(loader)),
                show_label=False,
                scale=5,
                max_lines=1,
                autofocus=True,
                elem_id="prompt",
            )
            search_button = gr.Button("Search", variant="primary", scale=1, elem_id="search")
        saved = gr.BrowserState(None, storage_key="concept-trainer-session", secret=BROWSER_SECRET)
        with gr.Row(visible=False, elem_id="resume-row") as resume_row:
            resume_text = gr.Markdown()
            resume_button = gr.Button("Resume", size="sm", elem_id="resume")
        with gr.Accordion("More: negative prompt, strategy, batch size, training", open=False):
            with gr.Row():
                negative = gr.Textbox(label="Negative prompt (optional)", placeholder="what it is not, e.g. 'cats'")
                strategy = gr.Dropdown(
                    [(STRATEGY_HELP[name], name) for name in RECIPE_NAMES], value="mixed", label="How to pick images"
                )
            with gr.Row():
                batch_size = gr.Slider(4, MAX_BATCH, value=10, step=1, label="Images per round")
                prior_strength = gr.Slider(
                    0.5, 100, value=10, step=0.5, label="Pull toward the prompt (higher = trust the prompt more)"
                )

        with gr.Tabs():
            with gr.Tab("Label", id="label"), gr.Row():
                with gr.Column(scale=3):
                    gr.Markdown(
                        "Slide right for **it**, left for **not it**; leave at 0 for no opinion. "
                        "The number above each slider is the classifier's current score."
                    )
                    cells: list[Any] = []
                    sliders: list[gr.Slider] = []
                    with gr.Row(elem_classes="ct-grid"):
                        for position in range(MAX_BATCH):
                            with gr.Column(
                                visible=False, min_width=150, variant="panel", elem_classes="ct-cell"
                            ) as cell:
                                image = gr.Image(
                                    type="pil",
                                    interactive=False,
                                    show_label=False,
                                    height=150,
                                    buttons=[],
                                    container=False,
                                    elem_classes="ct-image",
                                )
                                slider = gr.Slider(
                                    -1, 1, value=0, step=0.1, label="score", buttons=[], elem_id=f"slider-{position}"
                                )
                            cells += [cell, image, slider]
                            sliders.append(slider)
                    with gr.Row():
                        mark_rest = gr.Button("Mark the rest “not it”", elem_id="mark-rest")
                        train_button = gr.Button("Train & requery", variant="primary", elem_id="train")
                        undo_button = gr.Button("Undo last round", elem_id="undo")
                        restart_button = gr.Button("Start over", variant="stop", elem_id="restart")
                with gr.Column(scale=1, min_width=320):
                    stats = gr.Markdown(stats_markdown(None), elem_classes="ct-stats", elem_id="stats")
                    progress_plot = gr.LinePlot(
                        progress_frame(None),
                        x="round",
                        y="count",
                        color="series",
                        title="Labels per round",
                        height=220,
                    )
                    map_plot = gr.ScatterPlot(
                        map_legend(),
                        x="x",
                        y="y",
                        color="kind",
                        title="Collection map (PCA of the embeddings)",
                        height=320,
                        x_axis_labels_visible=False,
                        color_map=MAP_COLOURS,
                    )

            with gr.Tab("Classify", id="classify"):
                with gr.Row():
                    split = gr.Radio(
                        ["indexed collection", "held-out split"],
                        value="indexed collection",
                        label="Apply the classifier to",
                    )
                    threshold = gr.Slider(0, 1, value=0.5, step=0.01, label="Threshold (P ≥)")
                    classify_button = gr.Button("Classify", variant="primary", elem_id="classify")
                classify_summary = gr.Markdown("Train a few rounds, then classify the whole collection here.")
                matches = gr.Gallery(label="Top matches", columns=8, height="auto", elem_id="matches")

            with gr.Tab("Export & share", id="export"), gr.Row():
                with gr.Column():
                    gr.Markdown(
                        "### Download\nThe classifier (safetensors + config + model card) and every label "
                        "(CSV and JSON Lines), ready to load with `LinearProbe.from_pretrained(folder)`."
                    )
                    export_button = gr.Button("Prepare download", elem_id="export-button")
                    export_files = gr.File(label="Files", file_count="multiple", interactive=False)
                with gr.Column():
                    gr.Markdown("### Push to the Hugging Face Hub")
                    if on_space():
                        gr.LoginButton()
                    else:
                        gr.Markdown("Running locally: pushes use this machine's token (`HF_TOKEN` or `hf auth login`).")
                    repo_id = gr.Textbox(label="Repository", placeholder="your-name/dogs-in-the-snow")
                    with gr.Row():
                        private = gr.Checkbox(label="Private", value=False)
                        overwrite = gr.Checkbox(label="Update the repository if it exists", value=False)
                    push_button = gr.Button("Push to Hub", variant="primary", elem_id="push")
                    push_result = gr.Markdown()
                with gr.Column():
                    gr.Markdown(
                        "### Load a classifier\nA Hub repository or a local folder made by this app, for the same "
                        "CLIP model. Classify with it, or keep training it."
                    )
                    load_source = gr.Textbox(label="Repository or folder", placeholder="someone/red-circles")
                    load_button = gr.Button("Load classifier", elem_id="load")

        round_outputs = [session_state, *cells, stats]
        plot_outputs = [progress_plot, map_plot]

        # ------------------------------------------------------------------------------------------ handlers
        locks: weakref.WeakKeyDictionary[Session, threading.Lock] = weakref.WeakKeyDictionary()
        locks_guard = threading.Lock()

        def exclusive(session: Session) -> threading.Lock:
            """One lock per session: a tab's events (or an API client's parallel calls) change it one at a time."""
            with locks_guard:
                return locks.setdefault(session, threading.Lock())

        def render(session: Session | None) -> list[Any]:
            return [session, *batch_updates(session, thumbnail), stats_markdown(session)]

        def after_round(session: Session | None) -> list[Any]:
            # A chained step: the new batch is on screen before the plots are drawn and the browser saves the labels.
            ws = loader.get()
            return [progress_frame(session), map_frame(ws, session), saved_session(ws, session)]

        def offer(saved_value: Any):
            ready, _, _ = loader.status()
            text = resume_offer(loader.get(), saved_value) if ready else None
            return gr.update(visible=text is not None), text or ""

        def resume(saved_value: Any):
            ws = workspace_or_error(loader)
            session = session_from_saved(ws, saved_value)
            return [session.classifier.prompt or "", *render(session), gr.update(visible=False)]

        def search(prompt_text: str, negative_text: str, strategy_name: str, size: float, prior: float):
            ws = workspace_or_error(loader)
            return render(new_session(ws, prompt_text, negative_text, strategy_name, size, prior))

        def train(session: Session | None, *values: float):
            if session is None:
                raise gr.Error("Search for a concept first: type it above and press Search.")
            with exclusive(session):
                scores = scores_from_sliders(session, values)
                try:
                    session.label(scores)
                    if not any(session.labels.values()):
                        gr.Warning("No labels yet: slide right for 'it', left for 'not it'. Showing new images anyway.")
                    session.train_and_requery()
                except (ValueError, ConnectionError, TimeoutError, IndexUnavailable) as err:
                    raise gr.Error(f"{str(err).rstrip('.')}. Your labels are kept; try again.") from err
                if session.exhausted:
                    gr.Info("That was the last batch: you have seen the whole collection.")
                return render(session)

        def undo(session: Session | None):
            if session is None:
                raise gr.Error("Nothing to undo yet.")
            with exclusive(session):
                try:
                    session.undo()
                except ValueError as err:
                    raise gr.Error(str(err)) from err
                return render(session)

        def mark_rest_not_it(session: Session | None, *values: float):
            size = len(session.batch()) if session else 0
            return [(-1.0 if position < size and value == 0 else value) for position, value in enumerate(values)]

        def classify(session: Session | None, split_name: str, cutoff: float):
            session = require_session(session)
            ws = loader.get()
            held_out = split_name == "held-out split"
            if held_out and ws.eval is None:
                raise gr.Error("This collection has no held-out split; classify the indexed collection.")
            embeddings = ws.eval.embeddings if held_out else ws.embeddings
            probs = session.scores(np.asarray(embeddings.vectors))
            above = int((probs >= cutoff).sum())
            order = np.argsort(-probs, kind="stable")[:GALLERY_SIZE]
            shown = [(i, probs[i]) for i in order if probs[i] >= cutoff]
            images = [(thumbnail(embeddings.ids[i], held_out), f"{p:.2f} · {embeddings.ids[i]}") for i, p in shown]
            summary = (
                f"**{above:,} of {len(probs):,}** images ({above / max(len(probs), 1):.1%}) score ≥ {cutoff:.2f}"
                f" in the {split_name}. Showing the top {len(images)}."
            )
            return summary, images

        def export(session: Session | None) -> list[str]:
            try:
                folder = export_folder(require_session(session), loader.get())
                return [str(zip_export(folder)), str(folder / LABELS_CSV), str(folder / LABELS_JSONL)]
            except OSError as err:  # a full or read-only temporary folder: nothing is lost, the session is untouched
                raise gr.Error(f"Could not write the export ({err.strerror or err}). Your labels are kept.") from None

        def push(
            session: Session | None,
            repo: str,
            private_repo: bool,
            update: bool,
            oauth_token: gr.OAuthToken | None = None,
        ) -> str:
            session = require_session(session)
            try:
                token = token_for_push(oauth_token.token if oauth_token else None, space=on_space())
                url = push_classifier(
                    export_folder(session, loader.get()), repo, token, private=private_repo, exist_ok=update
                )
            except HubError as err:
                raise gr.Error(str(err)) from None  # scrubbed of any token by trainer.hub
            return (
                f"✅ Pushed: [{url}]({url}). Anyone can load it with `LinearProbe.from_pretrained({repo.strip()!r})`."
            )

        def load(source: str, oauth_token: gr.OAuthToken | None = None):
            ws = workspace_or_error(loader)
            if not source or not source.strip():
                raise gr.Error("Enter a Hub repository such as 'someone/red-circles', or a local folder.")
            try:
                probe = load_classifier(
                    source.strip(),
                    expect_base_model=ws.settings.model_id,
                    expect_dim=ws.embedder.dim,
                    token=oauth_token.token if oauth_token else False,
                    local=not on_space(),  # a visitor to a public Space must not make the server read its folders
                )
            except HubError as err:
                raise gr.Error(str(err)) from None
            session = session_from_classifier(ws, probe)
            gr.Info(f"Loaded the classifier for {probe.prompt!r}: classify with it or keep labelling.")
            return [probe.prompt or "", *render(session)]

        # ------------------------------------------------------------------------------------------ wiring
        search_inputs = [prompt, negative, strategy, batch_size, prior_strength]
        plot_args = {"fn": after_round, "inputs": session_state, "outputs": [*plot_outputs, saved], "api_name": False}
        search_button.click(search, search_inputs, round_outputs, api_name="search").then(**plot_args)
        prompt.submit(search, search_inputs, round_outputs, api_name=False).then(**plot_args)
        restart_button.click(search, search_inputs, round_outputs, api_name="start_over").then(**plot_args)
        train_button.click(train, [session_state, *sliders], round_outputs, api_name="train").then(**plot_args)
        undo_button.click(undo, session_state, round_outputs, api_name="undo").then(**plot_args)
        mark_rest.click(mark_rest_not_it, [session_state, *sliders], sliders, api_name="mark_rest")
        classify_inputs = [session_state, split, threshold]
        classify_button.click(classify, classify_inputs, [classify_summary, matches], api_name="classify")
        threshold.release(classify, classify_inputs, [classify_summary, matches], api_name=False)
        export_button.click(export, session_state, export_files, api_name="export")
        push_button.click(push, [session_state, repo_id, private, overwrite], push_result, api_name="push")
        load_button.click(load, load_source, [prompt, *round_outputs], api_name="load").then(**plot_args)
        demo.load(lambda: header_markdown(loader), None, header, api_name=False)
        demo.load(offer, saved, [resume_row, resume_text], api_name=False)
        resume_button.click(resume, saved, [prompt, *round_outputs, resume_row], api_name=False).then(**plot_args)
        timer = gr.Timer(1.0)
        timer.tick(
            lambda: (header_markdown(loader), gr.Timer(active=not loader.status()[0] and not loader.failed)),
            None,
            [header, timer],
            api_name=False,
            show_progress="hidden",
        )
    return demo


# No component takes an upload, but Gradio's upload route is open to anyone: cap what a visitor can send.
MAX_UPLOAD = "5mb"
LAUNCH_KWARGS: dict[str, Any] = {"theme": THEME, "css": CSS, "max_file_size": MAX_UPLOAD}


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings.from_env()
    if settings.torch_threads > 0:
        torch.set_num_threads(settings.torch_threads)  # process-wide; see Settings.torch_threads
    loader = WorkspaceLoader(lambda progress: load_workspace(settings, progress)).start()
    demo = build_demo(loader)
    demo.queue(default_concurrency_limit=settings.concurrency).launch(**LAUNCH_KWARGS)


if __name__ == "__main__":
    main()
