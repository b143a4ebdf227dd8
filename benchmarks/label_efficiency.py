"""Label efficiency: how many labels each strategy needs before the classifier ranks the collection well.

On synthetic planted-concept collections (``trainer.synthetic.planted_concept``, dim 512) a labeller answers every
item of each batch (batch size 10) and, after every round, we score the *whole* collection with the session's
classifier and compute average precision (AP) against the planted truth. Per strategy and collection we report:

- labels to AP >= 0.9: 10 x the first round whose AP reaches 0.9 ("not reached" within ``--rounds``);
- AP after rounds 1, 3, 5 and 10, and the positives the person was shown in the first 10 rounds;
- worst AP - zero-shot AP over every round: the classifier must never rank worse than the prompt alone
  (ARCHITECTURE.md: "a handful of labels never makes the classifier worse than zero-shot").

Seeds vary the collection *and* the session: ``top``, ``boundary`` and ``mixed`` are deterministic given a
collection, so only new collections make the seeds independent.

Two parts. On a busy 2-core machine each difficulty takes 1-2.5 minutes in ``strategies`` and 3-4.5 in
``prior``, so pick difficulties per run to stay under ~5 minutes:

    python -m benchmarks.label_efficiency strategies --difficulties default noisy     # original, top, boundary,
    python -m benchmarks.label_efficiency strategies --difficulties hard misaligned   # mixed, random; oracle
    python -m benchmarks.label_efficiency prior --difficulties noisy    # prior_strength sweep, default strategy,
                                                                        # oracle and noisy labeller
    python -m benchmarks.label_efficiency strategies --quick            # smoke run

The noisy labeller stands in for a real person: it flips ``--flip`` of the answers (default 15%) and gives each a
slider-like confidence drawn uniformly from 0.3 to 1.0. The prior exists to protect against exactly that.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from benchmarks.machine import machine_line, today
from trainer.index.local import LocalIndex
from trainer.session import Session
from trainer.synthetic import PlantedConcept, average_precision, planted_concept

TARGET_AP = 0.9
# AP differences smaller than this are float noise in tied scores, not a classifier that got worse.
BELOW_TOLERANCE = 1e-3
REPORT_ROUNDS = (1, 3, 5, 10)
BATCH_SIZE = 10
STRATEGIES = ("original", "top", "boundary", "mixed", "random")
PRIOR_STRENGTHS = (1.0, 3.0, 10.0, 30.0, 100.0)

# Difficulty settings for planted_concept at dim 512. The default is easy at this dimension: the per-item noise is
# spread over 512 directions, so little of it lands on the concept's own. The others add noise, make the concept
# rarer, or aim the prompt further off (a stronger distractor and a bigger random component).
DIFFICULTIES: dict[str, dict[str, float]] = {
    "default": {},
    "noisy": {"noise": 4.0, "prevalence": 0.2},
    "hard": {"noise": 5.0, "prevalence": 0.15},
    "misaligned": {"noise": 3.0, "distractor": 1.5, "misalignment": 1.0},
}

Labeller = Callable[[PlantedConcept, list[str], np.random.Generator], dict[str, float]]


def oracle(concept: PlantedConcept, ids: list[str], rng: np.random.Generator) -> dict[str, float]:
    return concept.oracle(ids)


def noisy_labeller(flip: float) -> Labeller:
    """A person who gets ``flip`` of the answers wrong and sets a slider somewhere between 0.3 and 1.0."""

    def label(concept: PlantedConcept, ids: list[str], rng: np.random.Generator) -> dict[str, float]:
        truth = concept.oracle(ids)
        signs = np.where(rng.random(len(ids)) < flip, -1.0, 1.0)
        confidence = rng.uniform(0.3, 1.0, size=len(ids))
        return {i: float(truth[i] * s * m) for i, s, m in zip(ids, signs, confidence, strict=True)}

    return label


@dataclass(frozen=True)
class Run:
    """One session on one collection: AP before training (index 0) and after each round."""

    aps: list[float]
    positives_shown: list[int]  # true positives among the items shown in each round

    @property
    def zero_shot(self) -> float:
        return self.aps[0]

    def labels_to(self, target: float) -> int | None:
        rounds = next((r for r, ap in enumerate(self.aps) if ap >= target), None)
        return None if rounds is None else rounds * BATCH_SIZE

    @property
    def worst_vs_zero_shot(self) -> float:
        return min(self.aps[1:]) - self.zero_shot


def run_session(
    concept: PlantedConcept,
    index: LocalIndex,
    *,
    strategy: str,
    seed: int,
    rounds: int,
    labeller: Labeller = oracle,
    prior_strength: float = 10.0,
    batch_size: int = BATCH_SIZE,
) -> Run:
    session = Session(
        index,
        concept.prompt_vector,
        strategy=strategy,
        batch_size=batch_size,
        seed=seed,
        **({} if strategy == "original" else {"prior_strength": prior_strength}),
    )
    rng = np.random.default_rng([seed, 7])
    rows = {id_: i for i, id_ in enumerate(concept.ids)}
    aps = [average_precision(session.scores(concept.vectors), concept.truth)]
    positives: list[int] = []
    for _ in range(rounds):
        ids = [hit.id for hit in session.batch()]
        if not ids:
            break
        positives.append(int(concept.truth[[rows[i] for i in ids]].sum()))
        session.label(labeller(concept, ids, rng))
        session.train_and_requery()
        aps.append(average_precision(session.scores(concept.vectors), concept.truth))
    return Run(aps, positives)


def collections(difficulties: Sequence[str], seeds: Sequence[int], n: int, dim: int):
    for difficulty in difficulties:
        for seed in seeds:
            concept = planted_concept(n=n, dim=dim, seed=seed, **DIFFICULTIES[difficulty])
            yield difficulty, seed, concept, LocalIndex.from_vectors(concept.ids, concept.vectors)


# ----------------------------------------------------------------------------------------------------- reporting
def fmt_labels(values: list[int | None]) -> str:
    """Median labels over seeds, with how many seeds reached the target when not all did."""
    reached = [v for v in values if v is not None]
    if not reached:
        return "not reached"
    # Unreached seeds count as worse than any reached one, so the median is honest about them.
    ordered = sorted(reached) + [None] * (len(values) - len(reached))
    middle = ordered[len(ordered) // 2]  # the upper middle for an even count: never flatters
    median = "not reached" if middle is None else str(middle)
    return median if len(reached) == len(values) else f"{median} ({len(reached)}/{len(values)} reached)"


def summary_row(name: str, runs: list[Run], rounds: int) -> str:
    def ap_at(r: int) -> str:
        values = [run.aps[r] for run in runs if len(run.aps) > r]
        return f"{np.median(values):.3f}" if values else "-"

    worst = [run.worst_vs_zero_shot for run in runs]
    below = sum(w < -BELOW_TOLERANCE for w in worst)
    shown = [sum(run.positives_shown[:10]) for run in runs]
    return (
        f"| {name} | {np.median([run.zero_shot for run in runs]):.3f} "
        f"| {fmt_labels([run.labels_to(TARGET_AP) for run in runs])} "
        + "".join(f"| {ap_at(r)} " for r in REPORT_ROUNDS)
        + f"| {np.median(shown):.0f} | {min(worst):+.4f} | {below}/{len(runs)} |"
    )


def table_header(first: str) -> str:
    head = (
        f"| {first} | zero-shot AP | labels to AP {TARGET_AP} (median) "
        + "".join(f"| AP r{r} " for r in REPORT_ROUNDS)
        + "| positives shown r1-10 (median) | worst AP - zero-shot (min over seeds, rounds) "
        + f"| seeds ever below zero-shot by > {BELOW_TOLERANCE:g} |"
    )
    return head + "\n|---|---:|---:|" + "---:|" * len(REPORT_ROUNDS) + "---:|---:|---:|"


def per_seed_table(results: dict[str, list[Run]], seeds: Sequence[int]) -> str:
    lines = ["| strategy | " + " | ".join(f"seed {s}" for s in seeds) + " |", "|---|" + "---:|" * len(seeds)]
    for name, runs in results.items():
        cells = []
        for run in runs:
            labels = run.labels_to(TARGET_AP)
            cells.append(f"{'n.r.' if labels is None else labels} / {run.worst_vs_zero_shot:+.4f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------- parts
def strategies_part(args: argparse.Namespace) -> None:
    print(f"## Strategies (oracle labeller), {args.rounds} rounds max, n={args.n}, dim={args.dim}, seeds {args.seeds}")
    for difficulty in args.difficulties:
        results: dict[str, list[Run]] = {s: [] for s in args.strategies}
        started = time.perf_counter()
        for _, seed, concept, index in collections([difficulty], args.seeds, args.n, args.dim):
            for strategy in args.strategies:
                results[strategy].append(run_session(concept, index, strategy=strategy, seed=seed, rounds=args.rounds))
        print(f"\n### {difficulty} {DIFFICULTIES[difficulty] or '(planted_concept defaults)'}", end="")
        print(f" ({time.perf_counter() - started:.0f} s)\n")
        print(table_header("strategy"))
        for name, runs in results.items():
            print(summary_row(name, runs, args.rounds))
        print("\nPer seed: labels to AP 0.9 / worst AP - zero-shot\n")
        print(per_seed_table(results, args.seeds), flush=True)


def prior_part(args: argparse.Namespace) -> None:
    labellers = {"oracle": oracle, f"noisy ({args.flip:.0%} flipped, confidence 0.3-1)": noisy_labeller(args.flip)}
    print(
        f"## prior_strength sweep, strategy {args.strategy}, {args.rounds} rounds max, n={args.n}, dim={args.dim}, "
        f"seeds {args.seeds}"
    )
    for difficulty in args.difficulties:
        started = time.perf_counter()
        results = {(lab, p): [] for lab in labellers for p in args.priors}
        for _, seed, concept, index in collections([difficulty], args.seeds, args.n, args.dim):
            for (lab, prior), runs in results.items():
                runs.append(
                    run_session(
                        concept,
                        index,
                        strategy=args.strategy,
                        seed=seed,
                        rounds=args.rounds,
                        labeller=labellers[lab],
                        prior_strength=prior,
                    )
                )
        print(f"\n### {difficulty} {DIFFICULTIES[difficulty] or '(planted_concept defaults)'}", end="")
        print(f" ({time.perf_counter() - started:.0f} s)\n")
        print(table_header("labeller, prior_strength"))
        for (lab, prior), runs in results.items():
            print(summary_row(f"{lab}, {prior:g}", runs, args.rounds))
        print(flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("part", choices=["strategies", "prior"])
    parser.add_argument("--difficulties", nargs="+", default=list(DIFFICULTIES), choices=list(DIFFICULTIES))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--n", type=int, default=8000, help="items per collection")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=40, help="cap: rounds per session")
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=list(STRATEGIES))
    parser.add_argument("--strategy", default="mixed", help="prior part: the strategy swept")
    parser.add_argument("--priors", type=float, nargs="+", default=list(PRIOR_STRENGTHS))
    parser.add_argument(
        "--flip", type=float, default=0.15, help="prior part: share of answers the noisy labeller flips"
    )
    parser.add_argument("--quick", action="store_true", help="2 seeds, 2 difficulties, 10 rounds: a smoke run")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.difficulties, args.rounds, args.n = [0, 1], ["default", "noisy"], 10, 3000
        args.priors = [1.0, 10.0]

    print(f"Label efficiency, {today()}; {machine_line()}\n")
    started = time.perf_counter()
    strategies_part(args) if args.part == "strategies" else prior_part(args)
    print(f"\n(total {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
