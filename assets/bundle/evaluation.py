"""Evaluation: zero-shot retrieval on the validation split, and a linear probe per attribute."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from trainer.synthetic import average_precision

from .captions import article
from .collection import Split
from .model import AUX_LOGIT_SCALE, pixel_values
from .shapes import ATTRIBUTES, BACKGROUNDS, COLOURS, SHAPES, SIZES, TEXTURES

SINGLE_PROMPTS: dict[str, dict[str, str]] = {
    "colour": {c: f"a {c} shape" for c in COLOURS},
    "shape": {s: article(s) for s in SHAPES},
    "size": {s: f"a {s} shape" for s in SIZES},
    "texture": {
        "plain": "a plain background",
        "stripes": "stripes",
        "dots": "dots",
        "checkered": "a checkered background",
    },
    "background": {b: f"something on a {b} background" for b in BACKGROUNDS},
}
# Hand-picked demo concepts naming four or five attributes: the kind of prompt the demo is meant to improve on.
SHOWCASE: list[tuple[str, dict[str, str]]] = [
    ("a small red circle on stripes", {"size": "small", "colour": "red", "shape": "circle", "texture": "stripes"}),
    (
        "a large blue star on a dark background",
        {"size": "large", "colour": "blue", "shape": "star", "background": "dark"},
    ),
    ("a medium yellow heart on dots", {"size": "medium", "colour": "yellow", "shape": "heart", "texture": "dots"}),
    (
        "a small green triangle on a light background",
        {"size": "small", "colour": "green", "shape": "triangle", "background": "light"},
    ),
    (
        "a large purple cross on a checkered background",
        {"size": "large", "colour": "purple", "shape": "cross", "texture": "checkered"},
    ),
    (
        "a pink square on a grey striped background",
        {"colour": "pink", "shape": "square", "background": "grey", "texture": "stripes"},
    ),
]


def combination_prompts() -> dict[str, list[tuple[str, dict[str, str]]]]:
    """Every combination of two or three attributes, in the caption language, grouped by which are combined."""
    families: dict[str, list[tuple[str, dict[str, str]]]] = {
        "colour + shape": [],
        "size + colour + shape": [],
        "colour + shape + texture": [],
        "colour + shape + background": [],
        "size + colour + shape + texture": [],
    }
    for c in COLOURS:
        for s in SHAPES:
            families["colour + shape"].append((f"a {c} {s}", {"colour": c, "shape": s}))
            for z in SIZES:
                families["size + colour + shape"].append((f"a {z} {c} {s}", {"size": z, "colour": c, "shape": s}))
            for t in TEXTURES:
                place = SINGLE_PROMPTS["texture"][t]
                families["colour + shape + texture"].append(
                    (f"{article(c)} {s} on {place}", {"colour": c, "shape": s, "texture": t})
                )
            for b in BACKGROUNDS:
                families["colour + shape + background"].append(
                    (f"{article(c)} {s} on a {b} background", {"colour": c, "shape": s, "background": b})
                )
    for z in SIZES:
        for c in COLOURS:
            for s in SHAPES:
                for t in TEXTURES:
                    families["size + colour + shape + texture"].append(
                        (
                            f"a {z} {c} {s} on {SINGLE_PROMPTS['texture'][t]}",
                            {"size": z, "colour": c, "shape": s, "texture": t},
                        )
                    )
    families["showcase"] = SHOWCASE
    return families


def embed_images(model, processor, images: Sequence[Image.Image], batch_size: int = 256) -> np.ndarray:
    import torch

    chunks = []
    with torch.inference_mode():
        for i in range(0, len(images), batch_size):
            batch = pixel_values(processor, images[i : i + batch_size]).to(model.device)
            features = model.get_image_features(pixel_values=batch)
            chunks.append(torch.nn.functional.normalize(features.pooler_output, dim=-1))
    return torch.cat(chunks).cpu().numpy()


def embed_texts(model, tokenizer, texts: Sequence[str]) -> np.ndarray:
    import torch

    with torch.inference_mode():
        tokens = tokenizer(list(texts), padding=True, truncation=True, return_tensors="pt").to(model.device)
        features = model.get_text_features(**tokens).pooler_output
        return torch.nn.functional.normalize(features, dim=-1).cpu().numpy()


@dataclass
class PromptResult:
    family: str
    prompt: str
    positives: int
    ap: float


def evaluate(model, tokenizer, processor, data: Split) -> list[PromptResult]:
    """AP of every single-attribute and combined prompt, ranking validation images by cosine similarity."""
    image_vectors = embed_images(model, processor, data.images)
    queries: list[tuple[str, str, dict[str, str]]] = []
    for attribute, prompts in SINGLE_PROMPTS.items():
        queries += [(attribute, prompt, {attribute: value}) for value, prompt in prompts.items()]
    for family, prompts in combination_prompts().items():
        queries += [(family, prompt, condition) for prompt, condition in prompts]
    text_vectors = embed_texts(model, tokenizer, [q[1] for q in queries])
    scores = text_vectors @ image_vectors.T
    results = []
    for (family, prompt, condition), row in zip(queries, scores, strict=True):
        relevant = np.array([all(a[k] == v for k, v in condition.items()) for a in data.attributes])
        # A combination absent from the 500 validation images has no defined AP; it is counted in the report.
        ap = average_precision(row, relevant) if relevant.any() else float("nan")
        results.append(PromptResult(family, prompt, int(relevant.sum()), ap))
    return results


def fit_softmax(x, y, classes: int):
    """Multinomial logistic regression (L-BFGS, a little L2) on unit vectors; returns a scoring function."""
    import torch

    weight = torch.zeros(x.shape[1], classes, requires_grad=True)
    bias = torch.zeros(classes, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=300, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(x @ weight * AUX_LOGIT_SCALE + bias, y) + 1e-4 * weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return lambda z: z @ weight.detach() * AUX_LOGIT_SCALE + bias.detach()


def probe_accuracy(train_vectors: np.ndarray, train: Split, val_vectors: np.ndarray, val: Split) -> dict[str, float]:
    """Validation accuracy of a linear classifier per attribute, fitted on the train split's image embeddings.

    Zero-shot AP says how well the text tower describes an attribute; this says whether the image embedding holds
    it at all, which bounds what labelling (a linear head on the same embeddings) can reach.
    """
    import torch

    x_train, x_val = torch.from_numpy(train_vectors).float(), torch.from_numpy(val_vectors).float()
    accuracy = {}
    for name, values in ATTRIBUTES.items():
        y_train = torch.tensor([values.index(a[name]) for a in train.attributes])
        y_val = np.array([values.index(a[name]) for a in val.attributes])
        predicted = fit_softmax(x_train, y_train, len(values))(x_val).argmax(1).numpy()
        accuracy[name] = float((predicted == y_val).mean())
    return accuracy


COMBINED_FAMILIES = (
    "size + colour + shape",
    "colour + shape + texture",
    "colour + shape + background",
    "size + colour + shape + texture",
)


def summarise(results: list[PromptResult]) -> dict[str, float]:
    """Headline figures: mean AP per single attribute, per combination family, and the two overall means.

    The overall means average the family means, so that a family with many prompts (four attributes: several
    hundred) does not drown the others. Prompts with no relevant validation image are left out (AP undefined).
    """
    by_family: dict[str, list[float]] = {}
    for r in results:
        if not math.isnan(r.ap):
            by_family.setdefault(r.family, []).append(r.ap)
    summary = {family: float(np.mean(aps)) for family, aps in by_family.items()}
    summary["single attributes"] = float(np.mean([summary[a] for a in ATTRIBUTES]))
    summary["combined (3+ attributes)"] = float(np.mean([summary[f] for f in COMBINED_FAMILIES]))
    return summary
