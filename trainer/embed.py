"""CLIP wrapper: ``load(model_id) -> Embedder`` with ``embed_text`` and ``embed_images``.

Both return float32 (n, d) rows, each L2-normalised on its own, so that a dot product is a cosine similarity and a
vector never depends on what else was in its batch. Every image is converted to RGB first (alpha composited on
white, 16-bit and float images rescaled to 8 bits); none is dropped here. Indexing uses the two halves of
``embed_images`` separately (``preprocess_images`` on a worker thread, ``embed_pixels`` on the model) so that CPU
preprocessing of one batch overlaps the forward pass of the previous one.

Nothing is loaded at import time; ``load`` does the work.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .checks import EMPTY_PROMPT_MESSAGE, prompt_text
from .files import is_local_path

__all__ = [
    "EMPTY_PROMPT_MESSAGE",
    "Embedder",
    "ImagePreprocessor",
    "features_tensor",
    "is_local_identity",
    "load",
    "load_preprocessor",
    "model_identity",
    "to_rgb",
]

logger = logging.getLogger(__name__)

# What makes a local model folder the model it is: weights, configs and tokenizer files (not a README).
_MODEL_FILE_SUFFIXES = {".safetensors", ".bin", ".json", ".txt", ".model"}
_LOCAL_IDENTITY = re.compile(r"[^/\\@\s]+@sha256:[0-9a-f]{12}")

# Modes that carry an alpha channel (or a transparent palette entry): composited on white, as a viewer shows them.
_ALPHA_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}
_WHITE = (255, 255, 255, 255)


def to_rgb(image: Image.Image) -> Image.Image:
    """Return ``image`` as an 8-bit RGB image, never dropping it.

    - alpha (RGBA, LA, PA, P with a transparent entry) is composited on white, not thrown away: a transparent
      background would otherwise turn black and dominate the embedding;
    - 16-bit ("I;16*"), 32-bit integer ("I") and float ("F") images are scaled to 0..255 from their value range,
      because Pillow's own conversion clips (a 16-bit PNG comes out almost all white);
    - everything else (1, L, P, CMYK, YCbCr, LAB, HSV) goes through Pillow's ``convert("RGB")``.
    """
    if image.mode == "RGB":
        return image
    if image.mode in _ALPHA_MODES or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, _WHITE)
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode.startswith("I") or image.mode.startswith("F"):
        return Image.fromarray(_to_uint8(np.asarray(image), image.mode)).convert("RGB")
    return image.convert("RGB")


def _to_uint8(values: np.ndarray, mode: str) -> np.ndarray:
    """Map a high-bit-depth single-channel array to uint8 over its nominal range.

    16-bit modes have a fixed range (0..65535). "I" and "F" do not say which range they use, so take the smallest
    usual one that holds every value (0..1 for floats, then 0..255, then 0..65535), else stretch min..max.
    """
    data = np.nan_to_num(values.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    if data.size == 0:
        return np.zeros(data.shape, dtype=np.uint8)
    if mode.startswith("I;16"):
        low, high = 0.0, 65535.0
    else:
        low, high = float(data.min()), float(data.max())
        candidates = ([1.0] if mode.startswith("F") else []) + [255.0, 65535.0]
        if low >= 0:
            fits = [c for c in candidates if high <= c]
            low, high = (0.0, fits[0]) if fits else (low, high)
    if high <= low:  # a constant image: nothing to stretch
        return np.zeros(data.shape, dtype=np.uint8)
    return np.clip(np.rint((data - low) * (255.0 / (high - low))), 0, 255).astype(np.uint8)


class ImagePreprocessor:
    """Images of any mode -> the model's pixel values: ``to_rgb``, then the (PIL) image processor. CPU only.

    The half of ``Embedder.embed_images`` that needs no model, so that a worker which only decodes (a Ray CPU stage)
    loads the image processor alone. :func:`load_preprocessor` builds one; an ``Embedder`` holds one.
    """

    def __init__(self, image_processor: object) -> None:
        self.image_processor = image_processor

    def preprocess_images(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Convert to RGB and run the image processor: (n, 3, H, W) float32 pixel values. Thread-safe."""
        images = list(images)
        if not images:
            size = _crop_size(self.image_processor)
            return torch.empty((0, 3, *size), dtype=torch.float32)
        pixels = self.image_processor(images=[to_rgb(image) for image in images], return_tensors="pt")
        return pixels["pixel_values"]


class Embedder:
    """A loaded CLIP model, its tokenizer and its (PIL) image processor. Build one with :func:`load`."""

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: object,
        image_processor: object,
        *,
        model_id: str,
        revision: str | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.preprocessor = ImagePreprocessor(image_processor)
        self.model_id = model_id
        self.revision = revision
        self.device = torch.device(device)
        config = model.config
        self.dim: int = int(config.projection_dim)
        # The tokenizer's limit is often unset (a huge sentinel); the position table is the hard limit.
        positions = int(config.text_config.max_position_embeddings)
        self.max_text_length: int = min(int(getattr(tokenizer, "model_max_length", positions)), positions)
        # The Hub commit the weights came from (None for a local folder): lets a cache notice a moved branch.
        self.commit_hash: str | None = getattr(config, "_commit_hash", None)

    def __repr__(self) -> str:
        return f"Embedder(model_id={self.model_id!r}, dim={self.dim}, device={self.device})"

    # ------------------------------------------------------------------------------------------------------ text
    def embed_text(self, prompts: Sequence[str]) -> np.ndarray:
        """Embed prompts: (n, d) float32, each row L2-normalised.

        Each prompt is checked before it is tokenized (``checks.prompt_text``: at most ``MAX_PROMPT_CHARS``
        characters, no control characters or lone surrogates, not empty; tabs and line breaks read as spaces), so
        a huge or broken prompt is refused at once with a ValueError. Prompts longer than the model's token limit
        are truncated to it (and logged).
        """
        if isinstance(prompts, str):
            raise TypeError("embed_text takes a list of prompts; wrap a single prompt as [prompt]")
        prompts = [prompt_text(p, "The prompt" if i == 0 else f"Prompt {i + 1}") for i, p in enumerate(prompts)]
        if not prompts:
            return np.empty((0, self.dim), dtype=np.float32)
        self._note_truncation(prompts)
        tokens = self.tokenizer(
            prompts, padding=True, truncation=True, max_length=self.max_text_length, return_tensors="pt"
        )
        with torch.inference_mode():
            output = self.model.get_text_features(
                input_ids=tokens["input_ids"].to(self.device),
                attention_mask=tokens["attention_mask"].to(self.device),
            )
            return _normalised_rows(features_tensor(output))

    def _note_truncation(self, prompts: list[str]) -> None:
        lengths = [len(ids) for ids in self.tokenizer(prompts, verbose=False)["input_ids"]]
        for prompt, length in zip(prompts, lengths, strict=True):
            if length > self.max_text_length:
                shown = prompt if len(prompt) <= 60 else prompt[:57] + "..."
                logger.warning(
                    "Prompt of %d tokens truncated to the model's limit of %d: %r",
                    length,
                    self.max_text_length,
                    shown,
                )

    # ---------------------------------------------------------------------------------------------------- images
    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Embed PIL images of any mode: (n, d) float32, each row L2-normalised, one row per image."""
        return self.embed_pixels(self.preprocess_images(images))

    def preprocess_images(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Convert to RGB and run the image processor: (n, 3, H, W) float32 pixel values. CPU only, thread-safe."""
        return self.preprocessor.preprocess_images(images)

    def embed_pixels(self, pixel_values: torch.Tensor) -> np.ndarray:
        """The model half of ``embed_images``: (n, 3, H, W) pixel values -> (n, d) float32 unit rows."""
        if pixel_values.ndim != 4:
            raise ValueError(f"pixel_values must be (n, 3, H, W); got shape {tuple(pixel_values.shape)}")
        if pixel_values.shape[0] == 0:
            return np.empty((0, self.dim), dtype=np.float32)
        dtype = next(self.model.parameters()).dtype
        with torch.inference_mode():
            output = self.model.get_image_features(pixel_values=pixel_values.to(self.device, dtype))
            return _normalised_rows(features_tensor(output))


def features_tensor(output: object) -> torch.Tensor:
    """transformers 5 returns a model output whose ``pooler_output`` is the projected embedding; 4.x a tensor."""
    if isinstance(output, torch.Tensor):
        return output
    pooled = getattr(output, "pooler_output", None)
    if isinstance(pooled, torch.Tensor):
        return pooled
    raise TypeError(f"unexpected output from the CLIP feature call: {type(output).__name__} without pooler_output")


def _normalised_rows(features: torch.Tensor) -> np.ndarray:
    # Per row, never across the batch: a vector must not depend on its batch-mates. (B, D)
    features = features.float()
    norms = features.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return (features / norms).cpu().numpy().astype(np.float32, copy=False)


def _crop_size(image_processor: object) -> tuple[int, int]:
    crop = getattr(image_processor, "crop_size", None) or getattr(image_processor, "size", None) or {}
    if "height" in crop and "width" in crop:
        return int(crop["height"]), int(crop["width"])
    edge = int(crop.get("shortest_edge", 224))
    return edge, edge


def model_identity(model_id: str) -> str:
    """The name a classifier records for the CLIP model it was made with: a Hub id as it is, a local model folder
    as its folder name and a hash of its weights and configs, ``tiny-clip@sha256:<12 hex>``. The second never says
    where the folder lies on this machine, and names a copy of it on any other machine the same way."""
    folder = Path(model_id).expanduser()
    if not folder.is_dir():
        return model_id
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in _MODEL_FILE_SUFFIXES)
    stamp = tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    return f"{folder.resolve().name}@sha256:{_digest(folder.resolve(), stamp)[:12]}"


def is_local_identity(name: str | None) -> bool:
    """Whether ``name`` is a local model folder's identity (see ``model_identity``), not a Hub id or a path."""
    return bool(name) and _LOCAL_IDENTITY.fullmatch(name) is not None


@functools.lru_cache(maxsize=32)
def _digest(folder: Path, stamp: tuple[tuple[str, int, int], ...]) -> str:
    """sha256 over the named files' names and contents; cached while their sizes and times stay the same."""
    digest = hashlib.sha256()
    for name, _, _ in stamp:
        digest.update(name.encode() + b"\0")
        with (folder / name).open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def load(model_id: str, revision: str | None = None, device: str | torch.device = "cpu") -> Embedder:
    """Load a CLIP model, tokenizer and PIL image processor from a Hub id or a local folder.

    The image processor is always the PIL backend: torchvision is not a dependency, and the PIL one gives the
    same pixels on every machine.
    """
    # Imported here, not at module level: importing this module must stay cheap (no transformers start-up cost).
    from transformers import AutoTokenizer, CLIPModel

    source = _source(model_id)
    # float32 on purpose: half precision is slow on CPU and would change the vectors a cache was keyed on.
    model = CLIPModel.from_pretrained(source, revision=revision, dtype=torch.float32).to(device)
    tokenizer = AutoTokenizer.from_pretrained(source, revision=revision)
    image_processor = _image_processor(source, revision)
    embedder = Embedder(model, tokenizer, image_processor, model_id=model_id, revision=revision, device=device)
    logger.info("Loaded %s (dim %d) on %s", model_id, embedder.dim, embedder.device)
    return embedder


def load_preprocessor(model_id: str, revision: str | None = None) -> ImagePreprocessor:
    """The image half of :func:`load` alone: what a decoding worker needs, without the model's weights."""
    return ImagePreprocessor(_image_processor(_source(model_id), revision))


def _source(model_id: str) -> str:
    """What ``from_pretrained`` is given: a local folder (checked to exist) or a Hub id."""
    local = is_local_path(model_id)
    if local and not Path(model_id).expanduser().is_dir():
        raise FileNotFoundError(f"no model folder at {model_id!r}; pass a Hub id (e.g. openai/clip-vit-base-patch32)")
    return str(Path(model_id).expanduser()) if local else model_id


def _image_processor(source: str, revision: str | None) -> object:
    from transformers import AutoImageProcessor

    return AutoImageProcessor.from_pretrained(source, revision=revision, backend="pil")
