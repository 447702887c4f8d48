"""Step 1: weaknesses, the problems the initial RL run kept failing at and got worse on.

SwS (arXiv 2506.08989, section 3.1): a problem is a weakness when its training accuracy never
reaches 0.5 in any epoch AND the slope of its accuracy over the epochs is negative. The histories
come from the run's accuracy ledger: one accuracy per epoch per problem.
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
    """Never at or above `threshold` in any epoch, and a slope below `max_slope` (the paper: < 0)."""
    return bool(accuracies) and max(accuracies) < threshold and accuracy_slope(accuracies) < max_slope


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
