"""The five attributes an image has, and how an image showing exactly those attributes is drawn.

Each attribute is sampled independently and uniformly, so any combination can occur and a combined concept is exactly
the intersection of its single-attribute concepts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

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


def sample_attributes(rng: np.random.Generator) -> dict[str, str]:
    return {name: str(values[rng.integers(len(values))]) for name, values in ATTRIBUTES.items()}


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
