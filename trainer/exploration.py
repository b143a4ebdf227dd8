"""Looking beyond the search: items from outside the candidate pool, when the pool looks full or empty.

Every strategy picks from the pool one search returns: the ``pool_size`` unseen items the classifier ranks highest.
When the concept is bigger than that pool, or lies partly where the prompt does not point ("dogs" when the person
means dogs, cats and rabbits), no re-ranking of the pool can find the rest: the classifier never sees an example of
it, so it never learns to rank it high. Exploration gives it the chance: once the classifier expects at least
``FULL_POOL`` of the pool to be matches (the concept may well go on beyond it), ``EXPLORE_ITEMS`` of each batch are
drawn uniformly from the unseen items *outside* the pool. Where the pool is not full (rare concepts, which the pool
holds), nothing changes, so rounds that the prompt serves well lose no label to it.

The other end: once the classifier expects under ``EMPTY_POOL`` matches among the whole pool, its best candidates
are what it is surest are *not* the concept, and choosing among them teaches nothing ("a red shape" when the person
means red hearts: the prompt's best items have no hearts, the first labels say so, and every later pool is more of
the same). Then half of each batch is drawn from outside the pool, until a match turns up and the pool fills again.

Measured (benchmarks/RESULTS-learning.md, 5 seeds): on the synthetic collection whose concept is three clusters with
the prompt pointing at one, ``mixed`` reached AP 0.9 within 180 labels (median) instead of never in 400 with 2 items
a batch, 120 with 3; on the offline bundle its mean AP after rounds 1, 2, 4 and 8 did not change on any family: only
the single sizes (a third of the collection each) fill the pool, and those were at AP 1.00 already. The empty
pool: on the collection whose concept needs an attribute the prompt does not name, 50 labels to AP 0.9 instead of
210, and the bundle unchanged (its pools looked empty in 25 rounds of 384, 20 of them after the last match).

The items come from ``LocalIndex.sample`` where the index can sample. A Pinecone round stays one query, and asking
Pinecone for random items each round would break that; there they come from the session's one sample of the
collection instead (trainer/collection_sample.py: 4,000 items drawn once per index and seed, at the first need, their
vectors kept), so a round that looks beyond the search costs no call. On the SDK double (benchmarks/RESULTS-learning.md,
2026-12-03) that took Pinecone from 200 labels to AP 0.9 to 50 on the partial kind and from never to 120 on the
clustered one, as on a local index. Beyond 4,000 items the sample is all a session explores: a part of a concept that
holds under about 1 in 4,000 of a large collection may not be in it.

**A match found outside the pool is followed up.** An explored item that the person labels a match is where the
concept goes on beyond the search, and one label there moves the classifier little: the labels it had all agree with
the prompt, so the fit keeps the prompt's pull strong (on the clustered concept, a first match of a second cluster
left that cluster's AP at 0.04-0.12 for 3 to 10 rounds). So its ``FOLLOW_UP`` nearest unseen neighbours (mostly
more of the same: a second cluster's other items) join the next batch, as if the person had asked for "more like
this"; with them the fit learns the new cluster in a round or two. One match a round is followed up (the one the
classifier expected least). Its neighbours are looked for in the session's one sample of the collection
(trainer/collection_sample.py, 4,000 items and their vectors, an index of its own), not in the whole index: a search
of the index would be a second query a round (about 75 ms more at 1M vectors, doubling that round; on Pinecone a second
call). Measured against the whole index's nearest (2026-12-03): the same labels to AP 0.9 over 30 seeds on the
clustered, misaligned and partial kinds (8,000 items; clustered mean 95.3 against 95.0), and no worse with the sample
a tenth of the collection (40,000 items, 10 seeds: median 210 against 240).

**A full pool's boundary is looked for beyond it.** ``mixed`` and ``boundary`` spend slots on the candidates the
classifier is least sure of (P nearest 0.5), and the pool is the top of the ranking. When the known part of the concept
is bigger than the pool (a cluster of 5,300 items against a pool of 5,000 at 80,000 items), every pool item is a
confident match, and those slots go to the bottom of those matches: more of what the classifier knows, never the near
misses that would teach its edge. So while the pool looks full, the session's sample of the collection joins the
candidates (``beyond``): its unseen items below the pool whose P is nearest 0.5, which the strategy weighs against the
pool's own (below the pool, each ranks after every pool item, so the top picks never change). A pool that reaches past
the matches keeps its boundary picks: its own items straddle 0.5 and are nearer it than anything below. Only once the
labels hold ``BEYOND_AFTER`` non-matches: before that the classifier's P is not anchored (after a first batch of ten
matches it gives P 0.94 to items half of which are not matches, and its 0.5 lies among non-matches: the default kind
needed a round more on every seed; from 5 non-matches on, the clustered kind at 8,000 items needed 30-50 more labels on
2 seeds of 10). The sample's vectors are at hand, so this costs no call. Measured (benchmarks/RESULTS-learning.md,
2026-12-03): the clustered kind at 80,000 items 225 -> 131 labels to AP 0.9 (mean of seeds 0-9, every seed fewer;
``boundary`` 224 -> 128), at 200,000 270 -> 160 (3 seeds), at 1M never within 400 -> 170-210 (2 seeds); at 8,000 items
the same means over 30 seeds, at 16,000 and 40,000 within noise (98 -> 97, 114 -> 116 labels); every other kind, the
careless labeller and the bundle as before.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, NamedTuple, Protocol, runtime_checkable

import numpy as np

from .index import Hit
from .logistic import sigmoid

if TYPE_CHECKING:
    from .index.local import LocalIndex

__all__ = [
    "BEYOND_AFTER",
    "EMPTY_POOL",
    "EXPLORE_EMPTY",
    "EXPLORE_FULL",
    "EXPLORE_ITEMS",
    "FOLLOW_UP",
    "FULL_POOL",
    "Exploration",
    "SamplingIndex",
    "beyond",
    "explore",
    "follow_up",
    "looks_beyond",
]

# The share of the pool the classifier must expect to be matches (P > 0.5) before a batch looks outside it. On the
# bundle's families but the single sizes it stays under 0.25 in rounds 1-5; on the clustered concept it is ~0.5.
FULL_POOL = 0.3
# Items a batch (of at least twice as many) draws from outside the pool while the pool looks full. 3 found the
# clustered concept's other clusters sooner than 2 (120 labels against 170, 5 seeds) and, since mixed's make-up follows
# its labels (strategies.top_slots), cost no other kind a label; 4 cost the default and misaligned kinds a round on a
# seed each. (Before top_slots, 3 cost the misaligned kind 10 labels.)
EXPLORE_ITEMS = 3
# Matches the classifier expects among the whole pool (the sum of its P) below which the pool looks empty and half
# of each batch comes from outside it. On the partial kind it falls to 0.001-0.01 after the first batch; on the
# synthetic kinds where the prompt names the concept it stays above 40, and on the bundle it fell below 0.5 in 25
# of 384 rounds of its two rarest families, 20 of them after every match had been found.
EMPTY_POOL = 0.5

# Nearest unseen neighbours an explored match brings into the next batch (within half a batch, after the person's
# "more like this"). On the clustered concept (labels to AP 0.9, mean of seeds 0-14): 2 a match 92, 3 a match 93,
# half a batch shared among the matches 101, none (before) 112; the other kinds as before or a round better.
FOLLOW_UP = 2

# Non-matches the labels must hold before a full pool's boundary is looked for in the session's sample (``beyond``).
# The clustered kind, labels to AP 0.9, mean of seeds 0-9 at 8,000 items / 0-4 at 80,000 (before: 101 / 226):
# 5 -> 110 / 144; 10 -> 101 / 140; 15 -> 101 / 158.
BEYOND_AFTER = 10


# Why a batch holds items from outside the search (``Exploration.reason``, ``Session.explore_reason``): the
# classifier expects the search's pool to hold no likely match, or to be mostly matches (the concept may reach beyond).
EXPLORE_EMPTY = "empty"
EXPLORE_FULL = "full"


class Exploration(NamedTuple):
    ids: list[str]  # the items to show from outside the pool (often none)
    reason: str | None  # EXPLORE_EMPTY or EXPLORE_FULL when ``ids`` is not empty, else None


@runtime_checkable
class SamplingIndex(Protocol):
    def sample(self, k: int, rng: np.random.Generator, exclude: Iterable[str] | None = None) -> list[str]: ...


def explore(
    index: object,
    pool_ids: Sequence[str],
    pool_proba: np.ndarray,
    k: int,
    exclude: Iterable[str],
    rng: np.random.Generator,
) -> Exploration:
    """The items to show from outside the pool this batch (often none), and why: see the module docstring.

    ``pool_ids`` and ``pool_proba``: the pool and the classifier's P(concept) for each; ``k``: the batch's size;
    ``exclude``: the items no batch may show (seen, held out, already on the batch).
    """
    proba = np.asarray(pool_proba)
    if not len(proba) or not isinstance(index, SamplingIndex):
        return Exploration([], None)
    if float(proba.sum()) < EMPTY_POOL:  # the pool looks empty
        count, reason = k // 2, EXPLORE_EMPTY
    elif k >= 2 * EXPLORE_ITEMS and (proba > 0.5).mean() >= FULL_POOL:
        count, reason = EXPLORE_ITEMS, EXPLORE_FULL
    else:
        return Exploration([], None)
    ids = index.sample(count, rng, exclude=[*exclude, *pool_ids]) if count else []
    return Exploration(ids, reason if ids else None)


def follow_up(explored: Mapping[str, float], labels: Mapping[str, float]) -> list[str]:
    """The explored item to follow up (none or one): of a batch's ``explored`` items (id -> the classifier's P when
    shown) that ``labels`` calls matches, the one it expected least. The next batch shows its ``FOLLOW_UP`` nearest
    unseen neighbours among the session's sample of the collection (the module docstring). One: on the clustered and
    partial kinds (30 seeds) following up every explored match instead needed the same labels on every seed."""
    matches = [(p, i) for i, p in explored.items() if labels.get(i, 0) > 0]
    return [min(matches)[1]] if matches else []


def looks_beyond(non_matches: int) -> bool:
    """Whether labels holding ``non_matches`` non-matches anchor the classifier's P enough for ``beyond``: asked before
    a session draws its sample for it, so that a closed gate costs no draw (about 0.1 s at 1M vectors)."""
    return non_matches >= BEYOND_AFTER


def beyond(
    sample: LocalIndex, weight: np.ndarray, bias: float, exclude: Iterable[str], k: int, non_matches: int
) -> list[Hit]:
    """The ``k`` items of the session's ``sample`` of the collection, none of ``exclude`` (the pool, what was shown,
    what is on the batch), whose P(concept) is nearest 0.5, scored ``weight . x`` as a search scores them and best
    first; none while the labels hold fewer than ``BEYOND_AFTER`` non-matches. Call it while the pool looks full: see
    the module docstring."""
    if not looks_beyond(non_matches) or k <= 0:
        return []
    scores = sample.scores_all(weight)  # (m,) float32: 4,000 x 512 takes about 0.3 ms
    doubt = np.abs(sigmoid(scores.astype(np.float64) + bias) - 0.5)
    blocked, ids, rows = set(exclude), sample.ids, []
    for row in np.argsort(doubt, kind="stable").tolist():
        if ids[row] not in blocked:
            rows.append(row)
            if len(rows) == k:
                break
    rows.sort(key=lambda r: -scores[r])
    return [Hit(ids[r], float(scores[r])) for r in rows]
