"""Step 2: the concepts each weak problem needs, extracted by an instruct model.

SwS (section 3.2) asks Llama-3.3-70B-Instruct at temperature 0 to list the mathematical concepts a
failed problem requires; those concepts are then recombined into new problems. The prompt is
synth/templates/concepts.txt; the answer is read as a list, one concept a line.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from rlkit.synth.asking import AskStats, Generator, Sampling, ask, load_template

EXTRACTING = Sampling(n=1, temperature=0.0, max_tokens=512)  # the paper: temperature 0

_ITEM = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)])\s+(.+?)\s*$")


def parse_concepts(text: str, max_concepts: int = 8) -> list[str] | None:
    """The list items of `text` ('- x', '* x', '1. x'), de-duplicated ignoring case; None when there are none."""
    concepts: list[str] = []
    seen: set[str] = set()
    for line in text.splitlines():
        match = _ITEM.match(line)
        if not match:
            continue
        concept = match.group(1).strip().rstrip(".").strip()
        key = concept.lower()
        if concept and key not in seen:
            seen.add(key)
            concepts.append(concept)
    return concepts[:max_concepts] or None


def extract_concepts(
    rows: Sequence[dict[str, Any]],
    generator: Generator,
    stats: AskStats,
    template: str = "concepts",
    sampling: Sampling = EXTRACTING,
    max_concepts: int = 8,
    retries: int = 2,
) -> list[dict[str, Any]]:
    """Each row with `concepts` from the model; rows whose answer never parsed are dropped (and counted)."""
    prompt = load_template(template)
    prompts = [prompt.safe_substitute(problem=row["problem"], category=row.get("category", "")) for row in rows]
    found = ask(generator, prompts, lambda texts: parse_concepts(texts[0], max_concepts), sampling, stats, retries)
    return [{**row, "concepts": concepts} for row, concepts in zip(rows, found, strict=True) if concepts]
