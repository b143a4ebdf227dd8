"""Round latency: how long a person waits between pressing "train" and seeing the next batch.

One round is ``session.label({...batch_size ids...})`` followed by ``session.train_and_requery()`` on a
``LocalIndex`` of random unit vectors. ARCHITECTURE.md's targets are <= 10 ms at 10k vectors and <= 100 ms at 1M on a
2-core machine. Every round trains on *all* labels so far, so a round gets slower as labels pile up: we report the
median and p95 over the first ``--rounds`` rounds (10 .. 10 * rounds labels), and separately round 20 (200 labels)
of ``--repeats`` sessions, each brought to 190 labels with labels of its own and timed once: a real round, whose fit
starts from the last round's solution with the ten new labels at zero.

Until 2026-12-03 round 20 was repeated through ``undo`` in one session instead. That timed a refit on the identical
200 labels from their own converged solution (the classifier's Gram cache is not part of undo's checkpoint): 8
Cholesky factorisations where a real round 20 takes 22-23, and 9.1-9.7 ms at 10k where real rounds took 13-16 ms on
the same machine (benchmarks/RESULTS-engine.md, section 10).

The breakdown says where the time goes: ``label`` (checks + fetching the new vectors), ``fit`` (the classifier's
label-space fit), ``query`` (scoring every vector + top-k) and ``other`` (snapshot for undo, choosing the batch, stats).
It is measured by wrapping the session's ``index.query`` and ``classifier.fit`` with timers, so the engine runs
unchanged.

The machine may be shared: timings are noisy, so compare rows of one run, look at medians, and rerun.

    python -m benchmarks.round_latency            # 10k, 100k, 1M x float32, float16 (~3 minutes, 6.4 GB peak)
    python -m benchmarks.round_latency --quick    # 10k only, a few rounds: a smoke run
"""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from benchmarks.machine import machine_line, today
from trainer.index.local import LocalIndex
from trainer.session import Session

# ARCHITECTURE.md: <= 10 ms at 10k, <= 100 ms at 1M. 100k has no target of its own; we hold it to the 1M one.
TARGETS_MS = {10_000: 10.0, 100_000: 100.0, 1_000_000: 100.0}
PARTS = ("label", "fit", "query", "other")
STEADY_ROUND = 20  # at batch size 10: 200 labels


@dataclass
class RoundTimes:
    total: list[float] = field(default_factory=list)  # wall ms per round
    cpu: list[float] = field(default_factory=list)  # this process's CPU ms per round, all its threads
    parts: dict[str, list[float]] = field(default_factory=lambda: {p: [] for p in PARTS})


def random_unit_vectors(n: int, dim: int, seed: int, chunk: int = 65_536) -> np.ndarray:
    """(n, dim) float32 unit rows, generated in chunks so that no float64 copy of the whole array ever exists."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, chunk):
        block = rng.standard_normal((min(chunk, n - start), dim), dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[start : start + len(block)] = block
    return out


def build_index(n: int, dim: int, dtype: str, seed: int) -> LocalIndex:
    vectors = random_unit_vectors(n, dim, seed)
    index = LocalIndex.from_vectors([f"v{i:07d}" for i in range(n)], vectors, dtype=dtype)
    del vectors
    gc.collect()
    return index


class TimedSession:
    """A Session whose ``index.query`` and ``classifier.fit`` add their wall time to a per-round tally."""

    def __init__(self, index: LocalIndex, prompt: np.ndarray, *, strategy: str, seed: int) -> None:
        self.session = Session(index, prompt, strategy=strategy, seed=seed)
        self.tally: dict[str, float] = {}
        self.labeller = np.random.default_rng(seed + 1)
        # Instance attributes shadow the methods, so only this session's calls are timed.
        self.session.index = _Timed(index, {"query": "query"}, self.tally)  # type: ignore[assignment]
        self.session.classifier.fit = _timed(self.session.classifier.fit, "fit", self.tally)  # type: ignore[method-assign]

    def labels_for_batch(self) -> dict[str, float]:
        """Random +1 / -1 for each item of the current batch: both classes, as a real person would give."""
        batch = self.session.batch()
        signs = self.labeller.choice([-1.0, 1.0], size=len(batch))
        return {hit.id: float(s) for hit, s in zip(batch, signs, strict=True)}

    def round(self, labels: dict[str, float], times: RoundTimes | None = None) -> None:
        """One round; with ``times``, its wall time, CPU time and per-part wall times are appended there."""
        self.tally.clear()
        cpu = time.process_time()
        start = time.perf_counter()
        self.session.label(labels)
        labelled = time.perf_counter()
        self.session.train_and_requery()
        end = time.perf_counter()
        cpu = time.process_time() - cpu
        if times is None:
            return
        parts = {"label": labelled - start, "fit": self.tally.get("fit", 0.0), "query": self.tally.get("query", 0.0)}
        parts["other"] = (end - start) - sum(parts.values())
        times.total.append((end - start) * 1e3)
        times.cpu.append(cpu * 1e3)
        for k, v in parts.items():
            times.parts[k].append(v * 1e3)


class _Timed:
    """Forwards every attribute to ``target``; the methods named in ``timed`` add their wall time to ``tally``."""

    def __init__(self, target: Any, timed: dict[str, str], tally: dict[str, float]) -> None:
        self._target, self._timed, self._tally = target, timed, tally

    def __len__(self) -> int:
        return len(self._target)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        return _timed(attr, self._timed[name], self._tally) if name in self._timed else attr


def _timed(fn: Callable[..., Any], key: str, tally: dict[str, float]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            tally[key] = tally.get(key, 0.0) + time.perf_counter() - start

    return wrapper


@contextmanager
def no_gc() -> Iterator[None]:
    """Keep the garbage collector from landing a pause inside a timed round."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def measure(index: LocalIndex, *, rounds: int, repeats: int, warmup: int, strategy: str, seed: int) -> dict:
    """Time ``rounds`` growing rounds, then round 20 (200 labels at batch size 10) of ``repeats`` fresh sessions."""
    prompt = random_unit_vectors(1, index.dim, seed + 99)[0]
    warm = TimedSession(index, prompt, strategy=strategy, seed=seed + 1000)
    for _ in range(warmup):
        warm.round(warm.labels_for_batch())

    timed = TimedSession(index, prompt, strategy=strategy, seed=seed)
    growing = RoundTimes()
    with no_gc():
        for _ in range(rounds):
            timed.round(timed.labels_for_batch(), growing)
    # Sessions of their own, each brought to the start of round 20 (190 labels); its round 20 (200 labels) is timed.
    steady = RoundTimes()
    for k in range(repeats):
        timed = TimedSession(index, prompt, strategy=strategy, seed=seed + 1 + k)
        while timed.session.round < STEADY_ROUND:
            timed.round(timed.labels_for_batch())
        with no_gc():
            timed.round(timed.labels_for_batch(), steady)
    return {"growing": growing, "steady": steady}


def summarise(times: RoundTimes) -> dict[str, float]:
    out = {"median": float(np.median(times.total)), "p95": float(np.percentile(times.total, 95))}
    out["cpu"] = float(np.median(times.cpu))
    out.update({k: float(np.median(v)) for k, v in times.parts.items()})
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--dtypes", nargs="+", default=["float32", "float16"], choices=["float32", "float16"])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=20, help="timed rounds from a fresh session (labels grow)")
    parser.add_argument("--repeats", type=int, default=10, help="sessions whose round 20 (200 labels) is timed")
    parser.add_argument("--warmup", type=int, default=3, help="untimed rounds on a throwaway session first")
    parser.add_argument("--strategy", default="mixed")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="10k only, 5 rounds, 5 repeats: a smoke run")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.rounds, args.repeats, args.warmup = [10_000], 5, 5, 1

    print(f"Round latency, {today()}; {machine_line()}")
    print(f"strategy={args.strategy}, batch 10, dim {args.dim}; medians of per-round parts\n")
    rows = []
    for n in args.sizes:
        for dtype in args.dtypes:
            started = time.perf_counter()
            index = build_index(n, args.dim, dtype, args.seed)
            built = time.perf_counter() - started
            result = measure(
                index,
                rounds=args.rounds,
                repeats=args.repeats,
                warmup=args.warmup,
                strategy=args.strategy,
                seed=args.seed,
            )
            grow, steady = summarise(result["growing"]), summarise(result["steady"])
            target = TARGETS_MS.get(n)
            worst = max(grow["median"], steady["median"])
            verdict = "-" if target is None else ("met" if worst <= target else "MISSED")
            rows.append((n, dtype, grow, steady, target, verdict))
            print(f"  built {n:,} x {dtype} in {built:.1f} s; round median {grow['median']:.1f} ms", flush=True)
            del index
            gc.collect()

    print()
    print(
        f"| vectors | dtype | rounds 1-{args.rounds}: wall median (p95) ms | CPU ms | label | fit | query | other "
        f"| round {STEADY_ROUND} ({STEADY_ROUND * 10} labels): wall median (p95) ms | CPU ms | fit | query "
        "| target | met (wall median) |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for n, dtype, grow, steady, target, verdict in rows:
        print(
            f"| {n:,} | {dtype} | {grow['median']:.1f} ({grow['p95']:.1f}) | {grow['cpu']:.1f} | {grow['label']:.2f} "
            f"| {grow['fit']:.1f} | {grow['query']:.1f} | {grow['other']:.2f} "
            f"| {steady['median']:.1f} ({steady['p95']:.1f}) | {steady['cpu']:.1f} | {steady['fit']:.1f} "
            f"| {steady['query']:.1f} | {'-' if target is None else f'<= {target:g}'} | {verdict} |"
        )


if __name__ == "__main__":
    main()
