"""Training the tiny CLIP: a fresh batch of drawn images every step, CLIP's contrastive loss plus an auxiliary
attribute loss."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import numpy as np

from .captions import make_caption
from .model import AUX_LOGIT_SCALE, TrainSettings, normalise_pixels
from .shapes import ATTRIBUTES, IMAGE_SIZE, draw_image, sample_attributes

log = logging.getLogger(__name__)

# Key of the training stream's generators; the shipped splits use keys 0 and 1 (see collection.item_rng).
TRAIN_STREAM_KEY = 7


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

    # fork: the workers only draw with numpy and PIL, and a forked worker starts at once, without importing torch anew.
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
