"""What a synthesis run shows: a progress bar per step, and at the end the funnel (as the paper's
table), the per-category failure rates and budgets, and what each step lost and why."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from rlkit.progress import ProgressBar
from rlkit.synth.pipeline import FUNNEL_LABELS, Result


class StepBars:
    """The pipeline's `progress` callback: one bar per step (a plain line per chunk off a terminal)."""

    def __init__(self, prefix: str = "synth"):
        self.prefix, self.step, self.bar = prefix, None, None

    def __call__(self, step: str, done: int, total: int) -> None:
        if step != self.step:
            self.close()
            self.step, self.bar = step, ProgressBar(f"{self.prefix}/{step}", max(total, 1), start=done, unit="items", every=1)
        self.bar.update(done)  # type: ignore[union-attr]

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.step, self.bar = None, None


def tables(result: Result | dict[str, Any]) -> list[Table]:
    """The funnel, the categories, and the losses per step, from a Result or a funnel.json."""
    summary = result if isinstance(result, dict) else {
        "funnel": result.funnel, "failure_rates": result.failure_rates, "budgets": result.budgets, "counts": result.counts,
    }
    funnel = Table(title="SwS funnel")
    funnel.add_column("step")
    funnel.add_column("problems", justify="right")
    for key, count in summary["funnel"].items():
        funnel.add_row(FUNNEL_LABELS.get(key, key), f"{count:,}")
    categories = Table(title="categories")
    for column in ("category", "failure rate", "budget"):
        categories.add_column(column, justify="left" if column == "category" else "right")
    for category, rate in summary["failure_rates"].items():
        categories.add_row(category, f"{rate:.3f}", str(summary["budgets"].get(category, 0)))
    losses = Table(title="lost per step")
    for column in ("step", "reason", "problems"):
        losses.add_column(column, justify="right" if column == "problems" else "left")
    for step, reasons in summary["counts"].items():
        for reason, count in sorted(reasons.items()):
            losses.add_row(step, reason, str(count))
    return [funnel, categories, losses]


def print_report(result: Result | dict[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    for table in tables(result):
        console.print(table)
    message = result.get("message") if isinstance(result, dict) else result.message
    if message:
        console.print(message)
