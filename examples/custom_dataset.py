"""A custom dataset: a loader function that turns your own file format into rows rlkit trains on.

A loader is a plain function `fn(split) -> list of dicts`. rlkit calls it with the stage's
`data.split` ("train" or "test") and then treats its rows like those of a .jsonl file:
  - the prompt comes from `problem` (or `question`, `prompt`, `instruction`), rendered by `data.template`;
  - `id` names the row (`data.ids` picks rows by it); without one, rows are numbered;
  - every other field is kept for the rewards: the `math` reward reads the gold answer from `answer`.
`data.limit`, `data.ids` and `data.repeat` apply as for any source.

Point a recipe at it (relative paths resolve against the directory you run rlkit from):

    stages:
      - type: rl
        data: {source: examples/custom_dataset.py:word_problems, template: qwen_boxed}

Check what rlkit makes of it before training: `rlkit run RECIPE --dry-run` imports the loader, and
`python examples/custom_dataset.py` prints the rows.
"""

from __future__ import annotations

import csv
from pathlib import Path

CSV_FILE = Path(__file__).with_name("word_problems.csv")  # next to this file, wherever rlkit runs


def word_problems(split: str = "train") -> list[dict]:
    """Rows of word_problems.csv (columns id, question, answer); the last third is the test split."""
    with CSV_FILE.open(newline="") as f:
        rows = [{"id": r["id"], "problem": r["question"], "answer": r["answer"]} for r in csv.DictReader(f)]
    cut = len(rows) - len(rows) // 3
    return rows[:cut] if split == "train" else rows[cut:]


if __name__ == "__main__":
    for row in word_problems("train") + word_problems("test"):
        print(row)
