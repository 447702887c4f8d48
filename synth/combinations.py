"""Step 4: concept combinations to write new problems from, within each category.

SwS (section 3.2) samples 5 concepts per combination from one category's concepts. After the first
concept, each next one is drawn with a softmax (temperature 0.2) over scores that combine how often
the candidate co-occurred with the concepts already chosen and the cosine similarity of its embedding
to the mean embedding of the chosen ones. Each combination gets a random target difficulty level.

rlkit's reading where the paper leaves details open: the first concept is drawn in proportion to
how many weak problems carry it; the co-occurrence score is the candidate's summed co-occurrence
with the chosen concepts divided by the largest such sum among the candidates (so it lies in [0, 1],
on the cosine's scale), and the score is their sum. Without embeddings (a backend that is not a
local model, or the tiny world) the score is the co-occurrence part alone.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from itertools import combinations as pairs_of
from typing import Any

from rlkit.synth.budget import category_of

LEVELS = ("AMC 10", "AMC 12", "AIME", "HMMT", "USAMO", "IMO")  # the paper's examples of target levels


class ConceptStats:
    """One category's concepts: how many weak problems carry each, and each pair together."""

    def __init__(self, concept_lists: Sequence[Sequence[str]]):
        self.count: Counter[str] = Counter()
        self.together: Counter[frozenset[str]] = Counter()
        for concepts in concept_lists:
            unique = sorted(set(concepts))
            self.count.update(unique)
            self.together.update(frozenset(pair) for pair in pairs_of(unique, 2))
        self.concepts = sorted(self.count)

    def cooccurrence(self, candidate: str, chosen: Sequence[str]) -> int:
        return sum(self.together[frozenset((candidate, other))] for other in chosen)


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0


def next_concept_probabilities(
    stats: ConceptStats, chosen: Sequence[str], temperature: float = 0.2,
    embeddings: Mapping[str, Sequence[float]] | None = None,
) -> dict[str, float]:
    """The softmax over the not-yet-chosen concepts of (normalized co-occurrence + cosine to the chosen mean)."""
    candidates = [c for c in stats.concepts if c not in chosen]
    together = {c: stats.cooccurrence(c, chosen) for c in candidates}
    top = max(together.values(), default=0)
    scores = {c: (together[c] / top if top else 0.0) for c in candidates}
    if embeddings:
        dims = len(embeddings[chosen[0]])
        mean = [sum(embeddings[c][d] for c in chosen) / len(chosen) for d in range(dims)]
        scores = {c: scores[c] + _cosine(embeddings[c], mean) for c in candidates}
    peak = max(scores.values(), default=0.0)
    weights = {c: math.exp((s - peak) / temperature) for c, s in scores.items()}
    total = sum(weights.values())
    return {c: w / total for c, w in weights.items()}


def sample_combination(
    stats: ConceptStats, rng: random.Random, size: int = 5, temperature: float = 0.2,
    embeddings: Mapping[str, Sequence[float]] | None = None,
) -> list[str]:
    """`size` distinct concepts (all of them when the category has fewer)."""
    chosen = [rng.choices(stats.concepts, weights=[stats.count[c] for c in stats.concepts])[0]]
    while len(chosen) < min(size, len(stats.concepts)):
        probabilities = next_concept_probabilities(stats, chosen, temperature, embeddings)
        names = list(probabilities)
        chosen.append(rng.choices(names, weights=[probabilities[c] for c in names])[0])
    return chosen


def sample_combinations(
    weak: Sequence[Mapping[str, Any]], budget: Mapping[str, int], seed: int = 0, size: int = 5,
    temperature: float = 0.2, levels: Sequence[str] = LEVELS,
    embeddings: Mapping[str, Sequence[float]] | None = None,
) -> list[dict[str, Any]]:
    """budget[category] combinations per category, from the concepts of that category's weak rows.

    Each is a row {id, category, concepts, level}; the same seed gives the same combinations."""
    rng = random.Random(f"combinations-{seed}")
    combos: list[dict[str, Any]] = []
    for category in sorted(budget):
        lists = [row["concepts"] for row in weak if category_of(row) == category and row.get("concepts")]
        if not lists or budget[category] <= 0:
            continue
        stats = ConceptStats(lists)
        for index in range(budget[category]):
            concepts = sample_combination(stats, rng, size, temperature, embeddings)
            combos.append({"id": f"combo-{category}-{index}", "category": category,
                           "concepts": concepts, "level": rng.choice(list(levels))})
    return combos
