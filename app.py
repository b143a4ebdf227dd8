"""Concept Trainer: teach CLIP a concept in a few rounds. Describe it, score what comes back, train, repeat.

Layout and wiring only: constants, typed handler functions, the Blocks layout, one-line wiring, launch. The engine
(``trainer/``) does the work; the grid and the side panel are ``gr.HTML`` components drawn by ``assets/ui/*.js``,
whose values are plain JSON (a round returns one value, not a component update per image). Each browser tab, and
each API client, owns one ``Workbench`` (its session, and what Undo can bring back) in ``gr.State``.

The scripting API (``gradio_client``), documented in the README:
``/start(prompt, negative="", strategy="mixed", batch_size=10)``, ``/round(labels, more_like=[])`` and ``/undo()``,
each returning ``{"round": n, "batch": [{"id", "score", "thumbnail", ...}], "stats": {...}}``; ``/check(n=20)``
shows a quality check (an audit: cards marked ``"audit": true``) and ``/quality(labels)`` records its labels and
returns the same value with ``"quality"``: the estimates and their 90% intervals.
"""

from __future__ import annotations

import gc
import html
import logging
import math
import os
import re
import threading
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
import torch
from gradio.exceptions import ComponentProcessingError

from trainer.checks import shown
from trainer.config import Settings
from trainer.data import UndecodableImage, load_image
from trainer.export import LABELS_CSV, LABELS_JSONL, export_classifier, write_scores, zip_export
from trainer.files import ScratchSpace, is_local_path, looks_like_path, slug
from trainer.hub import load_classifier, push_classifier
from trainer.hub_calls import HubError, on_space, token_for_push
from trainer.index import IndexUnavailable
from trainer.messages import escape_html as escape
from trainer.messages import markdown_text, user_message
from trainer.progress import ProgressFn
from trainer.quality import Estimate, Quality, verdict
from trainer.session import RECIPE_NAMES, Session
from trainer.views import batch_value, describe_changes, panel_value, rank, suspects_notice
from trainer.workbench import NOTHING_TO_UNDO, Workbench
from trainer.workspace import Workspace, WorkspaceLoader, load_workspace

log = logging.getLogger("concept_trainer.app")

UI = Path(__file__).resolve().parent / "assets" / "ui"  # the grid's and the panel's JS, and the app's CSS
MAX_BATCH = 50  # images a round, at most: a person scores a few dozen at a time, and each is a thumbnail to send
GALLERY_SIZE = 48  # how many top matches Classify shows
TEMP_MAX_AGE_S = 3600  # exports, uploads and Gradio's copies of served files are removed after this at the latest
SPLITS = ("indexed collection", "held-out split")  # what Classify can score
# Images per quality check: one screen of the grid. A single check gives wide intervals; five give ones that hold
# (benchmarks/RESULTS-quality.md).
CHECK_SIZE = 20
SUSPECTS = 10  # labels "Check my labels" brings back, at most: those the classifier doubts (trainer/suspects.py)
NOT_CHECKED = (
    "### Quality\nNot checked yet. **Check quality** shows 20 images drawn at random from those you have not seen: "
    "label them as usual (they are never trained on), and this panel estimates the classifier's average precision, "
    "its precision and recall, and how many images in the collection match, each with a 90% interval."
)
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
# The browser keeps each visitor's session (gr.BrowserState) so a restarted server loses nothing. Gradio encrypts the
# value in the browser with this key, which it therefore sends to every visitor (in the page and in /config): it keeps
# nothing secret, it only has to stay the same across restarts. The saved value is the visitor's own input, and
# Session.from_saved checks it as such.
BROWSER_STATE_KEY = "concept-trainer-browser-state"
# Every event: no progress overlay, because Gradio draws an "Error" badge over each output of a failed event (its
# per-output status trackers) and leaves it there, blanking the grid; hidden, a refused action changes nothing on
# screen and its message is a toast. No preprocessing: handlers get the raw values and check them, with messages.
QUIET: dict[str, Any] = {"show_progress": "hidden", "preprocess": False}
UI_ONLY: dict[str, Any] = {**QUIET, "api_visibility": "private"}
ANALYTICS_EVERY = 100_000  # events between two rebuilds of Gradio's monitoring summary (see Blocks.queue)
IDLE_JS = "() => { document.dispatchEvent(new CustomEvent('ct-idle')); }"  # a refused action ends the busy state


# ------------------------------------------------------------------------------------------------ plain functions
def js_view(name: str, **options: Any) -> gr.HTML:
    """A ``gr.HTML`` that ``assets/ui/<name>.js`` draws into ``<div class="ct-<name>">`` from its value, plain JSON."""
    options = {"label": name, "elem_id": name, "apply_default_css": False, **options}
    return gr.HTML(
        None, html_template=f'<div class="ct-{name}"></div>', js_on_load=(UI / f"{name}.js").read_text(), **options
    )


def header_markdown(loader: WorkspaceLoader) -> str:
    ready, fraction, message = loader.status()
    if not ready:
        if loader.failed:
            return f"**{escape(message)}** Check the server log; the app cannot search until this is fixed."
        return f"⏳ **Preparing the collection: {fraction:.0%}** · {escape(message)}. Search works when done."
    ws = loader.get()
    line = (
        f"`{ws.model_name}` · **{ws.dataset_name}** {len(ws.index):,} images · "
        f"{ws.settings.backend} index · ready in {ws.load_seconds:.1f} s"
    )
    if ws.offline_bundle:
        line += (
            "  \n**Offline demo**: this runs on the bundled tiny CLIP model and a generated collection of shapes "
            "(colour, shape, size, texture, background)"
            + (", because the Hugging Face Hub is not reachable." if not ws.hub_online else ".")
        )
    return line + "".join(f"  \n{note}" for note in ws.notes)


def workspace_or_error(loader: WorkspaceLoader) -> Workspace:
    ready, fraction, message = loader.status()
    if not ready:
        raise refusal(f"Still preparing the collection ({fraction:.0%}: {escape(message)}). Try again soon.")
    return loader.get()


class Blocks(gr.Blocks):
    """``gr.Blocks`` whose every failed event reaches the visitor as a message, never ``{"error": null}``.

    Gradio sends a text only for a ``gr.Error`` (show_error stays off, so that a bug's details, server paths
    included, stay in the log); anything else, its own input checks included (too few arguments, a value a component
    cannot read), reached the visitor as an error with no message. This is the one place that maps them:
    ``trainer.messages.user_message`` words them and ``escape`` keeps any visitor or Hub text in them as text. A
    ``gr.Error`` passes as it is: its text is HTML already escaped where it was raised (``refuse``, ``escape``).
    """

    scratch: ScratchSpace | None = None  # the app's temporary folders (exports), set by build_demo

    def queue(self, *args: Any, **kwargs: Any) -> Blocks:
        """Gradio's queue, less a cost on every event: after each one, Gradio rebuilds a pandas summary of up to
        10,000 past events for its monitoring dashboard (which this app never enables): measured 3.6 ms of server
        CPU per event with 200 events recorded, 11 ms with 10,000, against a round's budget of 25 ms. Gradio's own
        setting for how often to rebuild it then says once per ``ANALYTICS_EVERY`` events, unless the operator set
        it."""
        os.environ.setdefault("GRADIO_ANALYTICS_CACHE_FREQUENCY", str(ANALYTICS_EVERY))
        super().queue(*args, **kwargs)
        return self

    async def process_api(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().process_api(*args, **kwargs)
        except gr.Error:
            raise
        except ComponentProcessingError as err:  # Gradio could not read a value sent for one of the inputs
            what, _, rest = str(err).partition(" of the event handler")
            if "a `image` component" in what:  # an upload Gradio cannot open: say so, not where the server keeps it
                cause = err.__cause__ or err.__context__
                why = f" ({type(cause).__name__})" if cause is not None else ""
                raise refusal(
                    f"That file could not be read as an image{why}: it is corrupt, empty or another kind of file. "
                    "Upload a JPEG, PNG, GIF or WebP image."
                ) from err
            sent = rest.partition("value passed to the event handler was: ")[2].partition("\n")[0]
            raise refusal(escape(f"{what.replace('Could not preprocess', 'Invalid value for')}: {sent}")) from err
        except Exception as err:
            text = user_message(err, expected=(HubError, IndexUnavailable))
            raise gr.Error(escape(text.partition("\n")[0])) from err


def refusal(message: str) -> gr.Error:
    """A request refused for what it asked (a message the visitor acts on), not for a fault of the server: Gradio
    shows the message and, unlike for an error, prints no traceback to the server's log, where a public Space's
    visitors' typos would otherwise bury its real faults (about 40 lines each)."""
    return gr.Error(message, print_exception=False)


def refuse(err: Exception, suffix: str = "") -> gr.Error:
    """A message for a visitor from an engine error; user or dataset text in it is escaped. The engine's ValueError
    and KeyError say what was wrong with the request (a :func:`refusal`); anything else, such as an index that
    cannot be reached, keeps its traceback in the server's log."""
    text = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
    message = escape(text.rstrip(".")) + ("." if text else "") + suffix
    return refusal(message) if isinstance(err, (ValueError, KeyError)) else gr.Error(message)


RoundSettings = tuple[str, int, float | None]  # strategy, batch size, training strength (None: automatic)


def settings_from(strategy: Any, batch_size: Any, prior_strength: Any) -> RoundSettings:
    """The UI's or an API call's settings, checked: (strategy, batch size, training strength: None when 0, which
    means automatic)."""
    if strategy not in RECIPE_NAMES:
        raise refusal(f"Unknown strategy {escape(repr(strategy))}: choose one of {', '.join(RECIPE_NAMES)}.")
    try:
        size = float(batch_size)
        strength = float(prior_strength)
    except (TypeError, ValueError):
        raise refusal("Batch size and training strength must be numbers.") from None
    if not (math.isfinite(size) and size == int(size) and 1 <= size <= MAX_BATCH):
        raise refusal(f"Batch size must be a whole number from 1 to {MAX_BATCH}; got {escape(repr(batch_size))}.")
    if not (math.isfinite(strength) and 0 <= strength <= 1000):
        raise refusal(
            f"Training strength must be a number from 0 (automatic) to 1000; got {escape(repr(prior_strength))}."
        )
    return str(strategy), int(size), strength or None


def round_request(labels: Any, more_like: Any) -> tuple[dict[str, float], list[str]]:
    """A round's labels ``{id: score}`` and "more like this" ids, from a browser event or an API call, checked for
    shape (the Session checks the ids and values)."""
    if labels is None:
        labels = {}
    if not isinstance(labels, dict) or not all(isinstance(k, str) for k in labels):
        raise refusal('Labels must be an object of image id to score, e.g. {"shapes-train-00012": 1, ...}.')
    if more_like is None:
        more_like = []
    if not isinstance(more_like, list) or not all(isinstance(i, str) for i in more_like):
        raise refusal("more_like must be a list of image ids from this session.")
    return labels, more_like


def event_data(evt: gr.EventData | None) -> dict[str, Any]:
    data = getattr(evt, "_data", None)
    return data if isinstance(data, dict) else {}


def new_session(ws: Workspace, prompt: Any, negative: Any, settings: RoundSettings) -> Session:
    if not isinstance(prompt, str) or not prompt.strip():
        examples = ws.collection.example_prompts(1)
        hint = f": for example {escape(repr(examples[0]))}" if examples else ""
        raise refusal(f"Describe the concept first, in a few words{hint}.")
    strategy, size, strength = settings
    try:
        return ws.new_session(prompt, str(negative or ""), strategy=strategy, batch_size=size, prior_strength=strength)
    except (ValueError, IndexUnavailable) as err:  # IndexUnavailable: a remote index down; says what to do
        raise refuse(err) from err


def run_round(session: Session, labels: dict[str, float], more_like: list[str]) -> None:
    """Label and train; a refused or failed round keeps every label given before it."""
    try:
        session.label(labels)
        if not any(session.labels.values()):
            gr.Warning("No labels yet: mark images “it” or “not it”. Showing new images anyway.")
        session.train_and_requery(more_like)
    except (ValueError, KeyError) as err:
        raise refuse(err, " Nothing was changed.") from err
    except (ConnectionError, TimeoutError, IndexUnavailable) as err:
        raise refuse(err, " Your labels are kept; try again.") from err
    if session.exhausted:
        gr.Info("That was the last batch: you have seen the whole collection.")


def quality_json(quality: Quality | None) -> dict[str, Any] | None:
    """A quality estimate as plain JSON: each figure ``{"value", "low", "high"}`` (a 90% interval) or None."""
    if quality is None:
        return None

    def figure(estimate: Estimate | None) -> dict[str, float] | None:
        if estimate is None or not math.isfinite(estimate.value):
            return None
        return {"value": round(estimate.value, 4), "low": round(estimate.low, 4), "high": round(estimate.high, 4)}

    return {
        "method": quality.method,
        "optimistic": quality.optimistic,
        "threshold": quality.threshold,
        "check_labels": quality.audited,
        "training_labels": quality.trained_on,
        "collection_size": quality.collection_size,
        "predicted": quality.predicted,
        **{name: figure(getattr(quality, name)) for name in ("ap", "precision", "recall", "prevalence", "matches")},
        "verdict": verdict(quality),
    }


def quality_now(session: Session) -> str:
    """The quality panel for a session that comes back (Undo, Resume): its estimate if it was checked, else the
    invitation to check."""
    if not session.audit_labels:
        return NOT_CHECKED
    return quality_markdown(session.quality(), session.round)


def quality_markdown(quality: Quality | None, round_: int) -> str:
    """The quality panel: the estimates with their intervals, what they rest on, and a plain verdict."""
    if quality is None:
        return NOT_CHECKED

    def cell(estimate: Estimate | None, digits: str = ".2f") -> str:
        if estimate is None or not math.isfinite(estimate.value):
            return "–"
        return f"**{estimate.value:{digits}}** ({estimate.low:{digits}}–{estimate.high:{digits}})"

    at = f"{quality.threshold:.2f}"
    rows = [
        "| | estimate (90% interval) |",
        "|---|---|",
        f"| Average precision | {cell(quality.ap)} |",
        f"| Precision at ≥ {at} | {cell(quality.precision)} |",
        f"| Recall at ≥ {at} | {cell(quality.recall)} |",
    ]
    if quality.optimistic:
        title = f"### Quality · round {round_} · optimistic"
        basis = (
            f"Cross-validated on your {quality.trained_on} training labels, which the classifier itself chose: they "
            "flatter it, and say nothing of how many images match. **Check quality** for an honest estimate."
        )
    else:
        rows.append(f"| Matching images | {cell(quality.matches, ',.0f')} of {quality.collection_size:,} |")
        title = f"### Quality · round {round_}"
        basis = (
            f"From {quality.audited} check labels (images drawn at random, never trained on) and "
            f"{quality.trained_on} training labels, for the classifier of round {round_}. Check again after more "
            "training; every check narrows the intervals."
        )
    return "\n".join([title, f"**{verdict(quality)}**", "", *rows, "", basis])


def resumed(ws: Workspace, saved: Any) -> Session:
    """The session the browser's saved copy describes (untrusted: checked field by field), or a message."""
    if ws.resume_offer(saved) is None:
        raise refusal("There is no saved session for this model and collection to resume.")
    try:
        return ws.session_from_saved(saved, max_batch_size=MAX_BATCH)
    except ValueError as err:
        raise refusal(f"The saved session cannot be resumed ({escape(str(err))}). Search instead.") from None


def saved_copy(bench: Workbench) -> Any:
    """The browser's copy after an action: replaced only by a session holding labels (training or check labels),
    never by an empty one."""
    session = bench.session
    if session is None or not (any(session.labels.values()) or session.audit_labels):
        return gr.skip()
    return session.to_saved()


def export_folder(session: Session, ws: Workspace, scratch: ScratchSpace) -> Path:
    """Write the classifier, its card and its labels to a fresh folder of the app's scratch space."""
    folder = scratch.new("export-") / (slug(session.classifier.prompt or "") or "classifier")
    return export_classifier(session, folder, collection=ws.collection_name)


def require_session(bench: Workbench | None) -> Session:
    if bench is None or bench.session is None:
        raise refusal("Search for a concept first: type it above and press Search.")
    return bench.session


def estimate_line(quality: Quality | None, cutoff: float) -> str:
    """What Classify says about precision and recall at its threshold."""
    if quality is None:
        return "Label a few rounds and **Check quality** (Label tab) to estimate precision and recall here."
    precision = "–" if quality.precision is None else f"{quality.precision.value:.2f}"
    low_high = "" if quality.precision is None else f" ({quality.precision.low:.2f}–{quality.precision.high:.2f})"
    text = (
        f"Estimated at ≥ {cutoff:.2f}: precision **{precision}**{low_high}, recall **{quality.recall.value:.2f}** "
        f"({quality.recall.low:.2f}–{quality.recall.high:.2f}), 90% intervals on the indexed collection"
    )
    if quality.optimistic:
        return text + ", from the training labels only: optimistic until you **Check quality**."
    return text + f", from {quality.audited} check labels."


def label_check(session: Session, labels: dict[str, float]) -> None:
    """Label the quality check on screen; an image of it left without a label counts as seen, with no opinion.

    An id that is not in the check is refused, and nothing changes: dropped, it would leave every image of the check
    seen with no opinion, the check spent on nothing (a script's typo, or the round's ids sent by mistake)."""
    pending = session.pending_audit()
    stray = sorted(set(labels) - {hit.id for hit in pending})
    if stray:
        where = (
            "are not in the quality check waiting for labels; label the images it showed (their cards say "
            '"audit": true)'
            if pending
            else "cannot be labelled as a check: no quality check is waiting for labels (Check quality, or /check, "
            "draws one)"
        )
        raise refusal(f"{len(stray)} id(s) {where}: {escape(shown(stray))}. Nothing was changed.")
    try:
        session.label({hit.id: labels.get(hit.id, 0.0) for hit in pending})
    except (ValueError, KeyError) as err:
        raise refuse(err, " Nothing was changed.") from err


def matches_html(ws: Workspace, hits: list, held_out: bool) -> str:
    """Classify's top matches: each thumbnail with its score and id, its caption (or id) as alt text."""
    thumbnails = ws.held_out_thumbnails if held_out else ws.thumbnails
    collection = ws.eval.collection if held_out and ws.eval else ws.collection
    figures = []
    for hit in hits:
        name, alt = html.escape(hit.id), html.escape(collection.caption(hit.id) or hit.id)
        figures.append(
            f'<figure><img src="{thumbnails.data_uri(hit.id)}" alt="{alt}" loading="lazy">'  # type: ignore[union-attr]
            f"<figcaption>{hit.score:.2f} · {name}</figcaption></figure>"
        )
    return f'<div class="ct-matches">{"".join(figures)}</div>'


# ------------------------------------------------------------------------------------------------ the app
def build_demo(loader: WorkspaceLoader) -> gr.Blocks:
    """The whole UI over one (possibly still loading) workspace. Launch with ``demo.launch(**LAUNCH_KWARGS)``."""

    defaults = Settings.from_env()  # CT_STRATEGY and CT_BATCH_SIZE: the settings a visitor starts with
    if defaults.strategy not in RECIPE_NAMES:
        raise ValueError(
            f"CT_STRATEGY={defaults.strategy!r} is not a strategy; choose one of {', '.join(RECIPE_NAMES)}"
        )
    # Exports and score files live in one scratch space: removed when their visitor's tab closes, or after an hour
    # at the latest.
    # Gradio's own copies of what it served, and visitors' uploads, go after an hour too (delete_cache).
    scratch = ScratchSpace(max_age_s=TEMP_MAX_AGE_S)
    exports: dict[str, list[Path]] = {}  # per browser session: the export folders made for it
    exports_lock = threading.Lock()
    with Blocks(title="Concept Trainer", fill_width=True, delete_cache=(TEMP_MAX_AGE_S, TEMP_MAX_AGE_S)) as demo:
        demo.scratch = scratch
        bench_state = gr.State(None)
        saved = gr.BrowserState(None, storage_key="concept-trainer-session", secret=BROWSER_STATE_KEY)
        with gr.Column(elem_classes="ct-header"):
            gr.Markdown("# Concept Trainer")
            gr.Markdown("Teach CLIP a concept in a few rounds: **describe it, score what comes back, train, repeat.**")
            header = gr.Markdown(elem_id="status")
        with gr.Row(equal_height=True):
            prompt = gr.Textbox(
                placeholder="describe the concept you are looking for",
                label="prompt",  # not shown: it names the value in the API's description (/load returns it)
                show_label=False,
                scale=5,
                max_lines=1,
                autofocus=True,
                elem_id="prompt",
            )
            search_button = gr.Button("Search", variant="primary", scale=1, elem_id="search")
        examples = js_view("examples")
        with gr.Accordion("More: negative prompt, strategy, batch size, training, start from an image", open=False):
            with gr.Row():
                negative = gr.Textbox(
                    label="Negative prompt (optional)", placeholder="what it is not", elem_id="negative"
                )
                strategy = gr.Dropdown(
                    [(STRATEGY_HELP[name], name) for name in RECIPE_NAMES],
                    value=defaults.strategy,
                    label="How to pick images",
                    elem_id="strategy",
                )
            with gr.Row():
                batch_size = gr.Slider(
                    1,
                    MAX_BATCH,
                    value=min(max(defaults.batch_size, 1), MAX_BATCH),
                    step=1,
                    label="Images per round",
                    elem_id="batch-size",
                )
                prior_strength = gr.Slider(
                    0,
                    100,
                    value=0,
                    step=0.5,
                    label="Pull toward the prompt (0 = automatic, set by your labels; higher = trust the prompt more)",
                    elem_id="strength",
                )
            gr.Markdown("Changes apply from the next round, and the line above the images says what changed.")
            query_image = gr.Image(
                type="filepath",
                # No mode: Gradio then hands over the uploaded file as it is. With its default "RGB" it decodes and
                # converts any other mode first, a 12,000 x 12,000 one-bit PNG of 30 KB into 432 MB of pixels (the
                # server's memory rose 700 MB), before load_image could refuse it from its header.
                image_mode=None,
                label="Or start from an image: drop one here",
                sources=["upload", "clipboard"],
                height=160,
                elem_id="query-image",
            )

        with gr.Tabs():
            with gr.Tab("Label", id="label"), gr.Row():
                with gr.Column(scale=3, min_width=300):
                    grid = js_view("grid", label="round")
                with gr.Column(scale=1, min_width=280):
                    quality_panel = gr.Markdown(
                        NOT_CHECKED, label="quality", elem_id="quality", elem_classes="ct-quality"
                    )
                    panel = js_view("panel")

            with gr.Tab("Classify", id="classify"):
                with gr.Row():
                    split = gr.Radio(
                        list(SPLITS),
                        value="indexed collection",
                        label="Apply the classifier to",
                    )
                    threshold = gr.Slider(0, 1, value=0.5, step=0.01, label="Threshold (P ≥)")
                    classify_button = gr.Button("Classify", variant="primary", elem_id="classify")
                # The labels are not shown; they name the values in the API's description (``view_api``).
                classify_summary = gr.Markdown(
                    "Train a few rounds, then classify the whole collection here.", label="summary"
                )
                classify_estimate = gr.Markdown(label="estimate", elem_id="classify-estimate")
                results_file = gr.File(
                    label="Every image's score, best first (CSV: id, score)", interactive=False, elem_id="results-file"
                )
                matches = gr.HTML("", label="matches", elem_id="matches", js_on_load=None)

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
                    hub_note = gr.Markdown(elem_id="hub-note")
                    repo_id = gr.Textbox(label="Repository", placeholder="your-name/red-circles")
                    with gr.Row():
                        private = gr.Checkbox(label="Private", value=False)
                        overwrite = gr.Checkbox(label="Update the repository if it exists", value=False)
                    push_button = gr.Button("Push to Hub", variant="primary", elem_id="push")
                    push_result = gr.Markdown(label="result")
                with gr.Column():
                    gr.Markdown(
                        "### Load a classifier\nA Hub repository or a local folder made by this app, for the same "
                        "CLIP model. Classify with it, or keep training it."
                    )
                    load_note = gr.Markdown(elem_id="load-note")
                    load_source = gr.Textbox(label="Repository or folder", placeholder="someone/red-circles")
                    load_button = gr.Button("Load classifier", elem_id="load")

        # The scripting API's inputs: hidden, so that each parameter has its name and default in the API docs.
        with gr.Column(visible=False):
            api_prompt = gr.Textbox(label="prompt")
            api_negative = gr.Textbox("", label="negative")
            api_strategy = gr.Textbox("mixed", label="strategy")
            api_batch_size = gr.Number(10, label="batch_size")
            api_labels = gr.JSON(label="labels")
            api_more_like = gr.JSON([], label="more_like")
            api_check_size = gr.Number(CHECK_SIZE, label="n")
            api_start, api_round, api_undo = gr.Button(), gr.Button(), gr.Button()
            api_check, api_quality = gr.Button(), gr.Button()
        settings_inputs = [negative, strategy, batch_size, prior_strength]
        ui_outputs = [bench_state, grid, panel, saved, quality_panel]

        # ------------------------------------------------------------------------------------------ handlers
        def respond(ws: Workspace, bench: Workbench, quality: Any = None, **grid_options: Any) -> list[Any]:
            """The outputs of a grid action; ``quality`` is the quality panel's new text (None: leave it as it is)."""
            return [
                bench,
                batch_value(ws, bench, **grid_options),
                panel_value(ws, bench.session),
                saved_copy(bench),
                gr.skip() if quality is None else quality,
            ]

        def bench_for(ws: Workspace, bench: Workbench | None, saved_value: Any) -> tuple[Workbench, str | None]:
            """This tab's workbench. After a server restart the tab's session is gone: its browser copy comes back."""
            bench = bench or Workbench()
            if bench.session is None and ws.resume_offer(saved_value) is not None:
                session = resumed(ws, saved_value)
                bench.start(session, session.classifier.prompt)
                return bench, "The server restarted: your labels are back from this browser's copy."
            return bench, None

        def apply_settings(ws: Workspace, bench: Workbench, negative_text: Any, settings: RoundSettings):
            strategy_name, size, strength = settings
            require_session(bench)
            try:
                changes = bench.configure(
                    ws.prior_for,
                    negative_prompt=str(negative_text or ""),
                    strategy=strategy_name,
                    batch_size=size,
                    prior_strength=strength,
                )
            except ValueError as err:
                raise refuse(err) from err
            return describe_changes(changes)

        def on_search(bench, saved_value, prompt_text, negative_text, strategy_name, size, strength):
            ws = workspace_or_error(loader)
            settings = settings_from(strategy_name, size, strength)
            bench = bench or Workbench()
            with bench.lock:
                bench.start(new_session(ws, prompt_text, negative_text, settings), str(prompt_text).strip())
            return respond(ws, bench, quality=NOT_CHECKED)

        def on_example(bench, saved_value, negative_text, strategy_name, size, strength, evt: gr.EventData):
            text = event_data(evt).get("prompt")
            return [text, *on_search(bench, saved_value, text, negative_text, strategy_name, size, strength)]

        def on_image(bench, saved_value, image_path, negative_text, strategy_name, size, strength):
            ws = workspace_or_error(loader)
            if not image_path:
                return [gr.skip()] * len(ui_outputs)
            settings = settings_from(strategy_name, size, strength)
            try:
                image = load_image(image_path)
            except UndecodableImage as err:
                raise refuse(err) from err
            name = f"images like {Path(str(image_path)).name}"
            bench = bench or Workbench()
            with bench.lock:
                query = ws.image_vector(image)
                session = ws.new_session(
                    name,
                    str(negative_text or ""),
                    query=query,
                    strategy=settings[0],
                    batch_size=settings[1],
                    prior_strength=settings[2],
                )
                bench.start(session, query)
            return respond(ws, bench, quality=NOT_CHECKED)

        def on_train(bench, saved_value, negative_text, strategy_name, size, strength, evt: gr.EventData):
            ws = workspace_or_error(loader)
            data = event_data(evt)
            labels, more_like = round_request(data.get("labels"), data.get("more"))
            settings = settings_from(strategy_name, size, strength)
            bench, notice = bench_for(ws, bench, saved_value)
            with bench.lock:
                session = require_session(bench)
                if notice:  # the batch on screen is the one from before the restart: it was shown
                    try:
                        session.add_to_batch(list(labels))
                    except KeyError as err:
                        raise refuse(err) from err
                changes = apply_settings(ws, bench, negative_text, settings)
                run_round(session, labels, more_like)
            return respond(ws, bench, changes=changes, notice=notice)

        def on_undo(bench, saved_value):
            ws = workspace_or_error(loader)
            if bench is None or bench.undo_kind is None:
                raise refusal(f"{NOTHING_TO_UNDO.capitalize()}.")
            with bench.lock:
                kind = bench.undo()
                # A round undone: the estimate is of the classifier before it. Check labels are never undone.
                quality = quality_now(bench.session)  # type: ignore[arg-type]
            notice = "Start over undone: your earlier session and its labels are back." if kind == "start" else None
            return respond(ws, bench, quality=quality, notice=notice)

        def labelled_then(bench, saved_value, evt: gr.EventData, action: Any) -> tuple[Workspace, Workbench, Any, Any]:
            """Keep the labels set on the batch on screen (not trained yet), then ``action(session)``, all-or-nothing
            for a refused label. Returns the workspace, the workbench, a notice (or None) and what ``action`` did."""
            ws = workspace_or_error(loader)
            labels, _ = round_request(event_data(evt).get("labels"), [])
            bench, notice = bench_for(ws, bench, saved_value)
            with bench.lock:
                session = require_session(bench)
                try:
                    session.label(labels)
                    return ws, bench, notice, action(session)
                except (ValueError, KeyError) as err:
                    raise refuse(err, " Nothing was changed.") from err

        def on_audit(bench, saved_value, evt: gr.EventData):
            """Check quality: keep the labels set on the batch on screen (not trained yet), then show a check."""

            def draw_check(session: Session) -> str | None:
                if not (session.pending_audit() or session.audit(CHECK_SIZE)):
                    raise refusal("Every image has been seen: there is nothing left to check with.")
                return None if session.audit_labels else quality_markdown(session.quality(), session.round)

            ws, bench, notice, quality = labelled_then(bench, saved_value, evt, draw_check)
            notice = notice or "Label them as usual: it or not it. Then press Done: estimate quality."
            return respond(ws, bench, quality=quality, notice=notice)

        def on_check(bench, saved_value, evt: gr.EventData):
            """Done with a check (or skipped it): record its labels, then estimate quality."""
            ws = workspace_or_error(loader)
            data = event_data(evt)
            labels, _ = round_request(data.get("labels"), [])
            skipped = bool(data.get("skip"))
            bench, notice = bench_for(ws, bench, saved_value)  # a check on screen survives a restart: it was saved
            with bench.lock:
                session = require_session(bench)
                label_check(session, {} if skipped else labels)
                if skipped:
                    notice = notice or "Check skipped: its images count as seen, with no opinion."
                    return respond(ws, bench, notice=notice)
                return respond(ws, bench, quality=quality_markdown(session.quality(), session.round), notice=notice)

        def on_suspects(bench, saved_value, evt: gr.EventData):
            """Check my labels: keep the labels set on the batch on screen, then bring back the doubted labels."""

            def bring_back(session: Session) -> list[str]:
                doubted = [s.id for s in session.suspect_labels(SUSPECTS) if s.doubt > 0.5]
                session.add_to_batch(doubted)
                return doubted

            ws, bench, notice, doubted = labelled_then(bench, saved_value, evt, bring_back)
            return respond(ws, bench, notice=notice or suspects_notice(len(doubted)), suspects=doubted)

        def on_resume(bench, saved_value):
            ws = workspace_or_error(loader)
            session = resumed(ws, saved_value)
            bench = bench or Workbench()
            with bench.lock:
                bench.start(session, session.classifier.prompt)
                quality = quality_now(session)  # its quality checks came back with it
            return [session.classifier.prompt or "", *respond(ws, bench, quality=quality)]

        def on_pick(bench, saved_value, evt: gr.EventData):
            ws = workspace_or_error(loader)
            data = event_data(evt)
            session = require_session(bench)
            if isinstance(data.get("row"), int) and 0 <= data["row"] < len(ws.map_rows):
                id_ = ws.embeddings.ids[int(ws.map_rows[data["row"]])]
            elif isinstance(data.get("id"), str):
                id_ = data["id"]
            else:
                raise refusal("Click a point of the map to show that image.")
            with bench.lock:
                try:
                    session.add_to_batch([id_])
                except KeyError as err:
                    raise refuse(err) from err
            return respond(ws, bench)

        def on_page_load(bench, saved_value):
            """A page (re)loaded, or the collection became ready: the Hub's state, example prompts, the empty map and
            an offer to resume the browser's saved session. Never touches a session already on screen."""
            ready, _, _ = loader.status()
            if not ready:
                return [gr.skip()] * len(page_outputs)
            ws = loader.get()
            offline = "⚠️ The Hugging Face Hub cannot be reached from this server, so "
            hub_outputs = [
                ws.collection.example_prompts(3),
                "" if ws.hub_online else offline + "pushing is off: use **Prepare download** instead.",
                gr.update(interactive=ws.hub_online),
                "" if ws.hub_online else offline + "only a local folder made by this app loads.",
            ]
            if bench is not None and bench.session is not None:
                return [gr.skip(), gr.skip(), *hub_outputs]
            value = {**batch_value(ws, None), "offer": ws.resume_offer(saved_value)}
            return [value, panel_value(ws, None), *hub_outputs]

        # ---- the scripting API
        def start(prompt, negative="", strategy="mixed", batch_size=10, bench=None):
            """Start a session for a prompt. Returns {"round": 1, "batch": [{"id", "score", "thumbnail", "label", ...}],
            "stats": {...}}. Replaces this client's session (/undo brings it back)."""
            ws = workspace_or_error(loader)
            settings = settings_from(strategy, batch_size, 0)  # automatic training strength
            bench = bench or Workbench()
            with bench.lock:
                bench.start(new_session(ws, prompt, negative, settings), str(prompt).strip())
                return bench, batch_value(ws, bench)

        def round(labels, more_like=None, bench=None):  # the API's name: shadows the builtin in here only
            """Label the batch ({id: score in [-1, 1]}; more_like: ids whose neighbours to show next), train on every
            label so far, and return the next {"round", "batch", "stats"}."""
            ws = workspace_or_error(loader)
            labels, more = round_request(labels, more_like)
            session = require_session(bench)
            with bench.lock:
                run_round(session, labels, more)
                return bench, batch_value(ws, bench)

        def undo(bench=None):
            """Take back the last round (or the last /start): returns {"round", "batch", "stats"} as they were, the
            batch's labels included."""
            ws = workspace_or_error(loader)
            if bench is None or bench.undo_kind is None:
                raise refusal(f"{NOTHING_TO_UNDO.capitalize()}.")
            with bench.lock:
                bench.undo()
                return bench, batch_value(ws, bench)

        def check(n=CHECK_SIZE, bench=None):
            """Show a quality check: n images drawn at random from those not yet seen, stratified by score, marked
            "audit": true. Label them with /quality; they are never trained on. Returns {"round", "batch", ...}."""
            ws = workspace_or_error(loader)
            session = require_session(bench)
            try:
                size = int(n)
            except (TypeError, ValueError):
                raise refusal(f"n must be a whole number of images; got {escape(repr(n))}.") from None
            if not 1 <= size <= MAX_BATCH:
                raise refusal(f"A check shows 1 to {MAX_BATCH} images; got {size}.")
            with bench.lock:
                try:
                    drawn = session.pending_audit() or session.audit(size)
                except (ValueError, KeyError) as err:
                    raise refuse(err) from err
                if not drawn:
                    raise refusal("Every image has been seen: there is nothing left to check with.")
                return bench, batch_value(ws, bench)

        def quality(labels, bench=None):
            """Label the quality check ({id: score}; an image left out: no opinion) and estimate the classifier's
            quality: returns {"round", "batch", "stats", "quality": {"ap": {"value", "low", "high"}, "precision",
            "recall", "prevalence", "matches", "threshold", "check_labels", "verdict", ...}} (90% intervals)."""
            ws = workspace_or_error(loader)
            labels, _ = round_request(labels, [])
            session = require_session(bench)
            with bench.lock:
                label_check(session, labels)
                return bench, {**batch_value(ws, bench), "quality": quality_json(session.quality())}

        # ---- classify, export, push, load
        def keep_until_the_tab_closes(request: gr.Request, folder: Path) -> None:
            with exports_lock:
                exports.setdefault(request.session_hash or "", []).append(folder)

        def classify(bench, split_name, cutoff, request: gr.Request):
            session = require_session(bench)
            ws = workspace_or_error(loader)
            if split_name not in SPLITS:
                raise refusal(f"Choose what to classify: {' or '.join(SPLITS)}.")
            held_out = split_name == "held-out split"
            if held_out and ws.eval is None:
                raise refusal("This collection has no held-out split; classify the indexed collection.")
            try:
                cutoff = float(cutoff)
            except (TypeError, ValueError):
                raise refusal(f"The threshold must be a number from 0 to 1; got {escape(repr(cutoff))}.") from None
            try:
                embeddings = ws.eval.embeddings if held_out else ws.embeddings  # type: ignore[union-attr]
                ranking = rank(session, embeddings.ids, embeddings.vectors, cutoff, GALLERY_SIZE)
            except (TypeError, ValueError) as err:
                raise refuse(err) from err
            summary_text = (
                f"**{ranking.above:,} of {ranking.total:,}** images ({ranking.above / max(ranking.total, 1):.1%}) "
                f"score ≥ {cutoff:.2f} in the {split_name}. Showing the top {len(ranking.top)}."
            )
            with bench.lock:
                estimate = estimate_line(session.quality(threshold=min(max(cutoff, 0.001), 0.999)), cutoff)
            scores = session.scores(np.asarray(embeddings.vectors))
            folder = scratch.new("scores-")
            keep_until_the_tab_closes(request, folder)
            name = slug(session.classifier.prompt or "") or "classifier"
            csv_path = write_scores(embeddings.ids, scores, folder / f"{name}-scores.csv")
            return (
                summary_text,
                estimate,
                str(csv_path),
                matches_html(ws, ranking.top, held_out),
            )

        def export(bench, request: gr.Request) -> list[str]:
            try:
                folder = export_folder(require_session(bench), loader.get(), scratch)
                keep_until_the_tab_closes(request, folder.parent)
                return [str(zip_export(folder)), str(folder / LABELS_CSV), str(folder / LABELS_JSONL)]
            except OSError as err:  # a full or read-only temporary folder: nothing is lost, the session is untouched
                raise gr.Error(f"Could not write the export ({err.strerror or err}). Your labels are kept.") from None

        def push(bench, repo: str, private_repo: bool, update: bool, oauth_token: gr.OAuthToken | None = None) -> str:
            session = require_session(bench)
            ws = workspace_or_error(loader)
            if not ws.hub_online:
                raise refusal("The Hugging Face Hub cannot be reached from this server: use Prepare download.")
            try:
                token = token_for_push(oauth_token.token if oauth_token else None, space=on_space())
                # The session itself: push_classifier exports it to a temporary folder of its own, removes it after,
                # and never names that folder in a message.
                url = push_classifier(
                    session, repo, token, private=private_repo, exist_ok=update, collection=ws.collection_name
                )
            except HubError as err:
                raise refuse(err) from None  # scrubbed of any token by trainer.hub_calls
            # The URL comes from the Hub's answer: shown as text, and a link only if it is an https address.
            link = f"[{markdown_text(url)}](<{url}>)" if re.fullmatch(r"https://[^\s<>]+", url) else markdown_text(url)
            return f"✅ Pushed: {link}. Anyone can load it with `LinearProbe.from_pretrained({repo.strip()!r})`."

        def load(bench, source: str, oauth_token: gr.OAuthToken | None = None):
            ws = workspace_or_error(loader)
            if not isinstance(source, str) or not source.strip():
                raise refusal("Enter a Hub repository such as 'someone/red-circles', or a local folder.")
            local = not on_space()  # a visitor to a public Space must not make the server read its folders
            folder_like = is_local_path(source) if local else looks_like_path(source)
            if not ws.hub_online and not folder_like:  # a repo id: refused at once rather than after retries
                raise refusal("The Hugging Face Hub cannot be reached from this server, so only a local folder loads.")
            try:
                probe = load_classifier(
                    source.strip(),
                    expect_base_model=ws.base_model,
                    expect_dim=ws.embedder.dim,
                    token=oauth_token.token if oauth_token else False,
                    local=local,
                )
            except HubError as err:
                raise refuse(err) from None
            bench = bench or Workbench()
            with bench.lock:
                bench.start(ws.session_from(probe))
            gr.Info(f"Loaded the classifier for {escape(repr(probe.prompt))}: classify with it or keep labelling.")
            return [probe.prompt or "", *respond(ws, bench, quality=NOT_CHECKED)]

        # ------------------------------------------------------------------------------------------ wiring
        ui_start = [bench_state, saved, prompt, *settings_inputs]
        ui_round = [bench_state, saved, *settings_inputs]
        for trigger in (search_button.click, prompt.submit):
            trigger(on_search, ui_start, ui_outputs, **UI_ONLY).failure(None, js=IDLE_JS)
        grid.restart(on_search, ui_start, ui_outputs, **UI_ONLY).failure(None, js=IDLE_JS)
        grid.train(on_train, ui_round, ui_outputs, **UI_ONLY).failure(None, js=IDLE_JS)
        grid.undo(on_undo, [bench_state, saved], ui_outputs, **UI_ONLY).failure(None, js=IDLE_JS)
        grid.resume(on_resume, [bench_state, saved], [prompt, *ui_outputs], **UI_ONLY).failure(None, js=IDLE_JS)
        grid.audit(on_audit, [bench_state, saved], ui_outputs, **UI_ONLY).failure(None, js=IDLE_JS)
        grid.check(on_check, [bench_state, saved], ui_outputs, **UI_ONLY).failure(None, js=IDLE_JS)
        grid.suspects(on_suspects, [bench_state, saved], ui_outputs, **UI_ONLY).failure(None, js=IDLE_JS)
        panel.pick(on_pick, [bench_state, saved], ui_outputs, **UI_ONLY)
        examples.example(on_example, ui_round, [prompt, *ui_outputs], **UI_ONLY)
        query_image.upload(
            on_image,
            [bench_state, saved, query_image, *settings_inputs],
            ui_outputs,
            show_progress="hidden",
            api_visibility="private",
        )
        api_start.click(
            start,
            [api_prompt, api_negative, api_strategy, api_batch_size, bench_state],
            [bench_state, grid],
            api_name="start",
            **QUIET,
        )
        api_round.click(round, [api_labels, api_more_like, bench_state], [bench_state, grid], api_name="round", **QUIET)
        api_undo.click(undo, [bench_state], [bench_state, grid], api_name="undo", **QUIET)
        api_check.click(check, [api_check_size, bench_state], [bench_state, grid], api_name="check", **QUIET)
        api_quality.click(quality, [api_labels, bench_state], [bench_state, grid], api_name="quality", **QUIET)
        classify_inputs = [bench_state, split, threshold]
        classify_outputs = [classify_summary, classify_estimate, results_file, matches]
        classify_button.click(classify, classify_inputs, classify_outputs, api_name="classify", **QUIET)
        threshold.release(classify, classify_inputs, classify_outputs, api_visibility="private", **QUIET)
        export_button.click(export, bench_state, export_files, api_name="export", **QUIET)
        push_inputs = [bench_state, repo_id, private, overwrite]
        push_button.click(push, push_inputs, push_result, api_name="push", **QUIET)
        load_button.click(load, [bench_state, load_source], [prompt, *ui_outputs], api_name="load", **QUIET)

        def forget_exports(request: gr.Request) -> None:
            """The tab closed or reloaded: its exports go (Gradio's copies of them go with its cache)."""
            with exports_lock:
                folders = exports.pop(request.session_hash or "", [])
            scratch.remove(folders)

        demo.unload(forget_exports)
        demo.load(lambda: header_markdown(loader), None, header, api_visibility="private")
        page_outputs = [grid, panel, examples, hub_note, push_button, load_note]
        demo.load(on_page_load, [bench_state, saved], page_outputs, **UI_ONLY)
        timer = gr.Timer(1.0)
        timer.tick(
            lambda: (header_markdown(loader), gr.Timer(active=not loader.status()[0] and not loader.failed)),
            None,
            [header, timer],
            api_visibility="private",
            show_progress="hidden",
        ).then(on_page_load, [bench_state, saved], page_outputs, **UI_ONLY)
    return demo


CSS = (UI / "app.css").read_text()
# The upload route is open to anyone (and now takes a query image): cap what a visitor can send.
MAX_UPLOAD = "5mb"
LAUNCH_KWARGS: dict[str, Any] = {"theme": THEME, "css": CSS, "max_file_size": MAX_UPLOAD}


def load_and_freeze(settings: Settings, progress: ProgressFn) -> Workspace:
    """The workspace, then every object alive at that point moved out of the cyclic garbage collector's reach
    (``gc.freeze``). Loaded, the server holds about 520,000 objects the collector tracks (torch, transformers, the
    collection), all of them for its whole life; each full collection walked every one: 340 ms of CPU (bundle, idle
    machine), charged to whichever request's thread triggered it (a visitor's connection in the load test). Frozen,
    a full collection walks only what came after. Reference counting still frees them; only a reference cycle among
    them that became garbage later would stay, and none is expected among objects kept for the process's life."""
    workspace = load_workspace(settings, progress)
    gc.collect()  # the loading's own garbage first, so that it is not frozen with the rest
    gc.freeze()
    return workspace


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings.from_env()
    if settings.torch_threads > 0:
        torch.set_num_threads(settings.torch_threads)  # process-wide; see Settings.torch_threads
    loader = WorkspaceLoader(lambda progress: load_and_freeze(settings, progress)).start()
    demo = build_demo(loader)
    demo.queue(default_concurrency_limit=settings.concurrency).launch(**LAUNCH_KWARGS)


if __name__ == "__main__":
    main()
