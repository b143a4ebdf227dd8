"""The Ray engine against the local indexer on the same images, side by side in one run, plus the sizing figures.

    python -m benchmarks.ray_indexing [--images 512] [--rounds 2] [--batch-size 64] [--shard-size 256]

- model and images as ``benchmarks.indexing_throughput``: a random full-size ViT-B/32 CLIP (224 px) and generated
  320 px JPEGs in a folder;
- local: ``build_embeddings`` with an empty cache (decode and preprocess on a thread, overlapped with the forward
  pass, shards, consolidation into the cache);
- ray: ``RayIndexer.embed`` then ``RayRun.to_cache`` with an empty cache, on a Ray started once beforehand with this
  machine's cores (decoding actors, one embedding actor, shard writes, consolidation into the same cache format).
  Its time includes starting the actors and loading the model in them on every run: what a user waits for. The
  steady rate leaves that out: images after the first shard over the time after the first shard;
- the two alternate for ``--rounds`` rounds so that other processes' load hits both alike; each round's ratio is
  ray / local run back to back, and the median of those ratios is the figure (target: >= 80%);
- sizing: decode + RGB + preprocess (``RowReader.decode`` + ``prepare``) of the same JPEGs on one thread, and the
  bare forward pass on ready pixels with all cores (CPU; no GPU is measured here), each as images per second and as
  images per CPU second (per core; unlike wall time, it holds on a machine shared with other jobs).
  ``--rounds 0`` measures only these.

Prints a markdown table row at the end, with ``uptime`` before and after.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from benchmarks.machine import machine_line, today
from benchmarks.synthetic import make_images, make_model
from trainer import embed
from trainer.data import Collection
from trainer.indexing import build_embeddings, prepare


@dataclass
class Run:
    images: int
    wall: float  # seconds, start to a complete cache entry
    first_shard: float  # seconds until the first shard was written (ray) / first progress report (local)
    after_first: int  # images handled after that moment

    @property
    def rate(self) -> float:
        return self.images / self.wall

    @property
    def steady(self) -> float:
        return self.after_first / max(self.wall - self.first_shard, 1e-9)


def time_local(embedder: embed.Embedder, folder: Path, cache: Path, batch_size: int) -> Run:
    marks: list[tuple[float, int]] = []
    started = time.perf_counter()
    result = build_embeddings(
        embedder,
        Collection.open(str(folder)),
        cache,
        batch_size=batch_size,
        progress=lambda done, total, message: marks.append((time.perf_counter() - started, done)),
    )
    wall = time.perf_counter() - started
    assert not result.cache_hit and not result.skipped and len(result)
    first = next((t, d) for t, d in marks if d > 0)
    return Run(len(result), wall, first[0], len(result) - first[1])


def time_ray(indexer, embedder: embed.Embedder, folder: Path, cache: Path) -> Run:
    marks: list[tuple[float, int]] = []
    collection = Collection.open(str(folder))
    started = time.perf_counter()
    run = indexer.embed(
        embedder,
        collection,
        cache,
        progress=lambda done, total, message: marks.append((time.perf_counter() - started, done)),
    )
    result = run.to_cache(embedder, collection, cache)
    wall = time.perf_counter() - started
    assert run.embedded_now == len(collection) and len(result) == len(collection)
    first = next((t, d) for t, d in marks if d > 0)
    return Run(len(result), wall, first[0], len(result) - first[1])


def decode_rate(embedder: embed.Embedder, folder: Path, batch_size: int) -> tuple[float, float]:
    """Decode + RGB + preprocess on one thread, the work a Ray decoding actor does: (images per second of wall
    time, images per CPU second of that thread). On a shared machine the second is the per-core rate."""
    collection = Collection.open(str(folder))
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        wall, cpu = time.perf_counter(), time.thread_time()
        for start in range(0, len(collection), batch_size):
            stop = min(start + batch_size, len(collection))
            prepare(embedder.preprocessor, collection.reader().decode(start, stop, collection.ids[start:stop]))
        wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
        return len(collection) / wall, len(collection) / cpu
    finally:
        torch.set_num_threads(torch_threads)


def forward_rate(embedder: embed.Embedder, folder: Path, batch_size: int) -> tuple[float, float]:
    """The bare batched forward pass on pixels made beforehand, all cores: (images per second, images per CPU
    second of the process, i.e. per core)."""
    collection = Collection.open(str(folder))
    pixels = prepare(embedder.preprocessor, collection.decode_range(0, min(len(collection), 4 * batch_size))).pixels
    embedder.embed_pixels(pixels[:batch_size])  # warm-up
    wall, cpu = time.perf_counter(), time.process_time()
    for start in range(0, len(pixels), batch_size):
        embedder.embed_pixels(pixels[start : start + batch_size])
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return len(pixels) / wall, len(pixels) / cpu


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def _load(line: str) -> str:
    return line.split("load average:")[-1].split(",")[0].strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=2, help="0: only the sizing figures")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--shard-size", type=int, default=256)
    args = parser.parse_args()
    for variable in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY"):
        os.environ.setdefault(variable, "1")

    print(f"{today()}  {machine_line()}")
    before = uptime()
    print(f"uptime before: {before}")
    with tempfile.TemporaryDirectory(prefix="ct-bench-ray-") as tmp:
        work = Path(tmp)
        make_model(work / "model")
        make_images(work / "images", args.images)
        embedder = embed.load(str(work / "model"))
        local: list[Run] = []
        remote: list[Run] = []
        if args.rounds:
            compare(args, embedder, work, local, remote)
        decode = decode_rate(embedder, work / "images", args.batch_size)
        forward = forward_rate(embedder, work / "images", args.batch_size)

    after = uptime()
    print(f"uptime after: {after}")
    print()
    print(f"decode + preprocess       {decode[0]:6.1f} images/s on one thread, {decode[1]:6.1f} per CPU second")
    threads = torch.get_num_threads()
    print(f"forward pass (CPU)        {forward[0]:6.1f} images/s ({threads} threads), {forward[1]:6.1f} per CPU second")
    if not args.rounds:
        return
    ratio = statistics.median(r.rate / lo.rate for r, lo in zip(remote, local, strict=True))
    steady = statistics.median(r.steady / lo.steady for r, lo in zip(remote, local, strict=True))
    print(f"ray / local, end to end   {ratio:6.1%}  (median over rounds; target >= 80%)")
    print(f"ray / local, steady       {steady:6.1%}  (after the first shard / the first batch)")
    print()
    print(
        "| date | load (1 min, before/after) | images x rounds | local (img/s) | ray (img/s) | ray/local | "
        "ray/local steady | decode+preprocess (img per CPU s) | CPU forward (img per CPU s) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    print(
        f"| {today()} | {_load(before)} / {_load(after)} | {args.images} x {args.rounds}, "
        f"batch {args.batch_size}, shard {args.shard_size} | {statistics.median(r.rate for r in local):.2f} "
        f"| {statistics.median(r.rate for r in remote):.2f} | {ratio:.0%} | {steady:.0%} | {decode[1]:.1f} "
        f"| {forward[1]:.1f} |"
    )


def compare(
    args: argparse.Namespace, embedder: embed.Embedder, work: Path, local: list[Run], remote: list[Run]
) -> None:
    """Alternate the two engines for ``args.rounds`` rounds on a Ray started once, filling ``local`` and ``remote``."""
    import ray
    from ray.data import DataContext

    from trainer.ray_indexing import RayIndexer, RayOptions

    started = time.perf_counter()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level="WARNING")
    DataContext.get_current().enable_progress_bars = False
    print(f"ray.init: {time.perf_counter() - started:.1f} s (once, not in the runs)")
    indexer = RayIndexer(RayOptions(batch_size=args.batch_size, rows_per_shard=args.shard_size))
    try:
        for round_ in range(args.rounds):
            # Alternate which goes first, so that neither always follows the other's clean-up.
            order = ("local", "ray") if round_ % 2 == 0 else ("ray", "local")
            for engine in order:
                cache = work / f"cache-{engine}-{round_}"
                if engine == "local":
                    local.append(time_local(embedder, work / "images", cache, args.batch_size))
                else:
                    remote.append(time_ray(indexer, embedder, work / "images", cache))
            lo, ra = local[-1], remote[-1]
            print(
                f"round {round_ + 1} ({' then '.join(order)}): local {lo.rate:.2f} img/s ({lo.wall:.1f} s, steady "
                f"{lo.steady:.2f}), ray {ra.rate:.2f} img/s ({ra.wall:.1f} s, first shard at {ra.first_shard:.1f} s, "
                f"steady {ra.steady:.2f}) -> {ra.rate / lo.rate:.0%}; load {os.getloadavg()[0]:.1f}"
            )
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
