"""Rounds on a collection of near-duplicates, where the prompt's calibrated scale (and the fit's Gram matrix) is huge.

A session calibrates the prompt's weights so that its top scores' spread maps to about +-2.2 logits. When the
collection holds one image many times over (with a little noise), that spread is tiny and the prompt's norm reaches
1e4-1e6; the label-space fit's Gram entries then reach 1e10 and more, where a Newton decrement near its stopping test
is rounding (benchmarks/RESULTS-engine.md, section 11). This times a session's rounds there: copies of one random
unit vector with Gaussian noise of each ``--noise`` level (then normalised), a random prompt, ``--rounds`` rounds of
ten random +-1 labels, strategy ``mixed``.

    python -m benchmarks.near_duplicates            # 3,000 items, noise 1e-2, 1e-3, 1e-4, 15 rounds (~10 s)
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from benchmarks.machine import machine_line, today
from trainer.index.local import LocalIndex
from trainer.session import Session


def run(n: int, dim: int, noise: float, rounds: int, seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal(dim) + noise * rng.standard_normal((n, dim))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = LocalIndex.from_vectors([f"item-{k:06d}" for k in range(n)], vectors.astype(np.float32))
    session = Session(index, rng.standard_normal(dim).astype(np.float32), seed=seed)
    times, cpu = [], time.process_time()
    for _ in range(rounds):
        labels = {hit.id: float(rng.choice([-1.0, 1.0])) for hit in session.batch()}
        start = time.perf_counter()
        session.label(labels)
        session.train_and_requery()
        times.append((time.perf_counter() - start) * 1e3)
    return {
        "norm": float(session.classifier.prior_weight.norm()),
        "median": float(np.median(times)),
        "p95": float(np.percentile(times, 95)),
        "max": max(times),
        "cpu": (time.process_time() - cpu) * 1e3,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3000, help="items")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--noise", type=float, nargs="+", default=[1e-2, 1e-3, 1e-4])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(f"# Rounds on near-duplicates ({today()})\n\nMachine: {machine_line()}.")
    collection = f"{args.n:,} noisy copies of one random unit vector, dim {args.dim}"
    print(f"{collection}; {args.rounds} rounds of 10 random +-1 labels.\n")
    print("| noise | the prompt's calibrated norm | round wall median (p95, max) | all rounds' CPU |")
    print("|---:|---:|---|---:|")
    for noise in args.noise:
        r = run(args.n, args.dim, noise, args.rounds, args.seed)
        wall = f"{r['median']:.1f} ({r['p95']:.1f}, {r['max']:.1f}) ms"
        print(f"| {noise:g} | {r['norm']:.2g} | {wall} | {r['cpu']:.0f} ms |")


if __name__ == "__main__":
    main()
