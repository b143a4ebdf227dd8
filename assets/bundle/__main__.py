"""Build the offline demo bundle: ``python -m assets.bundle [--seed 0] [--out assets] [--steps 2000]``.

Draws the collection and writes it as parquet, learns the tokenizer, trains the tiny CLIP, saves it in the Hugging
Face layout, then evaluates what was saved and writes the report. See ``assets/bundle/__init__.py`` for the parts.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

from .collection import SPLITS, build_split, write_split
from .evaluation import COMBINED_FAMILIES, embed_images, evaluate, probe_accuracy, summarise
from .model import TrainSettings, build_image_processor, build_model
from .report import BuildResult, write_report
from .shapes import ATTRIBUTES
from .tokenizer import build_tokenizer, save_tokenizer
from .training import train_model

log = logging.getLogger(__name__)

ASSETS = Path(__file__).resolve().parent.parent  # the shipped bundle sits beside this package


def build(seed: int, out: Path, settings: TrainSettings, *, threads: int = 1, workers: int = 1) -> BuildResult:
    """Make ``out/shapes/``, ``out/tiny-clip/`` and ``out/BUNDLE_REPORT.md`` from ``seed``; return what was measured."""
    import datasets
    import torch
    from transformers import AutoProcessor, AutoTokenizer, CLIPModel

    torch.set_num_threads(threads)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    # Build time depends on what else runs on the machine, so the report records the load it was measured under.
    machine = (
        f"{os.cpu_count()} CPU cores, {threads} torch thread(s), {workers} drawing worker(s), "
        "1-minute load average "
        f"{os.getloadavg()[0]:.1f} at the start"
    )

    t = time.perf_counter()
    splits = {name: build_split(seed, name, count) for name, count in SPLITS.items()}
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
    tokenizer = build_tokenizer(seed)
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
    torch.manual_seed(seed)
    model = build_model(tokenizer, settings)
    losses = train_model(model, tokenizer, seed, settings, workers=workers)
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
    probe = probe_accuracy(
        embed_images(model, processor, splits["train"].images),
        splits["train"],
        embed_images(model, processor, splits["validation"].images),
        splits["validation"],
    )
    timings["evaluation"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - start
    return BuildResult(
        out=out,
        seed=seed,
        settings=settings,
        parameters=sum(p.numel() for p in model.parameters()),
        losses=losses,
        results=results,
        summary=summarise(results),
        probe=probe,
        validation_images=len(splits["validation"].ids),
        timings=timings,
        machine=machine,
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m assets.bundle", description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ASSETS)
    parser.add_argument("--steps", type=int, default=TrainSettings.steps)
    # One thread by default: on a shared 2-core machine, two OpenMP threads spin-wait on each other and ran an
    # epoch 10x slower than one thread did; one thread also makes the weights independent of the core count.
    parser.add_argument("--threads", type=int, default=1)
    # Processes drawing the next training batches while the model trains on this one; 0 draws inline.
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")

    result = build(args.seed, args.out, TrainSettings(steps=args.steps), threads=args.threads, workers=args.workers)
    write_report(result)
    for key in [*ATTRIBUTES, "colour + shape", *COMBINED_FAMILIES, "single attributes", "combined (3+ attributes)"]:
        log.info("mean AP %-28s %.3f", key, result.summary[key])
    for name, accuracy in result.probe.items():
        log.info("probe accuracy %-21s %.3f", name, accuracy)
    log.info("done in %.0f s", result.timings["total"])


if __name__ == "__main__":
    main()
