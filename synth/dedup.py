"""Step 9: deduplication against the training set and decontamination against the benchmarks.

A new problem is dropped when at least `threshold` of its word n-grams occur in a reference text:
the original training set (a duplicate adds nothing), any benchmark in ../shared/data/math (a
contaminated benchmark score would be worthless), or a new problem kept before it. The paper does
not give its deduplication rule; n = 13 and threshold 0.5 are rlkit's defaults (13-grams are the
usual decontamination unit since GPT-3). A text shorter than n words is one n-gram: the whole text.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from rlkit.data import PROBLEM_FIELDS, read_rows

_TOKEN = re.compile(r"\w+|[^\w\s]")


def ngrams(text: str, n: int = 13) -> set[str]:
    """The text's word n-grams (lower-cased words and punctuation marks), as joined strings."""
    tokens = _TOKEN.findall(text.lower())
    if len(tokens) < n:
        return {" ".join(tokens)} if tokens else set()
    return {" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


class NgramIndex:
    """The n-grams of a set of reference texts, each remembered with the source it came from."""

    def __init__(self, n: int = 13):
        self.n = n
        self.source_of: dict[str, str] = {}

    def add(self, text: str, source: str) -> None:
        for gram in ngrams(text, self.n):
            self.source_of.setdefault(gram, source)

    def overlap(self, text: str) -> tuple[float, str | None]:
        """(fraction of the text's n-grams found in the index, the source most of them came from)."""
        grams = ngrams(text, self.n)
        if not grams:
            return 0.0, None
        sources = Counter(self.source_of[g] for g in grams if g in self.source_of)
        found = sum(sources.values())
        return found / len(grams), (sources.most_common(1)[0][0] if sources else None)


def problem_text(row: dict[str, Any]) -> str:
    return next((str(row[f]) for f in PROBLEM_FIELDS if row.get(f)), "")


def benchmark_texts(directory: Path) -> Iterable[tuple[str, str]]:
    """(benchmark name, problem text) for every row of every .jsonl in `directory`."""
    for path in sorted(directory.glob("*.jsonl")):
        for row in read_rows(path):
            yield path.stem, problem_text(row)


def deduplicate(
    rows: Sequence[dict[str, Any]],
    train_texts: Iterable[str],
    benchmarks: Iterable[tuple[str, str]] = (),
    n: int = 13,
    threshold: float = 0.5,
    dropped: Counter[str] | None = None,
) -> list[dict[str, Any]]:
    """The rows whose n-gram overlap with the train set, the benchmarks and the rows kept before them
    stays below `threshold`. `dropped` counts the removed by reason ('train', 'synthetic', 'benchmark:<name>')."""
    dropped = dropped if dropped is not None else Counter()
    index = NgramIndex(n)
    for text in train_texts:
        index.add(text, "train")
    for name, text in benchmarks:
        index.add(text, f"benchmark:{name}")
    kept = []
    for row in rows:
        share, source = index.overlap(row["problem"])
        if share >= threshold:
            dropped[source or "train"] += 1
            continue
        index.add(row["problem"], "synthetic")
        kept.append(row)
    return kept
