"""The accuracy ledger: for every prompt an `rl` stage samples, one row per step in `ledger.jsonl`
(next to metrics.jsonl): stage, step, epoch, problem id, samples, correct samples (by the run's accuracy
reward, `eval.reward`), mean response length in tokens, truncated samples. On `--resume` the rows past
the checkpoint's step are dropped and redone, as metrics lines are.

Reading it: `accuracy_history(run_dir)` gives each problem's accuracy per epoch; `rank_problems` orders
problems by the variance of that history (1-shot RLVR's historical variance score, Wang et al. 2025), its
mean, or its slope over epochs (SwS's weaknesses: never above a threshold, slope negative).

    histories = accuracy_history("runs/qs", stage="rl")
    weak = [h for h in histories.values() if h.max < 0.5 and h.slope < 0]
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlkit.errors import DataError
from rlkit.metrics_log import MetricsLog

LEDGER_FILE = "ledger.jsonl"


class Ledger:
    def __init__(self, run_dir: Path):
        self.log = MetricsLog(Path(run_dir) / LEDGER_FILE)  # same append and resume-truncation rule as metrics

    def truncate_after(self, stage: str, step: int) -> None:
        self.log.truncate_after(stage, step)

    def record(self, stage: str, step: int, samples: Sequence[dict[str, Any]], response_lengths: Sequence[int],
               finish_reasons: Sequence[str], accuracy: Sequence[float], group_size: int, epochs: Sequence[int]) -> None:
        """One row per group of `group_size` consecutive samples (one prompt); `epochs[g]` is group g's epoch.
        A sample is correct when its accuracy score is above 0.5 (the math reward gives 1 or 0)."""
        lines = []
        for g, epoch in enumerate(epochs):
            rows = range(g * group_size, (g + 1) * group_size)
            row = {
                "stage": stage, "step": step, "epoch": epoch, "id": str(samples[rows[0]]["id"]),
                "samples": group_size,
                "correct": sum(accuracy[i] > 0.5 for i in rows),
                "mean_length": sum(response_lengths[i] for i in rows) / group_size,
                "truncated": sum(finish_reasons[i] == "length" for i in rows),
            }
            lines.append(json.dumps(row) + "\n")
        with self.log.path.open("a") as f:
            f.write("".join(lines))


    def record_rollouts(self, stage: str, step: int, rollouts: Any, first_position: int, dataset_size: int,
                        group_size: int, accuracy_reward: str) -> None:
        """Rows for an RL step's sampled groups (rl.Rollouts, in the order their prompts left the stream,
        the first at stream position `first_position`); nothing when the accuracy reward is not scored."""
        accuracy = rollouts.per_reward.get(accuracy_reward)
        if accuracy is None:
            return
        groups = len(rollouts.completions) // group_size
        epochs = [(first_position + g) // dataset_size + 1 for g in range(groups)]  # 1-based, like steps
        completions = rollouts.completions
        self.record(stage, step, rollouts.samples, [len(c.response_ids) for c in completions],
                    [c.finish_reason for c in completions], accuracy, group_size, epochs)


def read_ledger(run_dir: str | Path, stage: str | None = None) -> list[dict[str, Any]]:
    """The ledger's rows (of one stage, when given); a DataError naming the file when there is none."""
    path = Path(run_dir) / LEDGER_FILE
    if not path.exists():
        raise DataError(f"{path}: no ledger; it is written by the rl stages of a run (is {run_dir} a run directory?)")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if stage is not None:
        stages = sorted({r["stage"] for r in rows})
        rows = [r for r in rows if r["stage"] == stage]
        if not rows:
            raise DataError(f"{path}: no rows of stage '{stage}' (stages: {', '.join(stages) or 'none'})")
    return rows


@dataclass
class ProblemHistory:
    """One problem's training accuracy per epoch (epochs in order; only the epochs it was sampled in)."""

    id: str
    epochs: list[int]
    accuracy: list[float]
    samples: list[int]

    @property
    def mean(self) -> float:
        return sum(self.accuracy) / len(self.accuracy)

    @property
    def max(self) -> float:
        return max(self.accuracy)

    @property
    def variance(self) -> float:
        """Population variance across epochs (numpy's default), 1-shot RLVR's ranking score."""
        mean = self.mean
        return sum((a - mean) ** 2 for a in self.accuracy) / len(self.accuracy)

    @property
    def slope(self) -> float:
        """Least-squares slope of accuracy against epoch; 0 with fewer than two epochs."""
        if len(self.epochs) < 2:
            return 0.0
        mx, my = sum(self.epochs) / len(self.epochs), self.mean
        sxx = sum((x - mx) ** 2 for x in self.epochs)
        return sum((x - mx) * (y - my) for x, y in zip(self.epochs, self.accuracy)) / sxx


def accuracy_history(run_dir: str | Path, stage: str | None = None) -> dict[str, ProblemHistory]:
    """Each problem's accuracy per epoch: correct over samples of all its rows in that epoch."""
    totals: dict[str, dict[int, list[int]]] = {}
    for row in read_ledger(run_dir, stage):
        counts = totals.setdefault(row["id"], {}).setdefault(row["epoch"], [0, 0])
        counts[0] += row["correct"]
        counts[1] += row["samples"]
    histories = {}
    for pid, by_epoch in totals.items():
        epochs = sorted(by_epoch)
        histories[pid] = ProblemHistory(pid, epochs, [by_epoch[e][0] / by_epoch[e][1] for e in epochs], [by_epoch[e][1] for e in epochs])
    return histories


# name -> sort key; the first problems are: the most variable, the least accurate, the fastest falling
RANKINGS = {
    "variance": lambda h: -h.variance,
    "accuracy": lambda h: h.mean,
    "slope": lambda h: h.slope,
}


def rank_problems(histories: dict[str, ProblemHistory], by: str, reverse: bool = False) -> list[ProblemHistory]:
    if by not in RANKINGS:
        raise ValueError(f"unknown ranking '{by}'; expected one of {', '.join(RANKINGS)}")
    ordered = sorted(histories.values(), key=lambda h: (RANKINGS[by](h), h.id))  # ties by id: a stable, repeatable order
    return ordered[::-1] if reverse else ordered
