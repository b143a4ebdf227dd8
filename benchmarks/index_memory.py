"""Peak memory of building a LocalIndex from embedding shards, and of loading it: each step in a fresh process.

    python -m benchmarks.index_memory [--rows 1000000] [--dim 512] [--shard-rows 4096] [--before PATH]

Setup (not measured): ``--rows`` random unit float32 vectors of ``--dim`` written as the Ray engine's parquet shards
(``ShardStore.write``, ``--shard-rows`` rows each). Then, each in its own interpreter, peak RSS from
``getrusage(RUSAGE_SELF).ru_maxrss`` (resident memory, memory-mapped file pages included) and the RSS after imports:

- build: what ``index --engine ray`` does after embedding: the shards streamed into the embeddings cache entry
  (``RayRun.to_cache``), then ``trainer.index.factory.build_index`` on it, saved to a folder;
- load: ``LocalIndex.load`` of that folder and one query (which reads every row);
- cache -> index: ``LocalIndex.from_vectors`` on the cache entry's memory-mapped vectors, then ``save``: the app's
  start-up and the ``index`` command's path. ``--before PATH`` also runs this step against another checkout (a
  ``git worktree`` of an earlier commit), to compare with the code before this change;
- in memory: the same from a writable array read whole (``np.load`` without a map): the cache-less fallback.

Target (issue 16): peak RSS <= 1.5x the index's vector bytes when building or loading.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
STEPS = ("build", "load", "cache-to-index", "in-memory")


def rss_now() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux


class _Model:
    """What the cache key and manifest need of an embedder: its name, revision and dimension."""

    def __init__(self, dim: int) -> None:
        self.model_id, self.revision, self.commit_hash, self.dim = "bench/random-model", None, None, dim


def _collection(rows: int):
    from trainer.data import Collection

    ids = [f"img-{i:08d}" for i in range(rows)]
    return Collection(
        ids, source="bench/collection", config=None, split="train", revision=None, image_column=None,
        content_signature=None,
    )  # fmt: skip


def setup(work: Path, rows: int, dim: int, shard_rows: int) -> None:
    from trainer.embedding_cache import cache_key
    from trainer.shards import ShardStore

    model, collection = _Model(dim), _collection(rows)
    store = ShardStore(work / "cache" / cache_key(model, collection) / "ray-shards")
    rng = np.random.default_rng(0)
    for start in range(0, rows, shard_rows):
        stop = min(start + shard_rows, rows)
        vectors = rng.standard_normal((stop - start, dim), dtype=np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        store.write(start, stop, list(collection.ids[start:stop]), vectors, [], cache_key(model, collection))


def step(name: str, work: Path, rows: int, dim: int) -> dict[str, float]:
    baseline = 0
    if name == "build":
        from trainer.config import Settings
        from trainer.embedding_cache import cache_key
        from trainer.index.factory import build_index
        from trainer.ray_indexing import RayRun
        from trainer.shards import ShardStore

        model, collection = _Model(dim), _collection(rows)
        key = cache_key(model, collection)
        store = ShardStore(work / "cache" / key / "ray-shards")
        baseline = rss_now()
        run = RayRun(store, tuple(store.scan(key, rows)), key, dim, 0, rows, 0.0, "float32", "")
        embeddings = run.to_cache(model, collection, work / "cache")
        build_index(Settings(), collection, embeddings.ids, embeddings.vectors, local_path=work / "index")
    else:
        import json as json_

        from trainer.index.local import LocalIndex

        entry = next((work / "cache").iterdir())
        if name == "load":
            baseline = rss_now()
            index = LocalIndex.load(work / "index")
            index.query(np.ones(dim, np.float32) / np.sqrt(dim), 10)
        else:
            ids = json_.loads((entry / "ids.json").read_text())
            baseline = rss_now()
            vectors = np.load(entry / "vectors.npy", mmap_mode="r" if name == "cache-to-index" else None)
            LocalIndex.from_vectors(ids, vectors).save(work / f"index-{name}")
    return {"baseline": baseline, "peak": peak_rss()}


def run_child(code_root: Path, name: str, work: Path, rows: int, dim: int) -> dict[str, float]:
    # This file runs as a script, so that ``trainer`` comes from ``code_root`` (which may predate this benchmark).
    env = {**os.environ, "PYTHONPATH": str(code_root)}
    argv = [sys.executable, str(Path(__file__).resolve()), "--child", name, "--work", str(work)]
    argv += ["--rows", str(rows), "--dim", str(dim)]
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=code_root, env=env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"step {name} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {**result, "seconds": time.perf_counter() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--shard-rows", type=int, default=4096)
    parser.add_argument("--before", type=Path, help="another checkout to run the cache -> index step against")
    parser.add_argument("--child", choices=STEPS, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(step(args.child, args.work, args.rows, args.dim)))
        return

    from benchmarks.machine import machine_line, today

    vector_bytes = args.rows * args.dim * 4
    print(f"{today()}  {machine_line()}")
    print(f"uptime: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    print(f"{args.rows:,} x {args.dim} float32 = {vector_bytes / 1e9:.3f} GB of vectors; shards of {args.shard_rows}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="ct-bench-memory-") as tmp:
        work = Path(tmp)
        started = time.perf_counter()
        setup(work, args.rows, args.dim, args.shard_rows)
        print(f"setup: shards written in {time.perf_counter() - started:.0f} s")
        for name in STEPS:
            rows.append(("this change", name, run_child(REPO, name, work, args.rows, args.dim)))
        if args.before:
            rows.append(
                ("before", "cache-to-index", run_child(args.before, "cache-to-index", work, args.rows, args.dim))
            )
    print()
    print("| code | step | peak RSS (GB) | peak / vector bytes | RSS after imports (GB) | seconds |")
    print("|---|---|---|---|---|---|")
    for code, name, r in rows:
        print(
            f"| {code} | {name} | {r['peak'] / 1e9:.2f} | {r['peak'] / vector_bytes:.2f}x | {r['baseline'] / 1e9:.2f} "
            f"| {r['seconds']:.0f} |"
        )


if __name__ == "__main__":
    main()
