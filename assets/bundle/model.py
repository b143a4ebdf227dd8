"""The tiny CLIP: its recipe (``TrainSettings``), its image processor and its initial weights."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from .shapes import IMAGE_SIZE

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


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
