"""Memory a long scripted session holds, undo checkpoints included: one process per checkout, side by side.

    python -m benchmarks.session_memory [--items 10000] [--dim 64] [--batch 50] [--rounds 200] [--before PATH]

An API client labelling a whole collection: ``--items`` random unit vectors in a ``LocalIndex``, a ``mixed`` session
at batch ``--batch`` whose every shown item gets a random +-1 label, ``--rounds`` rounds. Python's ``tracemalloc``
counts what the session allocates from its start (the index is built before), at rounds 50, 100, 200 ..., and the
wall time of the rounds; then every round is undone, and that is timed too. ``--before PATH`` runs the same in
another checkout (a ``git worktree`` of an earlier commit), alternately with this one (RESULTS-engine.md, section 9).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def measure(items: int, dim: int, batch: int, rounds: int) -> dict:
    from trainer.index.local import LocalIndex
    from trainer.session import Session

    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((items, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = LocalIndex.from_vectors([f"img{i:06d}" for i in range(items)], vectors)
    prompt = vectors[0] + 0.1 * rng.standard_normal(dim).astype(np.float32)
    tracemalloc.start()
    session = Session(index, prompt / np.linalg.norm(prompt), batch_size=batch, seed=0)
    held, start = {}, time.perf_counter()
    for r in range(1, rounds + 1):
        shown = session.batch()
        if not shown:
            break
        session.label({h.id: float(rng.choice([-1.0, 1.0])) for h in shown})
        session.train_and_requery()
        if r % 50 == 0 or r == rounds:
            held[r] = round(tracemalloc.get_traced_memory()[0] / 1e6, 1)
    train_s = time.perf_counter() - start
    trained, labelled = session.rounds_trained, len(session.labels)
    start = time.perf_counter()
    while session.can_undo:
        session.undo()
    return {
        "held_mb": held,
        "rounds": trained,
        "labels": labelled,
        "round_ms": round(1000 * train_s / max(trained, 1), 1),
        "undo_ms": round(1000 * (time.perf_counter() - start) / max(trained, 1), 2),
    }


def _run(checkout: Path, args: argparse.Namespace) -> dict:
    flags = [f"--{name}={getattr(args, name)}" for name in ("items", "dim", "batch", "rounds")]
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.session_memory", *flags, "--child"],
        cwd=checkout,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--before", type=Path, help="another checkout to run alternately with this one")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.items, args.dim, args.batch, args.rounds)))
        return
    from benchmarks.machine import machine_line, today

    print(f"# {today()}; {machine_line()}")
    runs = [("this checkout", REPO)] + ([("before", args.before.resolve())] if args.before else [])
    for name, checkout in runs + runs:
        print(f"{name}: {json.dumps(_run(checkout, args))}", flush=True)


if __name__ == "__main__":
    main()
