"""Step 1: weaknesses, the problems the initial RL run kept failing at and got worse on.

SwS (arXiv 2506.08989, section 3.1) writes the rule as: training accuracy below 0.5 in every epoch AND
a negative slope of accuracy over the epochs. The authors' released failure list (record/failure_cases.jsonl
in github.com/MasterVito/SwS: 1,905 problems, each with its per-epoch accuracies and slope) shows the rule
they ran is inclusive at both ends: 869 of them (46%) are at 0 in every epoch (slope exactly 0), 46 reach
exactly 0.5 in their best epoch, and none has a positive slope or a best epoch above 0.5. rlkit follows the
released list: best epoch <= `threshold` and slope <= `max_slope`. A problem never solved is the clearest
weakness there is; the strict reading would drop every one of them. The slope is the least-squares slope
over the epoch index (it matches the list's `slope` values). The histories come from the run's accuracy
ledger: one accuracy per epoch per problem; a history needs at least two epochs (rlkit: no trend from one).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def accuracy_slope(accuracies: Sequence[float]) -> float:
    """Least-squares slope of accuracy against the epoch index (0, 1, 2, ...); 0.0 for fewer than two epochs."""
    count = len(accuracies)
    if count < 2:
        return 0.0
    mean_x = (count - 1) / 2
    mean_y = sum(accuracies) / count
    covariance = sum((x - mean_x) * (y - mean_y) for x, y in enumerate(accuracies))
    variance = sum((x - mean_x) ** 2 for x in range(count))
    return covariance / variance


def is_weakness(accuracies: Sequence[float], threshold: float = 0.5, max_slope: float = 0.0) -> bool:
    """At least two epochs, never above `threshold` in any, and a slope of at most `max_slope` (the authors'
    released failure list: best epoch <= 0.5 and slope <= 0)."""
    return len(accuracies) >= 2 and max(accuracies) <= threshold and accuracy_slope(accuracies) <= max_slope


def find_weaknesses(
    histories: Mapping[str, Sequence[float]], threshold: float = 0.5, max_slope: float = 0.0
) -> list[str]:
    """The ids of the weak problems, in the histories' order."""
    return [pid for pid, accuracies in histories.items() if is_weakness(accuracies, threshold, max_slope)]


def weak_rows(
    rows: Sequence[dict[str, Any]], histories: Mapping[str, Sequence[float]],
    threshold: float = 0.5, max_slope: float = 0.0,
) -> list[dict[str, Any]]:
    """The original rows that are weaknesses, each with its `accuracy_history` and `accuracy_slope`."""
    weak = set(find_weaknesses(histories, threshold, max_slope))
    return [
        {**row, "accuracy_history": list(histories[row["id"]]), "accuracy_slope": accuracy_slope(histories[row["id"]])}
        for row in rows
        if row["id"] in weak
    ]
