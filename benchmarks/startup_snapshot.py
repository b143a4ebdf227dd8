"""Start-up to a usable workspace: from raw images, from an embedding snapshot, and from the local cache.

    python -m benchmarks.startup_snapshot [--model bundle|vit-b32] [--repeats 3]   # from the repo root

Each start is a fresh interpreter running ``load_workspace`` (imports, model load, collection, embeddings of the
indexed and held-out splits, local index, 2-D map), timed from spawn to exit by this process and, inside, for
``load_workspace`` alone. Every start gets its own empty cache folder except "cache", which reuses the one the
snapshot start just filled (what a restart on persistent storage sees).

- raw: no snapshot, empty cache: every image is decoded and embedded;
- snapshot: ``CT_SNAPSHOT`` = a snapshot folder exported from the raw start's embeddings, empty cache. This is a
  local folder: the Hub download (one parquet file of N x D float32 per split) is not included, since this machine
  cannot reach the Hub; its size is printed so the download can be estimated;
- cache: the same settings again: a plain cache hit.

``--model bundle`` uses the offline bundle (assets/tiny-clip + assets/shapes); ``--model vit-b32`` embeds the
bundle's images with a randomly initialised full-size CLIP (ViT-B/32 sizes, 224 px), whose forward cost is the real
model's, to show what a Space with the default model would save per image. Prints a markdown table row at the end.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def child(settings_json: str) -> None:
    """One start: load the workspace and report what it took (runs in a fresh interpreter)."""
    started = time.perf_counter()
    from trainer.config import Settings
    from trainer.workspace import load_workspace

    values = json.loads(settings_json)
    settings = Settings.from_env(environ={}, **{**values, "cache_dir": Path(values["cache_dir"])})
    ws = load_workspace(settings)
    print(
        json.dumps(
            {
                "load_s": ws.load_seconds,
                "in_process_s": time.perf_counter() - started,
                "count": len(ws.index),
                "held_out": len(ws.eval.embeddings) if ws.eval else 0,
                "from_snapshot": "origin" in ws.embeddings.manifest,
                "cache_hit": ws.embeddings.cache_hit,
                "notes": list(ws.notes),
            }
        )
    )


def start(values: dict) -> dict:
    began = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.startup_snapshot", "--child", json.dumps(values)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"},
    )
    wall = time.perf_counter() - began
    if done.returncode:
        raise SystemExit(f"a start failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {**result, "wall_s": wall}


def export(values: dict, folder: Path) -> None:
    """A snapshot of both splits from the raw start's cache (a cache hit here: nothing is embedded again)."""
    from trainer.config import Settings
    from trainer.snapshot_publish import export_snapshot
    from trainer.workspace import load_workspace

    settings = Settings.from_env(environ={}, **{**values, "cache_dir": Path(values["cache_dir"])})
    ws = load_workspace(settings)
    parts = [(ws.collection, ws.embeddings)] + ([(ws.eval.collection, ws.eval.embeddings)] if ws.eval else [])
    export_snapshot(ws.embedder, parts, folder, command="benchmarks/startup_snapshot.py")


def make_vit_b32(folder: Path) -> None:
    from benchmarks.indexing_throughput import make_model

    make_model(folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=("bundle", "vit-b32"), default="bundle")
    parser.add_argument("--repeats", type=int, default=3, help="snapshot and cache starts (raw runs once: slow)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return

    from trainer.config import BUNDLE_DATASET, BUNDLE_MODEL

    with tempfile.TemporaryDirectory(prefix="ct-startup-") as tmp:
        root = Path(tmp)
        model = BUNDLE_MODEL
        if args.model == "vit-b32":
            model = str(root / "vit-b32")
            make_vit_b32(Path(model))
        base = {"model_id": model, "dataset": BUNDLE_DATASET, "dataset_config": None, "eval_split": "validation"}
        bundle_kind = "symlinked stand-in" if Path(BUNDLE_MODEL).is_symlink() else "committed bundle"

        raw = start({**base, "cache_dir": str(root / "cache-raw")})
        print(f"raw:      {raw}", flush=True)
        snapshot = root / "snapshot"
        export({**base, "cache_dir": str(root / "cache-raw")}, snapshot)
        size = sum(p.stat().st_size for p in snapshot.rglob("*.parquet"))
        snaps, caches = [], []
        for k in range(args.repeats):
            cache = root / f"cache-snap-{k}"
            snaps.append(start({**base, "cache_dir": str(cache), "snapshot": str(snapshot)}))
            print(f"snapshot: {snaps[-1]}", flush=True)
            caches.append(start({**base, "cache_dir": str(cache), "snapshot": str(snapshot)}))
            print(f"cache:    {caches[-1]}", flush=True)
            shutil.rmtree(cache)
        assert all(s["from_snapshot"] and s["count"] == raw["count"] for s in snaps), "a snapshot start fell back"

    def median(runs: list[dict], key: str) -> float:
        return statistics.median(r[key] for r in runs)

    load = os.getloadavg()[0]
    print()
    print(f"images: {raw['count']} indexed + {raw['held_out']} held out; parquet {size / 1e6:.2f} MB ({bundle_kind})")
    print(
        "| date | machine | model | images | raw: wall / load_workspace (s) | snapshot: wall / load_workspace (s) "
        "| cache hit: wall / load_workspace (s) | speed-up (wall) | parquet | load avg |"
    )
    print(
        f"| {datetime.date.today()} | {os.cpu_count()}-core CPU ({platform.processor() or platform.machine()}) "
        f"| {args.model} | {raw['count']} + {raw['held_out']} "
        f"| {raw['wall_s']:.1f} / {raw['load_s']:.1f} "
        f"| {median(snaps, 'wall_s'):.1f} / {median(snaps, 'load_s'):.2f} "
        f"| {median(caches, 'wall_s'):.1f} / {median(caches, 'load_s'):.2f} "
        f"| {raw['wall_s'] / median(snaps, 'wall_s'):.1f}x | {size / 1e6:.2f} MB | {load:.1f} |"
    )


if __name__ == "__main__":
    main()
