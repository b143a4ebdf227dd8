"""Captions: English text that names a random subset of an image's attributes, so that no caption describes an image
completely (the way web captions name only part of what a photo shows)."""

from __future__ import annotations

import numpy as np

from .shapes import ATTRIBUTES

TEXTURE_ADJECTIVES = {"plain": "plain", "stripes": "striped", "dots": "dotted", "checkered": "checkered"}
TEXTURE_PHRASES = {
    "plain": ("a plain background",),
    "stripes": ("stripes", "a striped background"),
    "dots": ("dots", "polka dots", "a dotted background"),
    "checkered": ("a checkered background", "a checkerboard"),
}
PREFIXES = ("a picture of ", "a photo of ", "an image of ")
# Occasional synonyms, so that people typing "big" or "gray" get what they mean.
SYNONYMS = {"large": ("big", 0.25), "grey": ("gray", 0.3)}
# How many attributes a caption names: mostly one or two, so combined concepts are rarely spelled out in full.
NAMED_COUNT_WEIGHTS = np.array([0.30, 0.30, 0.20, 0.12, 0.08])


def _word(value: str, rng: np.random.Generator) -> str:
    synonym, probability = SYNONYMS.get(value, (value, 0.0))
    return synonym if rng.random() < probability else value


def article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _place_phrase(named: dict[str, str], rng: np.random.Generator) -> str | None:
    texture, background = named.get("texture"), named.get("background")
    background = _word(background, rng) if background else None
    if texture and background:
        return f"a {background} {TEXTURE_ADJECTIVES[texture]} background"
    if texture:
        options = TEXTURE_PHRASES[texture]
        return options[rng.integers(len(options))]
    if background:
        return f"a {background} background"
    return None


def describe(named: dict[str, str], rng: np.random.Generator) -> str:
    """English text naming exactly the attributes in ``named`` (a subset of one image's attributes)."""
    place = _place_phrase(named, rng)
    object_words = [_word(named[k], rng) for k in ("size", "colour") if k in named]
    if not object_words and "shape" not in named:
        subject = None
    elif object_words == [named.get("colour")] and "shape" not in named and rng.random() < 0.3:
        subject = f"something {named['colour']}"
    else:
        subject = article(" ".join([*object_words, named.get("shape", "shape")]))
    if subject is None:
        assert place is not None, "describe() needs at least one attribute"
        text = place if rng.random() < 0.5 else f"{'something' if rng.random() < 0.5 else 'a shape'} on {place}"
    else:
        text = subject if place is None else f"{subject} on {place}"
    if rng.random() < 0.15:
        text = PREFIXES[rng.integers(len(PREFIXES))] + text
    return text


def make_caption(attributes: dict[str, str], rng: np.random.Generator) -> str:
    """A caption naming a random, non-empty subset of the image's attributes."""
    count = int(rng.choice(len(NAMED_COUNT_WEIGHTS), p=NAMED_COUNT_WEIGHTS)) + 1
    names = list(ATTRIBUTES)
    chosen = rng.choice(len(names), size=count, replace=False)
    return describe({names[i]: attributes[names[i]] for i in sorted(chosen)}, rng)
