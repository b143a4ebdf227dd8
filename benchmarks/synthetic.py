"""What the indexing benchmarks run on: a random full-size ViT-B/32 CLIP and photo-like 320 px JPEGs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

__all__ = ["make_images", "make_model"]


def make_model(folder: Path) -> None:
    """A random ViT-B/32 CLIP in Hugging Face format. The tokenizer is CLIPTokenizer's minimal default vocabulary:
    only image throughput is measured, but ``embed.load`` needs a loadable tokenizer."""
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    torch.manual_seed(0)
    CLIPModel(CLIPConfig()).eval().save_pretrained(folder)
    CLIPTokenizer(model_max_length=77).save_pretrained(folder)
    CLIPImageProcessorPil().save_pretrained(folder)


def make_images(folder: Path, count: int, seed: int = 0) -> None:
    """Photo-like JPEGs: smooth gradients, a few shapes and mild noise (pure noise would decode unusually slowly)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        height, width = (320, int(rng.integers(320, 481))) if i % 2 else (int(rng.integers(320, 481)), 320)
        y, x = np.mgrid[0:height, 0:width]
        base = rng.uniform(0, 255, 3)
        slope = rng.uniform(-0.4, 0.4, (3, 2))
        rgb = np.stack([base[c] + slope[c, 0] * y + slope[c, 1] * x for c in range(3)], axis=-1)
        rgb += rng.normal(0, 6, rgb.shape)
        image = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(image)
        for _ in range(4):
            x0, y0 = int(rng.integers(0, width - 40)), int(rng.integers(0, height - 40))
            box = (x0, y0, x0 + int(rng.integers(20, 160)), y0 + int(rng.integers(20, 160)))
            fill = tuple(int(v) for v in rng.integers(0, 256, 3))
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=fill)
        image.save(folder / f"{i:05d}.jpg", quality=90)
