"""Step 6: quality filter. Two models rate each new problem bad / acceptable / perfect.

SwS (section 3.2) keeps a problem when one rater says perfect and the other at least acceptable
(this step removed 78% of the problems in the paper). The prompt is synth/templates/rating.txt; the
rating is the word after 'Rating:' (else the last of the three words in the text).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from rlkit.synth.asking import AskStats, Generator, Sampling, ask, load_template

RATING = Sampling(n=1, temperature=0.0, max_tokens=1024)  # rlkit: the paper does not give the raters' sampling

RATINGS = ("bad", "acceptable", "perfect")
_RATED = re.compile(r"rating\s*:\s*\**\s*(bad|acceptable|perfect)\b", re.IGNORECASE)
_WORD = re.compile(r"\b(bad|acceptable|perfect)\b", re.IGNORECASE)


def parse_rating(text: str) -> str | None:
    found = _RATED.findall(text) or _WORD.findall(text)
    return found[-1].lower() if found else None


def passes(ratings: Sequence[str]) -> bool:
    """One 'perfect' and every other rating at least 'acceptable'."""
    return "perfect" in ratings and all(r in ("acceptable", "perfect") for r in ratings)


def rate_problems(
    rows: Sequence[dict[str, Any]],
    raters: Sequence[Generator],
    stats: AskStats,
    template: str = "rating",
    sampling: Sampling = RATING,
    retries: int = 2,
) -> list[dict[str, Any]]:
    """Every row that every rater rated, with its `ratings` and `quality_ok` (the paper's rule).

    A row some rater never gave a parseable rating for is dropped and counted in `stats`."""
    prompt = load_template(template)
    prompts = [prompt.safe_substitute(problem=r["problem"], category=r.get("category", "")) for r in rows]
    per_rater = [ask(rater, prompts, lambda texts: parse_rating(texts[0]), sampling, stats, retries) for rater in raters]
    rated = []
    for index, row in enumerate(rows):
        ratings = [ratings_of_rater[index] for ratings_of_rater in per_rater]
        if any(r is None for r in ratings):
            continue
        rated.append({**row, "ratings": ratings, "quality_ok": passes(ratings)})
    return rated
