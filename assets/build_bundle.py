"""Build the offline demo bundle: a generated image collection and a tiny CLIP model trained on it.

Run ``python assets/build_bundle.py [--seed 0] [--out assets]``. Everything is derived from the seed:

1. ``shapes/``: ~3,000 procedurally drawn 64x64 images with five independent attributes (colour, shape, size,
   background texture, background tone) and captions that name only some attributes at a time, written as
   ``train.parquet`` / ``validation.parquet`` so that ``datasets.load_dataset("assets/shapes")`` loads them.
2. ``tiny-clip/``: a CLIP byte-level BPE tokenizer whose merges are learned from the caption vocabulary, a
   ``CLIPImageProcessor`` for 64x64 inputs, and a small ``CLIPModel`` trained contrastively on the train split,
   all in the standard Hugging Face layout (``from_pretrained`` works offline).
3. ``BUNDLE_REPORT.md``: zero-shot retrieval quality on the validation split (average precision per prompt).

Importing this module does no work; the drawing and caption functions are importable for tests.
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import logging
import math
import os
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

log = logging.getLogger("build_bundle")

# ----------------------------------------------------------------------------------------------------------------
# Attributes. Each is sampled independently and uniformly, so any combination can occur and a combined concept is
# exactly the intersection of its single-attribute concepts.
# ----------------------------------------------------------------------------------------------------------------

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (214, 39, 40),
    "orange": (247, 137, 22),
    "yellow": (246, 214, 35),
    "green": (44, 160, 72),
    "blue": (36, 97, 216),
    "purple": (134, 64, 196),
    "pink": (247, 126, 185),
    "brown": (139, 87, 48),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "heart", "cross")
# Half-extent of the object as a fraction of the image side; sizes are far enough apart to be unambiguous.
SIZES: dict[str, tuple[float, float]] = {"small": (0.12, 0.15), "medium": (0.21, 0.25), "large": (0.32, 0.37)}
TEXTURES: tuple[str, ...] = ("plain", "stripes", "dots", "checkered")
# Background tones chosen so that every object colour stays visible on every background.
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "light": (238, 234, 224),
    "grey": (126, 130, 138),
    "dark": (30, 34, 46),
}
ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "colour": tuple(COLOURS),
    "shape": SHAPES,
    "size": tuple(SIZES),
    "texture": TEXTURES,
    "background": tuple(BACKGROUNDS),
}

IMAGE_SIZE = 64
SUPERSAMPLE = 4  # drawn at 4x and downsampled with LANCZOS: crisp antialiased edges at 64x64
SPLITS: dict[str, int] = {"train": 2500, "validation": 500}
MAX_TEXT_LENGTH = 32  # longest caption is ~16 tokens; 32 keeps the text tower small
BOS, EOS = "<|startoftext|>", "<|endoftext|>"
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


def item_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """An independent generator per item, so any item can be redrawn alone and splits never share randomness."""
    split_key = sorted(SPLITS).index(split)
    return np.random.default_rng([seed, split_key, index])


def sample_attributes(rng: np.random.Generator) -> dict[str, str]:
    return {name: str(values[rng.integers(len(values))]) for name, values in ATTRIBUTES.items()}


# ----------------------------------------------------------------------------------------------------------------
# Drawing
# ----------------------------------------------------------------------------------------------------------------


def _shade(rgb: Sequence[float], factor: float) -> tuple[int, int, int]:
    return tuple(int(np.clip(c * factor, 0, 255)) for c in rgb)  # type: ignore[return-value]


def _jitter_colour(rgb: Sequence[int], rng: np.random.Generator, amount: float, tint: float) -> tuple[int, int, int]:
    # A shared brightness change plus a small per-channel tint: varied, but a red stays recognisably red.
    scale = 1.0 + rng.uniform(-amount, amount)
    return tuple(int(np.clip(c * scale + rng.uniform(-tint, tint), 0, 255)) for c in rgb)  # type: ignore[return-value]


def _rotate(points: np.ndarray, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return points @ np.array([[c, s], [-s, c]])


def _shape_polygon(shape: str, radius: float, angle: float) -> np.ndarray:
    """Outline of a shape centred on the origin, as an (n, 2) array; y points down as in image coordinates."""
    if shape == "circle":
        t = np.linspace(0, 2 * math.pi, 96, endpoint=False)
        return np.stack([np.cos(t), np.sin(t)], axis=1) * radius
    if shape == "square":
        # Half-side 0.85 r so that a square does not look much bigger than a circle of the same size class.
        h = 0.85 * radius
        pts = np.array([[-h, -h], [h, -h], [h, h], [-h, h]])
    elif shape == "triangle":
        t = -math.pi / 2 + np.arange(3) * 2 * math.pi / 3
        pts = np.stack([np.cos(t), np.sin(t)], axis=1) * radius * 1.15
        pts[:, 1] += radius * 0.2  # equilateral triangles sit high; centre them visually
    elif shape == "star":
        t = -math.pi / 2 + np.arange(10) * math.pi / 5
        r = np.where(np.arange(10) % 2 == 0, 1.1 * radius, 0.45 * radius)
        pts = np.stack([np.cos(t) * r, np.sin(t) * r], axis=1)
    elif shape == "heart":
        t = np.linspace(0, 2 * math.pi, 120, endpoint=False)
        x = 16 * np.sin(t) ** 3
        y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
        pts = np.stack([x, y + 2.5], axis=1) * radius / 16.5
    elif shape == "cross":
        a, w = radius, 0.34 * radius
        pts = np.array(
            [[-w, -a], [w, -a], [w, -w], [a, -w], [a, w], [w, w], [w, a], [-w, a], [-w, w], [-a, w], [-a, -w], [-w, -w]]
        )
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return _rotate(pts, angle)


def _draw_texture(
    draw: ImageDraw.ImageDraw, texture: str, colour: tuple[int, int, int], side: int, rng: np.random.Generator
) -> None:
    period = side / 8 * rng.uniform(0.9, 1.15)  # about 8 repeats across the image: visible even at 64 px
    phase = rng.uniform(0, period)
    if texture == "plain":
        return
    if texture == "stripes":
        # Stripes at one of four orientations, drawn as wide lines across an oversized square.
        angle = math.radians(float(rng.choice([0, 45, 90, 135])))
        direction = np.array([math.cos(angle), math.sin(angle)])
        normal = np.array([-direction[1], direction[0]])
        centre = np.array([side / 2, side / 2])
        for k in range(-12, 13):
            offset = centre + normal * (k * period + phase)
            p0, p1 = offset - direction * side, offset + direction * side
            draw.line([tuple(p0), tuple(p1)], fill=colour, width=max(1, int(period * 0.45)))
    elif texture == "dots":
        r = period * 0.24
        for iy in range(-1, 10):
            for ix in range(-1, 10):
                x = ix * period + phase + (period / 2 if iy % 2 else 0)
                y = iy * period + phase
                draw.ellipse([x - r, y - r, x + r, y + r], fill=colour)
    elif texture == "checkered":
        for iy in range(-1, 10):
            for ix in range(-1, 10):
                if (ix + iy) % 2 == 0:
                    x, y = ix * period + phase, iy * period + phase
                    draw.rectangle([x, y, x + period, y + period], fill=colour)
    else:
        raise ValueError(f"unknown texture {texture!r}")


def draw_image(attributes: dict[str, str], rng: np.random.Generator, size: int = IMAGE_SIZE) -> Image.Image:
    """Draw one RGB image of ``size`` x ``size`` pixels showing exactly the given attributes.

    Variation that is *not* an attribute (position, rotation, exact size, hue and brightness, pattern orientation,
    period and phase) comes from ``rng``, so two images with the same attributes are never identical.
    """
    side = size * SUPERSAMPLE
    background = _jitter_colour(BACKGROUNDS[attributes["background"]], rng, 0.06, tint=4)
    canvas = Image.new("RGB", (side, side), background)
    draw = ImageDraw.Draw(canvas)

    # The pattern is a tone of the background (lighter on dark, darker on light) so it never reads as an object.
    pattern_factor = 1.45 if attributes["background"] == "dark" else 0.84
    pattern = _shade(background, pattern_factor)
    if attributes["background"] == "dark":
        pattern = tuple(min(255, c + 14) for c in pattern)  # type: ignore[assignment]
    _draw_texture(draw, attributes["texture"], pattern, side, rng)

    lo, hi = SIZES[attributes["size"]]
    radius = rng.uniform(lo, hi) * side
    # Keep the whole object inside the frame: the largest extent of any shape is ~1.15 r.
    room = side / 2 - 1.2 * radius - side * 0.03
    centre = np.array([side / 2, side / 2]) + rng.uniform(-room, room, size=2)
    angle = math.radians(rng.uniform(-25, 25))
    points = _shape_polygon(attributes["shape"], radius, angle) + centre

    fill = _jitter_colour(COLOURS[attributes["colour"]], rng, 0.08, tint=10)
    # A soft drop shadow and a darker outline give the gallery a clean, sticker-like look.
    shadow = Image.new("L", (side, side), 0)
    ImageDraw.Draw(shadow).polygon([tuple(p) for p in points + side * 0.02], fill=90)
    canvas = Image.composite(Image.new("RGB", (side, side), _shade(background, 0.55)), canvas, shadow)
    draw = ImageDraw.Draw(canvas)
    draw.polygon([tuple(p) for p in points], fill=fill, outline=_shade(fill, 0.62), width=SUPERSAMPLE)

    # No pixel grain or lighting ramp: both looked nice but tripled the PNG size (per-pixel noise defeats
    # compression), and the jitter above already makes every image distinct.
    return canvas.resize((size, size), Image.Resampling.LANCZOS)


def make_item(seed: int, split: str, index: int) -> tuple[Image.Image, dict[str, str], str]:
    """Image, attributes and stored caption of item ``index`` of ``split``; a pure function of its arguments."""
    rng = item_rng(seed, split, index)
    attributes = sample_attributes(rng)
    image = draw_image(attributes, rng)
    caption = make_caption(attributes, rng)
    return image, attributes, caption


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


# ----------------------------------------------------------------------------------------------------------------
# Captions: name a random subset of the attributes, so that no caption describes an image completely.
# ----------------------------------------------------------------------------------------------------------------

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


def _article(phrase: str) -> str:
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
        subject = _article(" ".join([*object_words, named.get("shape", "shape")]))
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


# ----------------------------------------------------------------------------------------------------------------
# Collection
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class Split:
    ids: list[str]
    images: list[Image.Image]
    attributes: list[dict[str, str]]
    captions: list[str]


def build_split(seed: int, split: str, count: int) -> Split:
    ids, images, attributes, captions = [], [], [], []
    for index in range(count):
        image, attrs, caption = make_item(seed, split, index)
        ids.append(f"shapes-{split}-{index:05d}")
        images.append(image)
        attributes.append(attrs)
        captions.append(caption)
    return Split(ids, images, attributes, captions)


def write_split(data: Split, path: Path) -> None:
    import datasets  # heavy import, only needed when building

    columns: dict[str, list] = {
        "id": data.ids,
        "image": [{"bytes": png_bytes(im), "path": None} for im in data.images],
        "caption": data.captions,
    }
    for name in ATTRIBUTES:
        columns[name] = [a[name] for a in data.attributes]
    dataset = datasets.Dataset.from_dict(columns).cast_column("image", datasets.Image())
    path.parent.mkdir(parents=True, exist_ok=True)
    dataset.to_parquet(str(path))


# ----------------------------------------------------------------------------------------------------------------
# Tokenizer: CLIP's byte-level BPE, with merges learned from the caption vocabulary.
# ----------------------------------------------------------------------------------------------------------------


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2 / CLIP mapping of every byte to a printable character, so BPE never meets an unknown symbol."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, [chr(c) for c in chars], strict=True))


def learn_bpe(word_counts: dict[str, int]) -> list[tuple[str, str]]:
    """Greedy BPE on whole words (CLIP style, ``</w>`` marks a word end) until every word is a single token.

    The caption language has only a few dozen words, so learning merges to completion is instant and gives each
    caption word its own token; any other text still tokenizes through the byte-level base alphabet.
    """
    byte_map = bytes_to_unicode()
    words: dict[tuple[str, ...], int] = {}
    for word, count in word_counts.items():
        symbols = [byte_map[b] for b in word.encode("utf-8")]
        symbols[-1] += "</w>"
        words[tuple(symbols)] = words.get(tuple(symbols), 0) + count
    merges: list[tuple[str, str]] = []
    while True:
        pairs: Counter[tuple[str, str]] = Counter()
        for symbols, count in words.items():
            for pair in itertools.pairwise(symbols):
                pairs[pair] += count
        if not pairs:
            return merges
        # Most frequent pair first; ties broken by the pair itself so the result never depends on dict order.
        best = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))[0]
        merges.append(best)
        merged: dict[tuple[str, ...], int] = {}
        for symbols, count in words.items():
            out: list[str] = []
            i = 0
            while i < len(symbols):
                if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == best:
                    out.append(symbols[i] + symbols[i + 1])
                    i += 2
                else:
                    out.append(symbols[i])
                    i += 1
            merged[tuple(out)] = merged.get(tuple(out), 0) + count
        words = merged


def caption_word_counts(seed: int, samples: int = 20000) -> dict[str, int]:
    """Word frequencies of the caption language, measured on captions of random attribute sets."""
    rng = np.random.default_rng([seed, 1_000_003])
    counts: Counter[str] = Counter()
    for _ in range(samples):
        counts.update(make_caption(sample_attributes(rng), rng).split())
    # Every attribute value must be a whole token even if a rare template never happened to produce it.
    for values in ATTRIBUTES.values():
        counts.update(values)
    return dict(counts)


def build_tokenizer(seed: int, model_max_length: int = MAX_TEXT_LENGTH):
    """A ``CLIPTokenizer`` with the 512 byte-level base tokens, the learned merges, then bos/eos (as in CLIP)."""
    from transformers import CLIPTokenizer

    merges = learn_bpe(caption_word_counts(seed))
    base = list(bytes_to_unicode().values())
    tokens = base + [t + "</w>" for t in base] + [a + b for a, b in merges]
    vocab: dict[str, int] = {}
    for token in tokens:
        vocab.setdefault(token, len(vocab))
    vocab[BOS] = len(vocab)
    vocab[EOS] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=model_max_length)


def save_tokenizer(tokenizer, out_dir: Path) -> None:
    """``save_pretrained`` (tokenizer.json) plus CLIP's classic vocab.json / merges.txt for older loaders."""
    tokenizer.save_pretrained(out_dir)
    model = json.loads(tokenizer.backend_tokenizer.to_str())["model"]
    (out_dir / "vocab.json").write_text(json.dumps(model["vocab"], ensure_ascii=False), encoding="utf-8")
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    (out_dir / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")


# ----------------------------------------------------------------------------------------------------------------
# Model
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class TrainSettings:
    # Sizes and step count come from a recipe sweep (patch 8/16, hidden 128/192, lr, loss weights, batch sampling),
    # scored by a linear probe and zero-shot AP on the validation split. Patch 16 learned shape about as fast per
    # step as patch 8 at a third of the CPU cost; an auxiliary attribute loss was what made shape learnable at all
    # (contrastive loss alone: shape probe at chance after 1,500 steps). The step count stops on purpose before
    # combined concepts are solved zero-shot, so that labelling still has something visible to add.
    hidden: int = 128
    layers: int = 3
    heads: int = 4
    projection_dim: int = 64
    patch_size: int = 16
    steps: int = 2000
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup_steps: int = 50
    # Start the patch embedding from oriented-edge and colour filters (see patch_filter_bank).
    filter_init: bool = True
    # Weight of the auxiliary attribute-classification loss on the image embedding (see train_model).
    aux_weight: float = 3.0


# The image embedding is unit-length; the auxiliary heads read it at this temperature, like CLIP's logit scale.
AUX_LOGIT_SCALE = 10.0
# Key of the training stream's random generators; the shipped splits use keys 0 and 1 (see item_rng).
TRAIN_STREAM_KEY = 7


def build_image_processor():
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    # The PIL backend needs no torchvision; it saves as "CLIPImageProcessor", so a machine with torchvision gets
    # the default backend from the same file.
    return CLIPImageProcessorPil(
        size={"shortest_edge": IMAGE_SIZE},
        crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        image_mean=CLIP_MEAN,
        image_std=CLIP_STD,
    )


def patch_filter_bank(patch: int) -> np.ndarray:
    """Fixed first-layer filters, (n, 3, patch, patch): Gabor edges/gratings, centre-surround blobs, colour.

    Trained from scratch, the vision tower learns background and colour within minutes but its patch embedding
    takes far longer than the CPU budget to discover edges. Starting from the filters that every vision network
    ends up learning saves much of that; they stay trainable.
    """
    coords = np.arange(patch) - (patch - 1) / 2
    y, x = np.meshgrid(coords, coords, indexing="ij")
    envelope = np.exp(-(x**2 + y**2) / (2 * (patch / 3) ** 2))
    filters: list[np.ndarray] = []
    for wavelength in (patch / 4, patch / 2):
        for k in range(8):
            theta = math.pi * k / 8
            u = x * math.cos(theta) + y * math.sin(theta)
            for phase in (0.0, math.pi / 2):
                grating = envelope * np.cos(2 * math.pi * u / wavelength + phase)
                grating -= grating.mean()  # respond to structure, not to brightness
                filters.append(np.repeat(grating[None], 3, axis=0))  # luminance: same on every channel
    for sigma in (patch / 8, patch / 4):
        dog = np.exp(-(x**2 + y**2) / (2 * sigma**2)) - 0.5 * np.exp(-(x**2 + y**2) / (8 * sigma**2))
        dog -= dog.mean()
        filters.append(np.repeat(dog[None], 3, axis=0))
    flat = np.ones((patch, patch))
    for colour in ((1, -1, 0), (0.5, 0.5, -1), (1, 1, 1), (-0.5, 1, -0.5)):
        filters.append(np.stack([c * flat for c in colour]))
    bank = np.stack(filters)
    return bank / np.linalg.norm(bank.reshape(len(bank), -1), axis=1)[:, None, None, None]


def build_model(tokenizer, settings: TrainSettings):
    from transformers import CLIPConfig, CLIPModel, CLIPTextConfig, CLIPVisionConfig

    common = {
        "hidden_size": settings.hidden,
        "intermediate_size": 4 * settings.hidden,
        "num_hidden_layers": settings.layers,
        "num_attention_heads": settings.heads,
        "projection_dim": settings.projection_dim,
    }
    text = CLIPTextConfig(
        vocab_size=len(tokenizer),
        max_position_embeddings=tokenizer.model_max_length,
        # Pooling reads the hidden state at the first eos token, so these must be the tokenizer's ids.
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **common,
    )
    vision = CLIPVisionConfig(image_size=IMAGE_SIZE, patch_size=settings.patch_size, **common)
    config = CLIPConfig(
        text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=settings.projection_dim
    )
    model = CLIPModel(config)
    if settings.filter_init:
        import torch

        weight = model.vision_model.embeddings.patch_embedding.weight  # (hidden, 3, patch, patch)
        bank = torch.from_numpy(patch_filter_bank(settings.patch_size)).to(weight.dtype)
        with torch.no_grad():
            weight[: len(bank)] = bank
    return model


def pixel_values(processor, images: Sequence[Image.Image]):
    return processor(images=list(images), return_tensors="pt")["pixel_values"]


def normalise_pixels(images: np.ndarray):
    """(n, 64, 64, 3) uint8 -> the processor's (n, 3, 64, 64) float tensor: rescale and normalise, nothing else.

    The training loop uses this instead of the PIL processor because it is about 20x faster on a whole batch;
    a test checks that both give the same values.
    """
    import torch

    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    return (x - mean) / std


@dataclass
class TrainingBatch:
    images: np.ndarray  # (n, 64, 64, 3) uint8
    labels: np.ndarray  # (n, number of attributes) index of each attribute's value
    captions: list[str]


def training_batch(seed: int, step: int, size: int) -> TrainingBatch:
    """Step ``step``'s batch of freshly drawn images: a pure function of its arguments, never a shipped image.

    A fixed set of 2,500 images let the tiny ViT memorise instead of learning shape; a new draw every step is as
    cheap as training on it (about 1.3 ms an image), so the model never sees the same image twice.
    """
    rng = np.random.default_rng([seed, TRAIN_STREAM_KEY, step])
    images = np.empty((size, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
    labels = np.empty((size, len(ATTRIBUTES)), np.int64)
    captions = []
    for i in range(size):
        attributes = sample_attributes(rng)
        images[i] = np.asarray(draw_image(attributes, rng))
        labels[i] = [values.index(attributes[name]) for name, values in ATTRIBUTES.items()]
        captions.append(make_caption(attributes, rng))
    return TrainingBatch(images, labels, captions)


def training_batches(seed: int, steps: int, size: int, workers: int, ahead: int = 4):
    """Yield the batches of steps 0..steps-1 in order, drawn by ``workers`` processes while the model trains.

    At most ``ahead`` batches per worker wait in memory. With no workers the batches are drawn inline. Either way
    the batches are the same, so the worker count never changes the trained weights.
    """
    if workers == 0:
        for step in range(steps):
            yield training_batch(seed, step, size)
        return
    import multiprocessing

    # fork: the workers only draw with numpy and PIL, and fork also works when this file was loaded by path.
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        pending = [pool.apply_async(training_batch, (seed, step, size)) for step in range(min(steps, ahead * workers))]
        for step in range(steps):
            batch = pending.pop(0).get()
            if step + len(pending) + 1 < steps:
                pending.append(pool.apply_async(training_batch, (seed, step + len(pending) + 1, size)))
            yield batch


def attribute_loss(heads, image_embeds, labels):
    """Mean over the attributes of the cross-entropy of ``heads`` (one linear layer, every attribute's values side
    by side) reading the unit image embeddings; ``labels`` (n, attributes) holds each value's index."""
    import torch

    sizes = [len(values) for values in ATTRIBUTES.values()]
    logits = heads(image_embeds * AUX_LOGIT_SCALE).split(sizes, dim=1)
    losses = [torch.nn.functional.cross_entropy(lg, labels[:, j]) for j, lg in enumerate(logits)]
    return sum(losses) / len(sizes)


def train_model(model, tokenizer, seed: int, settings: TrainSettings, workers: int = 1) -> list[float]:
    """CLIP's contrastive loss plus an auxiliary attribute loss, on a fresh batch of drawn images every step.

    The auxiliary loss is a linear head per attribute on the unit image embedding, trained jointly and thrown
    away afterwards: the saved model is a plain ``CLIPModel``. The drawing code knows every image's attributes,
    and without that signal the image tower only picked up what partial captions make easy (colour, background).
    Returns the mean contrastive loss of each tenth of training.
    """
    import torch

    torch.manual_seed(seed)
    heads = torch.nn.Linear(settings.projection_dim, sum(len(values) for values in ATTRIBUTES.values()))
    params = [*model.parameters(), *heads.parameters()]
    optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)

    def schedule(step: int) -> float:
        if step < settings.warmup_steps:
            return (step + 1) / settings.warmup_steps
        progress = (step - settings.warmup_steps) / max(1, settings.steps - settings.warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * progress))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    model.train()
    losses: list[float] = []
    window: list[float] = []
    report_every = max(1, settings.steps // 10)
    start = time.perf_counter()
    batches = training_batches(seed, settings.steps, settings.batch_size, workers)
    for step, batch in enumerate(batches, start=1):
        text = tokenizer(batch.captions, padding=True, truncation=True, return_tensors="pt")
        out = model(**text, pixel_values=normalise_pixels(batch.images), return_loss=True)
        aux = attribute_loss(heads, out.image_embeds, torch.from_numpy(batch.labels))
        loss = out.loss + settings.aux_weight * aux
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        window.append(out.loss.item())
        if step % report_every == 0 or step == settings.steps:
            losses.append(float(np.mean(window)))
            window = []
            log.info(
                "step %d/%d contrastive loss %.3f, attribute loss %.3f (%.0f s)",
                step,
                settings.steps,
                losses[-1],
                aux.item(),
                time.perf_counter() - start,
            )
    model.eval()
    return losses


# ----------------------------------------------------------------------------------------------------------------
# Evaluation: zero-shot retrieval on the validation split
# ----------------------------------------------------------------------------------------------------------------


def average_precision(scores: np.ndarray, relevant: np.ndarray) -> float:
    """AP of a ranking by descending score: the mean of precision@k over the ranks k of the relevant items."""
    if not relevant.any():
        raise ValueError("average precision needs at least one relevant item")
    order = np.argsort(-scores, kind="stable")
    hits = relevant[order].astype(np.float64)
    precision_at_k = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float((precision_at_k * hits).sum() / hits.sum())


SINGLE_PROMPTS: dict[str, dict[str, str]] = {
    "colour": {c: f"a {c} shape" for c in COLOURS},
    "shape": {s: _article(s) for s in SHAPES},
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
                    (f"{_article(c)} {s} on {place}", {"colour": c, "shape": s, "texture": t})
                )
            for b in BACKGROUNDS:
                families["colour + shape + background"].append(
                    (f"{_article(c)} {s} on a {b} background", {"colour": c, "shape": s, "background": b})
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


# ----------------------------------------------------------------------------------------------------------------
# Report and entry point
# ----------------------------------------------------------------------------------------------------------------

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


def _directory_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def write_report(
    path: Path,
    results: list[PromptResult],
    summary: dict[str, float],
    probe: dict[str, float],
    timings: dict[str, float],
    settings: TrainSettings,
    model,
    losses: list[float],
    seed: int,
    validation: Split,
    out: Path,
    machine: str,
) -> None:
    n_params = sum(p.numel() for p in model.parameters())
    lines = [
        "# Offline demo bundle: build report",
        "",
        "Generated by `assets/build_bundle.py` (do not edit by hand; rerun the build instead).",
        "",
        (
            f"- Seed: {seed}. Images: {sum(SPLITS.values())} ({', '.join(f'{k} {v}' for k, v in SPLITS.items())}), "
            f"{IMAGE_SIZE}x{IMAGE_SIZE} RGB."
        ),
        (
            f"- Model: `CLIPModel`, text and vision towers of {settings.layers} layers, hidden {settings.hidden}, "
            f"{settings.heads} heads, patch {settings.patch_size}, projection_dim {settings.projection_dim}; "
            f"{n_params / 1e6:.2f} M parameters, float32."
        ),
        (
            f"- Training: {settings.steps} steps of {settings.batch_size} freshly drawn images each "
            f"({settings.steps * settings.batch_size:,} images, none of them in the shipped splits) with captions "
            f"drawn the same way; CLIP contrastive loss (`return_loss=True`) plus {settings.aux_weight} x an "
            "auxiliary attribute-classification loss on the image embedding (linear heads, discarded after "
            f"training); patch filters initialised: {settings.filter_init}; AdamW lr {settings.lr} (warmup "
            f"{settings.warmup_steps} steps, cosine), weight decay {settings.weight_decay}. Contrastive loss "
            f"{losses[0]:.3f} (first tenth of training) -> {losses[-1]:.3f} (last tenth)."
        ),
        (
            f"- Build time: **{timings['total']:.0f} s** in total on {machine} (images {timings['images']:.0f} s, "
            f"parquet {timings['parquet']:.0f} s, tokenizer {timings['tokenizer']:.0f} s, "
            f"training {timings['training']:.0f} s, evaluation {timings['evaluation']:.0f} s)."
        ),
        (
            f"- Sizes: `shapes/` {_directory_size(out / 'shapes') / 1e6:.1f} MB, "
            f"`tiny-clip/` {_directory_size(out / 'tiny-clip') / 1e6:.1f} MB."
        ),
        "",
        "## Zero-shot retrieval on the validation split",
        "",
        (
            f"Each prompt ranks all {len(validation.ids)} validation images by the dot product of L2-normalised "
            "text and image embeddings (the model saved in `tiny-clip/`, reloaded with `from_pretrained`). A "
            "validation image is relevant when it has every attribute the prompt names. AP is average precision "
            "(computed with numpy); chance is the mean fraction of relevant images, which is what a random ranking "
            "scores on average."
        ),
        "",
        (
            f"**Single attributes: mean AP {summary['single attributes']:.3f}. "
            f"Combined concepts (3+ attributes): mean AP {summary['combined (3+ attributes)']:.3f}.**"
        ),
        "",
        "| prompts | n prompts | mean relevant | chance | mean AP |",
        "|---|---:|---:|---:|---:|",
    ]
    families = [*ATTRIBUTES, "colour + shape", *COMBINED_FAMILIES]
    for family in families:
        rows = [r for r in results if r.family == family]
        scored = [r for r in rows if not math.isnan(r.ap)]
        missing = len(rows) - len(scored)
        count = f"{len(scored)}" + (f" (+{missing} with no relevant image)" if missing else "")
        mean_pos = np.mean([r.positives for r in scored])
        chance = mean_pos / len(validation.ids)
        lines.append(f"| {family} | {count} | {mean_pos:.1f} | {chance:.3f} | {summary[family]:.3f} |")
    lines += [
        "",
        "## What labelling can reach: linear probe on the image embeddings",
        "",
        (
            "A multinomial logistic regression per attribute, fitted on the train split's image embeddings and "
            "scored on the validation split. This bounds what a linear head trained on labels can learn about "
            "the attribute; zero-shot AP above is what the text prompt alone finds."
        ),
        "",
        "| attribute | values | chance | probe accuracy |",
        "|---|---:|---:|---:|",
    ]
    lines += [
        f"| {name} | {len(values)} | {1 / len(values):.3f} | {probe[name]:.3f} |" for name, values in ATTRIBUTES.items()
    ]
    lines += ["", "### Single-attribute prompts", "", "| attribute | prompt | relevant | AP |", "|---|---|---:|---:|"]
    lines += [f"| {r.family} | {r.prompt} | {r.positives} | {r.ap:.3f} |" for r in results if r.family in ATTRIBUTES]
    lines += ["", "### Showcase combined prompts", "", "| prompt | relevant | AP |", "|---|---:|---:|"]
    lines += [
        f"| {r.prompt} | {r.positives} | {'n/a' if math.isnan(r.ap) else f'{r.ap:.3f}'} |"
        for r in results
        if r.family == "showcase"
    ]
    lines += [
        "",
        (
            "With only a handful of relevant images per four-attribute prompt, single showcase figures are noisy; the "
            "family means over all 2- and 3-attribute combinations above are the stable numbers."
        ),
        "",
    ]
    path.write_text("\n".join(lines), encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    parser.add_argument("--steps", type=int, default=TrainSettings.steps)
    # One thread by default: on a shared 2-core machine, two OpenMP threads spin-wait on each other and ran an
    # epoch 10x slower than one thread did; one thread also makes the weights independent of the core count.
    parser.add_argument("--threads", type=int, default=1)
    # Processes drawing the next training batches while the model trains on this one; 0 draws inline.
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")

    import datasets
    import torch
    from transformers import AutoProcessor, AutoTokenizer, CLIPModel

    torch.set_num_threads(args.threads)
    settings = TrainSettings(steps=args.steps)
    out: Path = args.out
    timings: dict[str, float] = {}
    start = time.perf_counter()
    # Build time depends on what else runs on the machine, so the report records the load it was measured under.
    machine = (
        f"{os.cpu_count()} CPU cores, {args.threads} torch thread(s), {args.workers} drawing worker(s), "
        "1-minute load average "
        f"{os.getloadavg()[0]:.1f} at the start"
    )

    t = time.perf_counter()
    splits = {name: build_split(args.seed, name, count) for name, count in SPLITS.items()}
    timings["images"] = time.perf_counter() - t
    log.info("drew %d images in %.1f s", sum(SPLITS.values()), timings["images"])

    t = time.perf_counter()
    for name, data in splits.items():
        write_split(data, out / "shapes" / f"{name}.parquet")
    loaded = datasets.load_dataset(str((out / "shapes").resolve()))
    assert {k: len(v) for k, v in loaded.items()} == SPLITS, loaded
    timings["parquet"] = time.perf_counter() - t

    t = time.perf_counter()
    model_dir = out / "tiny-clip"
    tokenizer = build_tokenizer(args.seed)
    processor = build_image_processor()
    timings["tokenizer"] = time.perf_counter() - t
    log.info(
        "tokenizer: %d tokens, bos %d, eos %d, pad %d",
        len(tokenizer),
        tokenizer.bos_token_id,
        tokenizer.eos_token_id,
        tokenizer.pad_token_id,
    )

    t = time.perf_counter()
    torch.manual_seed(args.seed)
    model = build_model(tokenizer, settings)
    losses = train_model(model, tokenizer, args.seed, settings, workers=args.workers)
    timings["training"] = time.perf_counter() - t

    model.save_pretrained(model_dir)
    save_tokenizer(tokenizer, model_dir)
    processor.save_pretrained(model_dir)

    # Evaluate what was saved, through the same loaders the app uses, so the report describes the shipped files.
    t = time.perf_counter()
    model = CLIPModel.from_pretrained(model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    processor = AutoProcessor.from_pretrained(model_dir).image_processor
    results = evaluate(model, tokenizer, processor, splits["validation"])
    summary = summarise(results)
    probe = probe_accuracy(
        embed_images(model, processor, splits["train"].images),
        splits["train"],
        embed_images(model, processor, splits["validation"].images),
        splits["validation"],
    )
    timings["evaluation"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - start
    write_report(
        out / "BUNDLE_REPORT.md",
        results,
        summary,
        probe,
        timings,
        settings,
        model,
        losses,
        args.seed,
        splits["validation"],
        out,
        machine,
    )
    for key in [*ATTRIBUTES, "colour + shape", *COMBINED_FAMILIES, "single attributes", "combined (3+ attributes)"]:
        log.info("mean AP %-28s %.3f", key, summary[key])
    for name, accuracy in probe.items():
        log.info("probe accuracy %-21s %.3f", name, accuracy)
    log.info("done in %.0f s", timings["total"])


if __name__ == "__main__":
    main()
