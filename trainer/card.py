"""The model card of a shared classifier: YAML metadata the Hub indexes, then what a person needs to know.

The card says what the classifier detects (the prompt), how it was made (labels of each sign, rounds, strategy,
recipe), how good it is (a held-out average precision when one was measured, else plainly that none was), how to
use it (two copy-paste snippets: with this project, and with only torch + transformers + safetensors) and its
limitations. It is built with huggingface_hub's ``ModelCard.from_template`` so the metadata block is written by the
same code the Hub reads it with.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import ModelCard, ModelCardData
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id

from .classifier import LinearProbe
from .session import RoundStats
from .strategies import STRATEGIES, get_strategy

__all__ = ["CARD_TAGS", "LIBRARY_NAME", "REPO_PLACEHOLDER", "CardFacts", "model_card"]

LIBRARY_NAME = "concept-trainer"
CARD_TAGS = ("clip", "concept-trainer", "image-classification", "linear-probe", "pytorch_model_hub_mixin")
# Written into an exported card's code snippets, and replaced by the real repo id when the folder is pushed.
REPO_PLACEHOLDER = "your-name/your-classifier"


@dataclass(frozen=True)
class CardFacts:
    """What the model card reports, gathered once from a Session or from explicit arguments."""

    probe: LinearProbe
    labels: dict[str, float]
    label_rounds: dict[str, int]
    history: list[RoundStats]
    strategy: str | None
    held_out_ap: float | None
    held_out_note: str | None
    collection: str | None
    repo_id: str  # or REPO_PLACEHOLDER while the repo is not known
    license: str
    tags: tuple[str, ...]


def model_card(facts: CardFacts, *, files: Mapping[str, str]) -> ModelCard:
    """The card for ``facts``; ``files`` names the export's files (keys: weights, config, jsonl, csv)."""
    probe = facts.probe
    hub_base = _hub_model_id(probe.base_model)
    card_data = ModelCardData(
        library_name=LIBRARY_NAME,
        base_model=hub_base,
        license=facts.license,
        pipeline_tag="image-classification",
        tags=sorted({*CARD_TAGS, *facts.tags}),
    )
    positives = sum(v > 0 for v in facts.labels.values())
    negatives = sum(v < 0 for v in facts.labels.values())
    trained_rounds = len(facts.history)
    untrained = sum(r > trained_rounds for r in facts.label_rounds.values())
    card = ModelCard.from_template(
        card_data,
        template_str=_CARD_TEMPLATE,
        prompt=_md(probe.prompt) if probe.prompt else "(no prompt recorded)",
        base_model=f"`{probe.base_model}`"
        if hub_base
        else f"a local CLIP model folder, `{Path(str(probe.base_model)).name}`",
        base_model_link=f"https://huggingface.co/{hub_base}" if hub_base else None,
        revision=probe.base_model_revision,
        dim=probe.dim,
        threshold=f"{probe.threshold:g}",
        recipe=probe.recipe,
        recipe_note=_RECIPE_NOTES.get(probe.recipe, ""),
        prior_strength=f"{probe.prior_strength:g}",
        strategy=facts.strategy,
        strategy_note=_strategy_note(facts.strategy),
        positives=positives,
        negatives=negatives,
        neutral=len(facts.labels) - positives - negatives,
        total=len(facts.labels),
        rounds=trained_rounds,
        history=facts.history,
        untrained=untrained,
        held_out_ap=None if facts.held_out_ap is None else f"{facts.held_out_ap:.3f}",
        held_out_note=_md(facts.held_out_note) if facts.held_out_note else None,
        collection=_md(facts.collection) if facts.collection else None,
        repo=facts.repo_id,
        files=dict(files),
    )
    return card


def _hub_model_id(base_model: str | None) -> str | None:
    """``base_model`` if it names a Hub model; None for a local folder (a path is no use in metadata)."""
    if not base_model or base_model.startswith(("/", ".", "~")) or Path(base_model).exists():
        return None
    try:
        validate_repo_id(base_model)
    except HFValidationError:
        return None
    return base_model


def _md(text: str) -> str:
    """Text from a person, made safe inside a Markdown table cell or sentence: one line, no markup."""
    text = " ".join(str(text).split())
    return re.sub(r"([\\`*_\[\]<>|~])", r"\\\1", text)


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
{%- if rounds %} was refined by {{ rounds }} round(s) of human labelling.
{%- else %} has not been refined by any labelling yet.{% endif %}

It scores an image as `sigmoid(w · x + b)`, where `x` is the L2-normalised {{ dim }}-d image embedding of
{% if base_model_link %}[{{ base_model }}]({{ base_model_link }}){% else %}{{ base_model }}{% endif %}
{%- if revision %} at revision `{{ revision }}`{% endif %}. A probability of {{ threshold }} or more counts as the
concept.

## How it was trained

| | |
|---|---|
| Prompt | {{ prompt }} |
| Base model | {{ base_model }}{% if revision %} (revision `{{ revision }}`){% endif %}, {{ dim }}-d embeddings |
| Labels | {{ positives }} positive, {{ negatives }} negative, {{ neutral }} seen with no opinion ({{ total }} in all) |
| Rounds | {{ rounds }} |
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

{% if held_out_ap -%}
Average precision on held-out images that were never labelled: **{{ held_out_ap }}**
{%- if held_out_note %} ({{ held_out_note }}){% endif %}.
{%- else -%}
No quality estimate was measured: there is no held-out evaluation for this classifier. Its labels were chosen by
the labelling strategy, so accuracy on them would overstate its quality. Check it on images of your own before you
rely on it.
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
  With them anyone can retrain the head or continue labelling.

## Limitations

- It only works on image embeddings of exactly this base model{% if revision %} and revision{% endif %}: on any
  other model's embeddings its scores are meaningless (Concept Trainer's loader refuses such a mismatch).
- It learned one person's idea of the concept from {{ total }} labels on one image collection. It may not transfer
  to other kinds of images, and it inherits CLIP's own blind spots and biases.
- Probabilities are approximate and the threshold was not tuned on held-out data: rank by score, and pick your own
  threshold for your use.
- The labels name images by their id in the collection; the images themselves are not included.
"""
