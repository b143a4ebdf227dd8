"""Which training recipe makes the bundle's tiny CLIP learn shape: the sweep behind ``assets/bundle/``'s recipe.

Every config trains the bundle's model (``assets.bundle.model.build_model``) with CLIP's contrastive loss on batches
sampled from one pool of freshly drawn images (not the shipped splits), optionally plus the auxiliary attribute loss,
and is scored at checkpoints by a linear probe per attribute (image embeddings of 4,000 held-back pool images -> the
shipped validation split) and by ``assets.bundle.evaluation.evaluate``'s zero-shot AP on the validation split.

Meant for a GPU; each config runs in its own process, so ten configs share one card:

    python -m benchmarks.bundle_recipe_sweep --out sweep/ [--configs base,aux,...] [--pool 120000]

On CPU it works but takes hours; ``MAX_STEPS=4 ... --device cpu --pool 5000`` is a smoke run. Results and the
conclusions drawn from them: benchmarks/RESULTS-bundle.md.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import time
from pathlib import Path

import numpy as np

from assets.bundle.captions import make_caption
from assets.bundle.collection import build_split
from assets.bundle.evaluation import evaluate, fit_softmax, summarise
from assets.bundle.model import TrainSettings, build_image_processor, build_model, normalise_pixels, pixel_values
from assets.bundle.shapes import ATTRIBUTES
from assets.bundle.tokenizer import build_tokenizer
from assets.bundle.training import attribute_loss, training_batch

ATTRIBUTE_NAMES = list(ATTRIBUTES)
PROBE_ITEMS = 4000  # the pool's last images: the probe's training set, never trained on by the model

# name -> overrides of the defaults below; "hard" is the share of batches drawn from one colour + background.
DEFAULTS = {"hidden": 128, "layers": 3, "patch": 8, "lr": 1e-3, "batch": 128, "aux": 0.0, "hard": 0.5, "steps": 1500}
CONFIGS: dict[str, dict] = {
    "base": {},
    "aux": {"aux": 1.0},
    "aux_lr2": {"aux": 1.0, "lr": 2e-3},
    "aux_lr3": {"aux": 1.0, "lr": 3e-3},
    "aux_w3": {"aux": 3.0},
    "aux_h192": {"aux": 1.0, "hidden": 192},
    "aux_p16": {"aux": 1.0, "patch": 16, "steps": 3000},
    "aux_hard0": {"aux": 1.0, "hard": 0.0},
    "p8_hard0_w3": {"aux": 3.0, "hard": 0.0},
    "p16_hard0": {"aux": 1.0, "patch": 16, "hard": 0.0, "steps": 3000},
    "p16_hard0_w3": {"aux": 3.0, "patch": 16, "hard": 0.0, "steps": 3000},
}


def draw_chunk(chunk: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    batch = training_batch(12345, chunk, size)
    return batch.images, batch.labels


def make_pool(n: int, workers: int) -> tuple[np.ndarray, np.ndarray]:
    chunk = 1000
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        parts = pool.starmap(draw_chunk, [(c, chunk) for c in range(n // chunk)])
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def run_config(name: str, overrides: dict, images: np.ndarray, labels: np.ndarray, device: str, out: Path) -> None:
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(0)
    cfg = {**DEFAULTS, **overrides}
    steps = min(cfg["steps"], int(os.environ.get("MAX_STEPS", cfg["steps"])))
    checkpoints = {s for s in (500, 1000, 1500, 2000) if s < steps} | {steps}
    rng = np.random.default_rng(0)
    settings = TrainSettings(hidden=cfg["hidden"], layers=cfg["layers"], patch_size=cfg["patch"])
    tokenizer = build_tokenizer(0)
    processor = build_image_processor()
    model = build_model(tokenizer, settings).to(device)
    sizes = [len(v) for v in ATTRIBUTES.values()]
    heads = torch.nn.Linear(settings.projection_dim, sum(sizes)).to(device)
    params = [*model.parameters(), *heads.parameters()]
    optimizer = torch.optim.AdamW(params, lr=cfg["lr"], weight_decay=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / 50) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))
    )
    n_train = len(images) - PROBE_ITEMS
    colour, background = ATTRIBUTE_NAMES.index("colour"), ATTRIBUTE_NAMES.index("background")
    groups: dict[tuple[int, int], list[int]] = {}
    for i in range(n_train):
        groups.setdefault((int(labels[i, colour]), int(labels[i, background])), []).append(i)
    group_list = [np.array(g) for g in groups.values()]
    validation = build_split(0, "validation", 500)
    val_labels = np.array([[ATTRIBUTES[k].index(a[k]) for k in ATTRIBUTE_NAMES] for a in validation.attributes])
    val_pixels = pixel_values(processor, validation.images).to(device)

    def embed(pixels):
        with torch.no_grad():
            return torch.nn.functional.normalize(model.get_image_features(pixel_values=pixels).pooler_output, dim=-1)

    def probe() -> dict[str, float]:
        x_train = embed(normalise_pixels(images[n_train:]).to(device)).cpu()
        x_val = embed(val_pixels).cpu()
        result = {}
        for j, k in enumerate(ATTRIBUTE_NAMES):
            score = fit_softmax(x_train, torch.from_numpy(labels[n_train:, j]), sizes[j])
            result[k] = round(float((score(x_val).argmax(1).numpy() == val_labels[:, j]).mean()), 3)
        return result

    log = []
    started = time.time()
    model.train()
    for step in range(1, steps + 1):
        if rng.random() < cfg["hard"]:
            group = group_list[rng.integers(len(group_list))]
            idx = rng.choice(group, size=min(cfg["batch"], len(group)), replace=False)
        else:
            idx = rng.choice(n_train, size=cfg["batch"], replace=False)
        captions = [
            make_caption({k: ATTRIBUTES[k][labels[i, j]] for j, k in enumerate(ATTRIBUTE_NAMES)}, rng) for i in idx
        ]
        text = tokenizer(captions, padding=True, truncation=True, return_tensors="pt").to(device)
        output = model(**text, pixel_values=normalise_pixels(images[idx]).to(device), return_loss=True)
        loss = output.loss
        if cfg["aux"]:
            aux = attribute_loss(heads, output.image_embeds, torch.from_numpy(labels[idx]).to(device))
            # Weighted as the sum of the five losses; the build weighs their mean, so its 3.0 is 0.6 here.
            loss = loss + cfg["aux"] * len(sizes) * aux
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        if step in checkpoints:
            model.eval()
            summary = summarise(evaluate(model, tokenizer, processor, validation))
            row = {
                "config": name,
                "step": step,
                "secs": round(time.time() - started, 1),
                "probe": probe(),
                "zeroshot": {k: round(v, 3) for k, v in summary.items()},
            }
            model.train()
            print(json.dumps(row), flush=True)
            log.append(row)
            (out / f"{name}.json").write_text(json.dumps({"cfg": cfg, "log": log}, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", type=int, default=120_000)
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "sweep")))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    images, labels = make_pool(args.pool, max(1, (os.cpu_count() or 2) - 1))
    print(f"pool {images.shape} in {time.time() - started:.1f} s", flush=True)
    # The parent never touches CUDA, so each forked child opens its own context.
    context = multiprocessing.get_context("fork")
    names = args.configs.split(",")
    processes = [
        context.Process(target=run_config, args=(n, CONFIGS[n], images, labels, args.device, args.out)) for n in names
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    print(f"all done in {time.time() - started:.1f} s", flush=True)


if __name__ == "__main__":
    main()
