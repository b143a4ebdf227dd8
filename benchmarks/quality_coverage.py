"""Quality estimates against the truth: how often the 90% intervals contain it, and how far the estimates miss.

Simulated sessions on collections whose truth is known: the synthetic planted concepts of
``benchmarks.label_efficiency`` (its four difficulties, dim 512) and the offline bundle's concepts (its train split
embedded by the bundle's model, the concept families of ``benchmarks.bundle_labelling``). Each session trains
``--rounds`` rounds (strategy ``mixed``, a careful labeller), then runs ``--audits`` audits of ``--audit-size``
labels. After each audit, ``Session.quality()`` is compared with the truth of that classifier on the whole
collection: AP, precision and recall at the threshold (0.5), and prevalence. Then the session trains
``--retrain`` more rounds and is checked once more: the audit now tests a classifier that did not exist when the
audit was drawn.

Reported per checkpoint: coverage (share of sessions whose interval contains the truth; "misses" says on which
side: "low" when the truth lies above the interval), the median absolute error of the estimate and the median
interval width. Sessions whose truth is undefined for a metric (no image above the threshold) are left out of that
metric and counted. Then the cost of choosing an audit of 20 and of one estimate, at 10,000 vectors of 512
dimensions.

    python -m benchmarks.quality_coverage                      # 4 x 20 synthetic + bundle sessions (~10 min, 2 cores)
    python -m benchmarks.quality_coverage --quick              # smoke run
    python -m benchmarks.quality_coverage --no-bundle --seeds 40
"""

from __future__ import annotations

import argparse
import copy
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from benchmarks.bundle_labelling import embed_bundle, families, family_concepts
from benchmarks.label_efficiency import DIFFICULTIES
from benchmarks.machine import machine_line, today
from trainer.index.local import LocalIndex
from trainer.quality import CONFIDENCE, Quality
from trainer.session import Session
from trainer.synthetic import PlantedConcept, planted_concept

METRICS = ("ap", "precision", "recall", "prevalence")
TARGET_COVERAGE = 0.85
TARGET_AP_ERROR = 0.1


@dataclass(frozen=True)
class Check:
    """One estimate next to the truth it estimates."""

    collection: str
    checkpoint: str  # "20 labels", ..., "after retraining"
    quality: Quality
    truth: dict[str, float]


def true_quality(session: Session, concept: PlantedConcept) -> dict[str, float]:
    """The classifier's real AP, precision and recall at its threshold, and the prevalence, on the collection."""
    logits = session.classifier.logits(concept.vectors).astype(np.float64)
    order = np.argsort(-logits, kind="stable")
    ranked = concept.truth[order]
    hits = np.cumsum(ranked)
    above = logits >= np.log(session.classifier.threshold / (1 - session.classifier.threshold))
    return {
        "ap": float((ranked * hits / np.arange(1, len(ranked) + 1)).sum() / ranked.sum()),
        "precision": float(concept.truth[above].mean()) if above.any() else float("nan"),
        "recall": float(concept.truth[above].sum() / concept.truth.sum()),
        "prevalence": float(concept.truth.mean()),
    }


def simulate(
    name: str, concept: PlantedConcept, index: LocalIndex, seed: int, args: argparse.Namespace
) -> Iterator[Check]:
    session = Session(index, concept.prompt_vector, strategy="mixed", seed=seed)
    for _ in range(args.rounds):
        session.label(concept.oracle([h.id for h in session.batch()]))
        session.train_and_requery()
    for audit in range(1, args.audits + 1):
        session.label(concept.oracle([h.id for h in session.audit(args.audit_size)]))
        yield Check(name, f"{audit * args.audit_size} labels", session.quality(), true_quality(session, concept))
    if args.retrain:
        for _ in range(args.retrain):
            session.label(concept.oracle([h.id for h in session.batch()]))
            session.train_and_requery()
        yield Check(name, "after retraining", session.quality(), true_quality(session, concept))


def synthetic_sessions(args: argparse.Namespace) -> Iterator[Check]:
    for difficulty in args.difficulties:
        for seed in range(args.seeds):
            concept = planted_concept(n=args.n, dim=512, seed=seed, **DIFFICULTIES[difficulty])
            index = LocalIndex.from_vectors(concept.ids, concept.vectors)
            yield from simulate(f"synthetic {difficulty}", concept, index, seed, args)


def bundle_sessions(args: argparse.Namespace) -> Iterator[Check]:
    embedder, train, vectors = embed_bundle()
    index = LocalIndex.from_vectors(train["id"], vectors)
    for family, prompts in families().items():
        for seed, concept in enumerate(family_concepts(embedder, train, vectors, prompts)[: args.bundle_concepts]):
            yield from simulate(f"bundle {family}", concept, index, seed, args)


# ----------------------------------------------------------------------------------------------------- reporting
def table(checks: list[Check], key) -> list[str]:
    """Coverage, misses (low/high), median error and median width per metric, one row per group of ``key``."""
    groups: dict[str, list[Check]] = defaultdict(list)
    for check in checks:
        groups[key(check)].append(check)
    lines = [
        "| | sessions | " + " | ".join(f"{m}: coverage (low/high misses), median error, width" for m in METRICS) + " |",
        "|---|---:|" + "---:|" * len(METRICS),
    ]
    for group, members in groups.items():
        cells = []
        for metric in METRICS:
            pairs = [
                (getattr(c.quality, metric), c.truth[metric])
                for c in members
                if getattr(c.quality, metric) is not None and np.isfinite(c.truth[metric])
            ]
            if not pairs:
                cells.append("-")
                continue
            low = sum(truth > e.high for e, truth in pairs)
            high = sum(truth < e.low for e, truth in pairs)
            coverage = 1 - (low + high) / len(pairs)
            error = np.median([abs(e.value - truth) for e, truth in pairs])
            width = np.median([e.width for e, _ in pairs])
            skipped = f", {len(members) - len(pairs)} undefined" if len(pairs) < len(members) else ""
            cells.append(f"{coverage:.0%} ({low}/{high}), {error:.3f}, {width:.2f}{skipped}")
        lines.append(f"| {group} | {len(members)} | " + " | ".join(cells) + " |")
    return lines


def costs(repeats: int = 30) -> str:
    """Median and 90th-percentile time to choose an audit of 20 (after 5 rounds), and of one estimate from 100
    audit labels, at 10,000 x 512. Each audit is drawn from a copy of the same session, so every draw sees the
    same collection; the copying is not timed. Wall-clock time, and this process's CPU time (all its threads): on a
    shared, loaded machine the wall clock includes the waits for a core, the CPU time does not."""
    concept = planted_concept(n=10_000, dim=512, seed=0, **DIFFICULTIES["noisy"])
    session = Session(LocalIndex.from_vectors(concept.ids, concept.vectors), concept.prompt_vector, seed=0)
    for _ in range(5):
        session.label(concept.oracle([h.id for h in session.batch()]))
        session.train_and_requery()
    choose, choose_cpu = [], []
    for _ in range(repeats):
        fresh = copy.deepcopy(session)
        started, cpu = time.perf_counter(), time.process_time()
        fresh.audit(20)
        choose.append(time.perf_counter() - started)
        choose_cpu.append(time.process_time() - cpu)
    for _ in range(5):
        session.label(concept.oracle([h.id for h in session.audit(20)]))
    estimate, estimate_cpu = [], []
    for _ in range(max(3, repeats // 5)):
        started, cpu = time.perf_counter(), time.process_time()
        session.quality()
        estimate.append(time.perf_counter() - started)
        estimate_cpu.append(time.process_time() - cpu)

    def ms(values: list[float], cpu: list[float]) -> str:
        return (
            f"median {np.median(values) * 1e3:.1f} ms, p90 {np.quantile(values, 0.9) * 1e3:.1f} ms "
            f"(CPU time: median {np.median(cpu) * 1e3:.1f} ms)"
        )

    return (
        f"Choosing an audit of 20 at 10,000 x 512 (LocalIndex, {repeats} draws): {ms(choose, choose_cpu)}.\n"
        f"One estimate from 100 audit labels (`Session.quality()`, {len(estimate)} calls): "
        f"{ms(estimate, estimate_cpu)}."
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--difficulties", nargs="+", default=list(DIFFICULTIES), choices=list(DIFFICULTIES))
    parser.add_argument("--seeds", type=int, default=20, help="synthetic sessions per difficulty")
    parser.add_argument("--n", type=int, default=8000, help="items per synthetic collection")
    parser.add_argument("--bundle-concepts", type=int, default=8, help="bundle concepts per family")
    parser.add_argument("--no-bundle", action="store_true")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--audits", type=int, default=5)
    parser.add_argument("--audit-size", type=int, default=20)
    parser.add_argument("--retrain", type=int, default=3, help="training rounds after the audits, then one check")
    parser.add_argument("--quick", action="store_true", help="2 seeds, 2 difficulties, 2 bundle concepts per family")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.difficulties, args.bundle_concepts, args.n = 2, ["noisy", "misaligned"], 2, 3000

    print(f"# Quality estimates against the truth ({today()})\n\nMachine: {machine_line()}.\n")
    started = time.perf_counter()
    checks = list(synthetic_sessions(args))
    if not args.no_bundle:
        checks += list(bundle_sessions(args))
    sessions = sum(c.checkpoint == checks[0].checkpoint for c in checks)
    final = f"{args.audits * args.audit_size} labels"
    print(
        f"{sessions} sessions: {args.rounds} training rounds of 10, then {args.audits} audits of {args.audit_size}"
        f"{f', then {args.retrain} more training rounds' if args.retrain else ''}. "
        f"Intervals: {CONFIDENCE:.0%}. Cells: coverage (misses with the truth above / below the interval), "
        "median |estimate - truth|, median interval width.\n"
    )
    print(f"## All sessions, by number of audit labels (target: coverage >= {TARGET_COVERAGE:.0%})\n")
    print("\n".join(table(checks, lambda c: c.checkpoint)))
    print(f"\n## By collection, at {final}\n")
    print("\n".join(table([c for c in checks if c.checkpoint == final], lambda c: c.collection)))
    print("\n## By collection, after retraining\n")
    print("\n".join(table([c for c in checks if c.checkpoint == "after retraining"], lambda c: c.collection)))
    ap_error = np.median([abs(c.quality.ap.value - c.truth["ap"]) for c in checks if c.checkpoint == final])
    print(f"\nMedian |AP error| at {final}: {ap_error:.3f} (target <= {TARGET_AP_ERROR}).")
    print(f"\n## Cost\n\n{costs()}")
    print(f"\n(total {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
