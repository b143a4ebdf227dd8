"""The model card of a shared classifier: YAML metadata the Hub indexes, then what a person needs to know.

The card says what the classifier detects (the prompt and negative prompt), how it was made (labels of each sign,
rounds, strategy, recipe), how good it is (the audit's estimates with their 90% intervals, also in the metadata's
``model-index`` so the Hub shows them; else a cross-validated figure marked optimistic, or plainly that nothing was
measured), how to use it (two copy-paste snippets: with this project, and with only torch + transformers +
safetensors) and its limitations. It is built with huggingface_hub's ``ModelCard.from_template`` so the metadata
block is written by the same code the Hub reads it with.

Rounds are counted the way the app numbers them: a label given while the app showed "Round 2" belongs to round 2,
so a card exported then says 2 rounds (and notes which labels the weights have not been trained on yet); with
nothing labelled in round 2 yet, it says 1. A session rebuilt from the browser's saved copy keeps its labels' rounds
and its round count. Labels carried over from elsewhere (``Session.resume``: a pulled classifier's labels) are
counted apart, since their rounds are not known.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id

from .classifier import LinearProbe
from .files import is_local_path, slug
from .hub_calls import LIBRARY_NAME
from .messages import markdown_text
from .quality import Estimate, Quality
from .record import RoundStats
from .strategies import STRATEGIES, get_strategy

__all__ = ["CARD_TAGS", "REPO_PLACEHOLDER", "CardFacts", "model_card"]

CARD_TAGS = ("clip", "concept-trainer", "image-classification", "linear-probe", "pytorch_model_hub_mixin")
# Written into an exported card's code snippets, and replaced by the real repo id when the folder is pushed.
REPO_PLACEHOLDER = "your-name/your-classifier"


@dataclass(frozen=True)
class CardFacts:
    """What the model card reports: a session's record (trainer/record.py), or a bare probe's given facts, and how
    it is shared."""

    probe: LinearProbe
    labels: dict[str, float]
    label_rounds: dict[str, int]
    history: list[RoundStats]
    trained_rounds: int  # rounds trained, those before a resumed saved copy included (history may lack them)
    strategy: str | None
    held_out_ap: float | None
    held_out_note: str | None
    collection: str | None
    quality: Quality | None  # the session's estimate: from an audit, or cross-validated (optimistic)
    audit_labels: dict[str, float]
    repo_id: str  # or REPO_PLACEHOLDER while the repo is not known
    license: str
    tags: tuple[str, ...]


def model_card(facts: CardFacts, *, files: Mapping[str, str]) -> ModelCard:
    """The card for ``facts``; ``files`` names the export's files (keys: weights, config, jsonl, csv)."""
    probe = facts.probe
    hub_base = _hub_model_id(probe.base_model)
    audited = facts.quality if facts.quality is not None and not facts.quality.optimistic else None
    results = _eval_results(facts, audited)
    card_data = ModelCardData(
        library_name=LIBRARY_NAME,
        base_model=hub_base,
        license=facts.license,
        pipeline_tag="image-classification",
        tags=sorted({*CARD_TAGS, *facts.tags}),
        model_name=_model_name(facts) if results else None,
        eval_results=results or None,
    )
    positives = sum(v > 0 for v in facts.labels.values())
    negatives = sum(v < 0 for v in facts.labels.values())
    trained_rounds = facts.trained_rounds
    untrained = sum(r > trained_rounds for r in facts.label_rounds.values())
    carried_over = sum(r == 0 for r in facts.label_rounds.values())
    # The app's round numbers: the latest round with a label, or the rounds trained if none was labelled since.
    rounds = max([trained_rounds, *facts.label_rounds.values()])
    card = ModelCard.from_template(
        card_data,
        template_str=_CARD_TEMPLATE,
        prompt=markdown_text(probe.prompt) if probe.prompt else "(no prompt recorded)",
        negative_prompt=markdown_text(probe.negative_prompt) if probe.negative_prompt else None,
        base_model=f"`{probe.base_model}`"
        if hub_base
        else f"a local CLIP model folder, `{Path(str(probe.base_model)).name}`",
        base_model_link=f"https://huggingface.co/{hub_base}" if hub_base else None,
        revision=probe.base_model_revision,
        dim=probe.dim,
        threshold=f"{probe.threshold:g}",
        recipe=probe.recipe,
        recipe_note=_RECIPE_NOTES.get(probe.recipe, ""),
        prior_strength="automatic" if probe.prior_strength is None else f"{probe.prior_strength:g}",
        strategy=facts.strategy,
        strategy_note=_strategy_note(facts.strategy),
        positives=positives,
        negatives=negatives,
        neutral=len(facts.labels) - positives - negatives,
        total=len(facts.labels),
        rounds=rounds,
        carried_over=carried_over,
        refined_by=" and ".join(
            ([f"{carried_over} label(s) carried over from an earlier session"] if carried_over else [])
            + ([f"{rounds} round(s) of human labelling"] if rounds else [])
        ),
        history=facts.history,
        untrained=untrained,
        quality=_quality_rows(facts.quality) if facts.quality is not None else None,
        audited=audited,
        quality_trained=facts.quality.trained_on if facts.quality is not None else 0,
        optimistic=facts.quality is not None and facts.quality.optimistic,
        audit_positives=sum(v > 0 for v in facts.audit_labels.values()),
        audit_negatives=sum(v < 0 for v in facts.audit_labels.values()),
        confidence=f"{facts.quality.confidence:.0%}" if facts.quality is not None else None,
        held_out_ap=None if facts.held_out_ap is None else f"{facts.held_out_ap:.3f}",
        held_out_note=markdown_text(facts.held_out_note) if facts.held_out_note else None,
        collection=markdown_text(facts.collection) if facts.collection else None,
        repo=facts.repo_id,
        files=dict(files),
    )
    return card


def _model_name(facts: CardFacts) -> str:
    if facts.repo_id != REPO_PLACEHOLDER:
        return facts.repo_id.split("/")[-1]
    return slug(facts.probe.prompt or "") or "concept-classifier"


def _eval_results(facts: CardFacts, quality: Quality | None) -> list[EvalResult]:
    """The model-index entries: each audited metric with its interval and how it was measured; a held-out AP."""
    dataset = {
        "task_type": "image-classification",
        "task_name": f"Concept detection: {facts.probe.prompt}" if facts.probe.prompt else "Concept detection",
        "dataset_type": slug(facts.collection or "") or "image-collection",
        "dataset_name": facts.collection or "the labelled image collection",
    }
    results = []
    if quality is not None:
        how = {
            "method": "audit: a stratified random sample of images never shown, held out from training",
            "audit_labels": quality.audited,
            "training_labels": quality.trained_on,
            "collection_size": quality.collection_size,
            "confidence": quality.confidence,
        }
        threshold = {"threshold": quality.threshold}
        for metric, name, estimate, extra in (
            ("average_precision", "Average precision", quality.ap, {}),
            ("precision", f"Precision at threshold {quality.threshold:g}", quality.precision, threshold),
            ("recall", f"Recall at threshold {quality.threshold:g}", quality.recall, threshold),
            ("prevalence", "Prevalence (share of the collection)", quality.prevalence, {}),
        ):
            if estimate is None or not math.isfinite(estimate.value):
                continue
            results.append(
                EvalResult(
                    **dataset,
                    metric_type=metric,
                    metric_value=round(estimate.value, 4),
                    metric_name=f"{name}, estimated ({_interval(estimate, quality.confidence)})",
                    metric_args={"interval_low": round(estimate.low, 4), "interval_high": round(estimate.high, 4)}
                    | extra
                    | how,
                )
            )
    if facts.held_out_ap is not None:
        results.append(
            EvalResult(
                **dataset | {"dataset_name": facts.held_out_note or dataset["dataset_name"]},
                metric_type="average_precision",
                metric_value=round(facts.held_out_ap, 4),
                metric_name="Average precision on held-out images",
            )
        )
    return results


def _interval(estimate: Estimate, confidence: float) -> str:
    return f"{confidence:.0%} interval {estimate.low:.3f}-{estimate.high:.3f}"


def _quality_rows(quality: Quality) -> list[tuple[str, str]]:
    """(what, estimate with its interval) rows for the card's quality table."""
    named = [("Average precision", quality.ap), (f"Precision at threshold {quality.threshold:g}", quality.precision)]
    named.append((f"Recall at threshold {quality.threshold:g}", quality.recall))
    rows = [(name, f"{e.value:.3f} ({e.low:.3f}-{e.high:.3f})") for name, e in named if e is not None]
    if quality.matches is not None and quality.prevalence is not None:
        count, share = quality.matches, quality.prevalence
        rows.append(
            (
                "Matching images in the collection",
                f"{count.value:,.0f} ({count.low:,.0f}-{count.high:,.0f}): {share.value:.1%} of "
                f"{quality.collection_size:,}",
            )
        )
    return rows


def _hub_model_id(base_model: str | None) -> str | None:
    """``base_model`` if it names a Hub model; None for a local folder (a path is no use in metadata)."""
    if not base_model or is_local_path(base_model):
        return None
    try:
        validate_repo_id(base_model)
    except HFValidationError:
        return None
    return base_model


def _strategy_note(strategy: str | None) -> str:
    if strategy in STRATEGIES:
        doc = inspect.getdoc(get_strategy(strategy)) or ""
        return doc.split("\n")[0]
    if strategy == "original":
        return "the original article's recipe: the top-scored images, 5 SGD steps on the newest batch only."
    return ""


_RECIPE_NOTES = {
    "balanced": "class-balanced binary cross-entropy over every label so far, with an L2 pull toward the "
    "text prompt's zero-shot weights, so a few labels cannot make it worse than zero-shot",
    "original": "the original article's update: 5 SGD steps at learning rate 0.2 on the newest batch",
}

_CARD_TEMPLATE = """---
{{ card_data }}
---

# Concept classifier: {{ prompt }}

A linear classifier on CLIP image embeddings for the concept **{{ prompt }}**, made with Concept Trainer: it started
from the text prompt (zero-shot) and
{%- if refined_by %} was refined by {{ refined_by }}.
{%- else %} has not been refined by any labelling yet.{% endif %}

It scores an image as `sigmoid(w · x + b)`, where `x` is the L2-normalised {{ dim }}-d image embedding of
{% if base_model_link %}[{{ base_model }}]({{ base_model_link }}){% else %}{{ base_model }}{% endif %}
{%- if revision %} at revision `{{ revision }}`{% endif %}. A probability of {{ threshold }} or more counts as the
concept.

## How it was trained

| | |
|---|---|
| Prompt | {{ prompt }} |
| Negative prompt | {{ negative_prompt or "none" }} |
| Base model | {{ base_model }}{% if revision %} (revision `{{ revision }}`){% endif %}, {{ dim }}-d embeddings |
| Labels | {{ positives }} positive, {{ negatives }} negative, {{ neutral }} seen with no opinion ({{ total }} in all) |
| Rounds | {{ rounds }}{% if carried_over %}, after {{ carried_over }} label(s) from an earlier session{% endif %} |
| Selection strategy | {% if strategy %}`{{ strategy }}`: {{ strategy_note }}{% else %}not recorded{% endif %} |
| Training recipe | `{{ recipe }}`: {{ recipe_note }} (prior strength {{ prior_strength }}) |
| Decision threshold | {{ threshold }} |
| Image collection | {{ collection or "not recorded" }} |
{% if history %}
Labels gathered, cumulatively, after each round:

| Round | Images shown | Labelled | Positive | Negative |
|---|---|---|---|---|
{% for h in history -%}
| {{ h.round }} | {{ h.shown }} | {{ h.labelled }} | {{ h.positives }} | {{ h.negatives }} |
{% endfor %}
{%- endif %}
{%- if untrained %}
Note: {{ untrained }} label(s) were given after the last training round. They are in `{{ files.jsonl }}` but the
weights have not been trained on them.
{% endif %}
## Quality

{% if audited -%}
Estimated on the whole image collection from an audit: {{ audited.audited }} image(s) drawn at random from those
never shown during training, stratified by the classifier's score, labelled by the same person
({{ audit_positives }} matches, {{ audit_negatives }} not) and never trained on. The {{ audited.trained_on }}
training labels count as known; the rest of the collection is estimated from the audit. Each figure is the median
estimate with its {{ confidence }} interval, in brackets{% if audited.audited < 40 %}: with so few audit labels the
intervals are wide{% endif %}.

| | estimate ({{ confidence }} interval) |
|---|---|
{% for name, cell in quality -%}
| {{ name }} | {{ cell }} |
{% endfor %}
The same figures are in this card's metadata (`model-index`), each with its interval and how it was measured.
{%- elif optimistic -%}
No audit was run. Cross-validated over the {{ quality_trained }} training labels only, which the labelling strategy
chose, so these figures are **optimistic** and say nothing about how common the concept is:

| | estimate ({{ confidence }} interval) |
|---|---|
{% for name, cell in quality -%}
| {{ name }} | {{ cell }} |
{% endfor %}
{%- elif not held_out_ap -%}
No quality estimate was measured: there is no held-out evaluation for this classifier. Its labels were chosen by
the labelling strategy, so accuracy on them would overstate its quality. Check it on images of your own before you
rely on it.
{%- endif %}
{%- if held_out_ap %}

Average precision on held-out images that were never labelled: **{{ held_out_ap }}**
{%- if held_out_note %} ({{ held_out_note }}){% endif %}.
{%- endif %}

## How to use

With Concept Trainer's package (`trainer`) importable:

```python
import torch
from PIL import Image
from transformers import CLIPModel, CLIPProcessor

from trainer.classifier import LinearProbe

classifier = LinearProbe.from_pretrained("{{ repo }}")  # or the folder of an unzipped export
model = CLIPModel.from_pretrained(classifier.base_model, revision=classifier.base_model_revision)
processor = CLIPProcessor.from_pretrained(classifier.base_model, revision=classifier.base_model_revision)

image = Image.open("photo.jpg").convert("RGB")
with torch.inference_mode():
    features = model.get_image_features(**processor(images=image, return_tensors="pt"))
features = getattr(features, "pooler_output", features)  # transformers 5 returns an output object, 4.x a tensor
features = torch.nn.functional.normalize(features, dim=-1)  # the head was trained on unit vectors
probability = float(classifier.predict_proba(features.numpy())[0])
print(f"P(concept) = {probability:.3f}", probability >= classifier.threshold)
```

With nothing but `torch`, `transformers` and `safetensors` installed:

```python
import json
import os

import torch
from huggingface_hub import snapshot_download
from PIL import Image
from safetensors.torch import load_file
from transformers import CLIPModel, CLIPProcessor

repo = "{{ repo }}"  # or the folder of an unzipped export
folder = repo if os.path.isdir(repo) else snapshot_download(repo, allow_patterns=["*.json", "*.safetensors"])
with open(os.path.join(folder, "{{ files.config }}")) as f:
    config = json.load(f)
weights = load_file(os.path.join(folder, "{{ files.weights }}"))
model = CLIPModel.from_pretrained(config["base_model"], revision=config["base_model_revision"])
processor = CLIPProcessor.from_pretrained(config["base_model"], revision=config["base_model_revision"])

image = Image.open("photo.jpg").convert("RGB")
with torch.inference_mode():
    features = model.get_image_features(**processor(images=image, return_tensors="pt"))
features = getattr(features, "pooler_output", features)  # transformers 5 returns an output object, 4.x a tensor
features = torch.nn.functional.normalize(features, dim=-1)  # the head was trained on unit vectors
logit = features @ weights["linear.weight"].T + weights["linear.bias"]  # (1, D) @ (D, 1) + (1,)
probability = torch.sigmoid(logit)[0, 0].item()
print(f"P(concept) = {probability:.3f}", probability >= config["threshold"])
```

## Files

- `{{ files.weights }}`: `linear.weight` (1, {{ dim }}) and `linear.bias` (1,), plus `prior_weight` and
  `prior_bias`, the zero-shot prompt classifier that training is pulled toward (kept so training can continue).
- `{{ files.config }}`: the base model id and revision, embedding size, prompt, recipe, prior strength and threshold.
- `{{ files.jsonl }}` and `{{ files.csv }}`: every label, one per row: `id` (the item's id in the image
  collection), `score` in [-1, 1] (sign = class, magnitude = confidence, 0 = seen with no opinion) and `round`.
  With them anyone can retrain the head or continue labelling. In the CSV, an id that starts with `=`, `+`, `-`, `@`
  or `'` has a `'` in front, so that a spreadsheet shows it as text instead of running it as a formula.

## Limitations

- It only works on image embeddings of exactly this base model{% if revision %} and revision{% endif %}: on any
  other model's embeddings its scores are meaningless (Concept Trainer's loader refuses such a mismatch).
- It learned one person's idea of the concept from {{ total }} labels on one image collection. It may not transfer
  to other kinds of images, and it inherits CLIP's own blind spots and biases.
- Probabilities are approximate and the threshold was not tuned on held-out data: rank by score, and pick your own
  threshold for your use.
- The labels name images by their id in the collection; the images themselves are not included.
"""
