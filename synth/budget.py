"""Step 3: the synthesis budget per category, proportional to the category's failure rate.

SwS (section 3.2): a category where a larger share of the problems are weaknesses gets a larger
share of the new problems. The failure rate of a category is weak problems / problems seen by the
initial RL run in that category.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

UNCATEGORIZED = "uncategorized"


def category_of(row: Mapping[str, Any]) -> str:
    return str(row.get("category") or UNCATEGORIZED)


def failure_rates(rows: Sequence[Mapping[str, Any]], weak_ids: Iterable[str]) -> dict[str, float]:
    """Per category: the fraction of its problems that are weaknesses (categories sorted by name)."""
    weak = set(weak_ids)
    totals = Counter(category_of(row) for row in rows)
    failed = Counter(category_of(row) for row in rows if row["id"] in weak)
    return {category: failed[category] / totals[category] for category in sorted(totals)}


def allocate(rates: Mapping[str, float], total: int) -> dict[str, int]:
    """Split `total` problems over categories in proportion to their failure rates, in whole numbers
    that add up to `total` (largest remainder; ties go to the category named first). All-zero rates
    give every category zero: there is nothing to fix."""
    weight = sum(rates.values())
    if weight <= 0 or total <= 0:
        return dict.fromkeys(rates, 0)
    exact = {category: total * rate / weight for category, rate in rates.items()}
    shares = {category: math.floor(value) for category, value in exact.items()}
    left = total - sum(shares.values())
    by_remainder = sorted(exact, key=lambda c: (-(exact[c] - shares[c]), c))
    for category in by_remainder[:left]:
        shares[category] += 1
    return shares
