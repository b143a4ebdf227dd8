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

Three parts. ``targets`` prints issue 13's targets side by side in one run, on every kind of collection: the four
difficulties of ``planted_concept`` below, ``partial`` (the concept needs an attribute the prompt does not name),
``clusters`` (the concept is three clusters; the prompt points at one) and ``digits`` (scikit-learn's handwritten
digits, a real data set; see ``digits_concept``). For the Session's default strategy against ``original`` and
``random``: labels to AP 0.9 and their ratios; the default's worst dip below zero-shot in each of the first 10
rounds; and a careless labeller's AP after 10 rounds against zero-shot. Round latency is measured apart
(``benchmarks/round_latency.py``). ``strategies`` and ``prior`` are the older, longer tables, one difficulty at a
time (on a busy 2-core machine 1-2.5 minutes per difficulty in ``strategies``, 3-4.5 in ``prior``):

    python -m benchmarks.label_efficiency targets                     # every kind, 5 seeds
    python -m benchmarks.label_efficiency targets --kinds partial clusters digits
    python -m benchmarks.label_efficiency careless                    # the careless labeller's table alone
    python -m benchmarks.label_efficiency strategies --difficulties default noisy     # original, top, boundary,
    python -m benchmarks.label_efficiency strategies --difficulties hard misaligned   # mixed, random; oracle
    python -m benchmarks.label_efficiency prior --difficulties noisy    # prior_strength sweep, default strategy,
                                                                        # oracle and noisy labeller
    python -m benchmarks.label_efficiency targets --quick               # smoke run

AP ranks the whole collection by the classifier's logits (see ``run_session``).

The noisy labeller stands in for a real person: it flips ``--flip`` of the answers (default 15%) and gives each a
slider-like confidence drawn uniformly from 0.3 to 1.0. The prior exists to protect against exactly that.
"""

from __future__ import annotations

import argparse
import inspect
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from benchmarks.machine import machine_line, today
from trainer.index.local import LocalIndex
from trainer.session import Session
from trainer.synthetic import PlantedConcept, average_precision, clustered_concept, partial_concept, planted_concept

TARGET_AP = 0.9
# AP differences smaller than this are float noise in tied scores, not a classifier that got worse.
BELOW_TOLERANCE = 1e-3
REPORT_ROUNDS = (1, 3, 5, 10)
BATCH_SIZE = 10
STRATEGIES = ("original", "top", "boundary", "mixed", "random")
PRIOR_STRENGTHS = (1.0, 3.0, 10.0, 30.0, 100.0)
SUSPECTS = 10  # the careless part: how many of the most suspect labels are looked at

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
    strategy: str | None,
    seed: int,
    rounds: int,
    labeller: Labeller = oracle,
    prior_strength: float | None = None,
    batch_size: int = BATCH_SIZE,
    stop_after: int | None = None,
    session_out: list[Session] | None = None,
) -> Run:
    """One session of up to ``rounds`` rounds. ``strategy`` and ``prior_strength`` None: the Session's defaults.
    ``stop_after``: stop once that many rounds have run and AP has reached ``TARGET_AP`` (saves time where only
    labels-to-target and the first rounds matter). ``session_out`` receives the session, for a look at its labels.

    AP ranks by the classifier's logits, not its probabilities: a confident classifier's probabilities saturate to
    exactly 1.0 in float32, and the ties that makes would be broken by item order, not by the classifier."""
    options: dict[str, object] = {"batch_size": batch_size, "seed": seed}
    if strategy is not None:
        options["strategy"] = strategy
    if prior_strength is not None and strategy != "original":
        options["prior_strength"] = prior_strength
    session = Session(index, concept.prompt_vector, **options)
    if session_out is not None:
        session_out.append(session)
    rng = np.random.default_rng([seed, 7])
    rows = {id_: i for i, id_ in enumerate(concept.ids)}
    aps = [average_precision(session.classifier.logits(concept.vectors), concept.truth)]
    positives: list[int] = []
    for done in range(1, rounds + 1):
        ids = [hit.id for hit in session.batch()]
        if not ids:
            break
        positives.append(int(concept.truth[[rows[i] for i in ids]].sum()))
        session.label(labeller(concept, ids, rng))
        session.train_and_requery()
        aps.append(average_precision(session.classifier.logits(concept.vectors), concept.truth))
        if stop_after is not None and done >= stop_after and max(aps) >= TARGET_AP:
            break
    return Run(aps, positives)


# The kinds the targets part measures: the difficulties above, and three kinds where the prompt is a weak guide.
# "digits" is scikit-learn's handwritten digits (1,797 8x8 images) as 64-d pixel vectors, centred and
# L2-normalised; one digit is the concept and the "prompt" is the mean of 3 of its images (a weak prior: zero-shot
# AP 0.25-0.9), drawn per seed. Its digits are the ones such a prior leaves the most to learn.
DIGITS = (8, 9, 1, 3, 7)
KINDS = (*DIFFICULTIES, "partial", "clusters", "digits")


def digits_concept(seed: int, examples: int = 3) -> PlantedConcept:
    from sklearn.datasets import load_digits  # a development requirement: only this benchmark needs it

    data = load_digits()
    vectors = data.data - data.data.mean(axis=0)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    digit = DIGITS[seed % len(DIGITS)]
    rng = np.random.default_rng([seed, digit])
    prompt = vectors[rng.choice(np.flatnonzero(data.target == digit), examples, replace=False)].mean(axis=0)
    ids = [f"digit-{i:04d}" for i in range(len(vectors))]
    unit = (prompt / np.linalg.norm(prompt)).astype(np.float32)
    return PlantedConcept(ids, vectors.astype(np.float32), data.target == digit, unit)


def make_concept(kind: str, seed: int, n: int, dim: int) -> PlantedConcept:
    if kind == "partial":
        return partial_concept(n=n, dim=dim, seed=seed)
    if kind == "clusters":
        return clustered_concept(n=n, dim=dim, seed=seed)
    if kind == "digits":
        return digits_concept(seed)
    return planted_concept(n=n, dim=dim, seed=seed, **DIFFICULTIES[kind])


def collections(difficulties: Sequence[str], seeds: Sequence[int], n: int, dim: int):
    for difficulty in difficulties:
        for seed in seeds:
            concept = make_concept(difficulty, seed, n, dim)
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
        print(f"\n### {difficulty} {DIFFICULTIES.get(difficulty) or '(planted_concept defaults)'}", end="")
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
        print(f"\n### {difficulty} {DIFFICULTIES.get(difficulty) or '(planted_concept defaults)'}", end="")
        print(f" ({time.perf_counter() - started:.0f} s)\n")
        print(table_header("labeller, prior_strength"))
        for (lab, prior), runs in results.items():
            print(summary_row(f"{lab}, {prior:g}", runs, args.rounds))
        print(flush=True)


def default_strategy() -> str:
    return str(inspect.signature(Session).parameters["strategy"].default)


def flipped_labels(concept: PlantedConcept, labels: dict[str, float]) -> set[str]:
    """The labels whose sign disagrees with the truth: the careless labeller's mistakes."""
    rows = {id_: i for i, id_ in enumerate(concept.ids)}
    return {i for i, v in labels.items() if v != 0 and (v > 0) != bool(concept.truth[rows[i]])}


def labels_or_cap(run: Run, cap: int) -> int:
    """Labels to the target, counting a run that never reached it as one batch beyond the cap."""
    labels = run.labels_to(TARGET_AP)
    return cap + BATCH_SIZE if labels is None else labels


def ratio_cell(ours: list[Run], theirs: list[Run], cap: int) -> tuple[float, str]:
    """Median labels of ``ours`` over median labels of ``theirs``; unreached runs count as cap + 10, and a ratio
    that leans on such a run is a bound (marked with < or >), not a measurement."""
    mine = float(np.median([labels_or_cap(r, cap) for r in ours]))
    other = float(np.median([labels_or_cap(r, cap) for r in theirs]))
    ratio = mine / other
    mine_bound, other_bound = mine > cap, other > cap
    mark = "" if not (mine_bound or other_bound) else "~" if mine_bound and other_bound else ">" if mine_bound else "<"
    return ratio, f"{mark}{ratio:.2f}"


def targets_part(args: argparse.Namespace) -> None:
    """The issue-13 targets, side by side in one run: labels to AP 0.9 per kind (the default against "original"
    and "random"), the default's worst dip below zero-shot in each round, and a careless labeller."""
    default = default_strategy()
    cap = args.rounds * BATCH_SIZE
    names = {f"default ({default})": None, "original": "original", "random": "random"}
    careless = noisy_labeller(args.flip)
    careful: dict[str, dict[str, list[Run]]] = {}
    noisy: dict[str, list[Careless]] = {}
    for kind in args.difficulties:
        started = time.perf_counter()
        careful[kind] = {name: [] for name in names}
        noisy[kind] = []
        for _, seed, concept, index in collections([kind], args.seeds, args.n, args.dim):
            for name, strategy in names.items() if args.part == "targets" else ():
                # Only the default's first 10 rounds are looked at round by round; the others stop at the goal.
                stop = 10 if strategy is None else 1
                careful[kind][name].append(
                    run_session(concept, index, strategy=strategy, seed=seed, rounds=args.rounds, stop_after=stop)
                )
            sessions: list[Session] = []
            run = run_session(
                concept, index, strategy=None, seed=seed, rounds=10, labeller=careless, session_out=sessions
            )
            noisy[kind].append(careless_outcome(concept, sessions[0], run))
        print(f"({kind}: {time.perf_counter() - started:.0f} s)", flush=True)

    if args.part == "targets":
        careful_tables(careful, names, cap, args)
    print(
        f"\n### Careless labeller ({args.flip:.0%} of answers flipped, slider confidence 0.3-1), {default}, "
        f"10 rounds. Per seed: AP after round 10 - zero-shot (target >= -0.05 on every seed) / flipped labels among "
        f"the {SUSPECTS} most suspect (`Session.suspect_labels`; target >= 60%)\n"
    )
    print(
        "| kind | "
        + " | ".join(f"seed {s}" for s in args.seeds)
        + f" | worst AP - zero-shot | flipped among {SUSPECTS} suspects (mean, worst) | labels flipped "
        "| suspect_labels ms (median) |"
    )
    print("|---|" + "---:|" * (len(args.seeds) + 4))
    for kind, outcomes in noisy.items():
        gaps = [o.run.aps[-1] - o.run.zero_shot for o in outcomes]
        hits = [o.suspects_flipped for o in outcomes]
        flipped, ms = np.mean([o.flipped_share for o in outcomes]), np.median([o.suspect_ms for o in outcomes])
        print(
            f"| {kind} | "
            + " | ".join(f"{g:+.3f} / {h:.0%}" for g, h in zip(gaps, hits, strict=True))
            + f" | {min(gaps):+.3f} | {np.mean(hits):.0%}, {min(hits):.0%} "
            f"| {flipped:.0%} | {ms:.0f} |"
        )
    print(
        "\nRound latency is measured apart: `python -m benchmarks.round_latency` (targets <= 10 ms at 10k vectors "
        "with 200 labels, <= 100 ms at 1M)."
    )


@dataclass(frozen=True)
class Careless:
    run: Run
    flipped_share: float  # of the labels given
    suspects_flipped: float  # share of the SUSPECTS most suspect labels that were flipped
    suspect_ms: float


def careless_outcome(concept: PlantedConcept, session: Session, run: Run) -> Careless:
    flipped = flipped_labels(concept, session.labels)
    started = time.perf_counter()
    suspects = session.suspect_labels(SUSPECTS)
    elapsed = (time.perf_counter() - started) * 1000
    share = sum(s.id in flipped for s in suspects) / SUSPECTS
    return Careless(run, len(flipped) / max(1, len(session.labels)), share, elapsed)


def careful_tables(careful: dict[str, dict[str, list[Run]]], names: dict[str, str | None], cap: int, args) -> None:
    default = default_strategy()
    print(f"\n### Labels to AP {TARGET_AP} (median over seeds {args.seeds}; a run that never gets there counts as")
    print(f"{cap + BATCH_SIZE}, one batch beyond the {args.rounds}-round cap, and ratios leaning on one are bounds)\n")
    print("| kind | zero-shot AP | " + " | ".join(names) + f" | {default} / original | {default} / random |")
    print("|---|---:|" + "---:|" * (len(names) + 2))
    ratios: dict[str, list[float]] = {"original": [], "random": []}
    first = next(iter(names))
    for kind, results in careful.items():
        cells = [fmt_labels([r.labels_to(TARGET_AP) for r in runs]) for runs in results.values()]
        row = f"| {kind} | {np.median([r.zero_shot for r in results[first]]):.3f} | " + " | ".join(cells)
        for other in ratios:
            value, cell = ratio_cell(results[first], results[other], cap)
            ratios[other].append(value)
            row += f" | {cell}"
        print(row + " |")
    print(
        f"| **average** | | | | | {np.mean(ratios['original']):.2f} (target <= 0.5, and <= 1 on every kind) "
        f"| {np.mean(ratios['random']):.2f} (target <= 0.4) |"
    )

    shown = range(1, 11)
    print(f"\n### Careful labeller: worst AP - zero-shot in each round, {first} (min over seeds; target >= -0.01)\n")
    print("| kind | " + " | ".join(f"r{r}" for r in shown) + " | any round run |")
    print("|---|" + "---:|" * (len(shown) + 1))
    for kind, results in careful.items():
        runs = results[first]
        cells = [f"{min(r.aps[k] - r.zero_shot for r in runs if len(r.aps) > k):+.3f}" for k in shown]
        print(f"| {kind} | " + " | ".join(cells) + f" | {min(r.worst_vs_zero_shot for r in runs):+.3f} |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("part", choices=["targets", "careless", "strategies", "prior"])
    parser.add_argument("--difficulties", "--kinds", nargs="+", default=None, choices=list(KINDS))
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
    if args.difficulties is None:
        args.difficulties = list(KINDS if args.part in ("targets", "careless") else DIFFICULTIES)
    if args.quick:
        quick_kinds = ["default", "partial", "digits"] if args.part in ("targets", "careless") else ["default", "noisy"]
        args.seeds, args.difficulties, args.rounds, args.n = [0, 1], quick_kinds, 10, 3000
        args.priors = [1.0, 10.0]

    print(f"Label efficiency, {today()}; {machine_line()}\n")
    started = time.perf_counter()
    {"targets": targets_part, "careless": targets_part, "strategies": strategies_part, "prior": prior_part}[args.part](
        args
    )
    print(f"\n(total {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
