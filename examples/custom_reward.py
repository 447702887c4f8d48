"""A custom reward: partial credit for numeric answers close to the gold answer.

A reward is a plain function `fn(completion, sample) -> float | RewardResult`. `completion` is the
generated text; `sample` is the dataset row (here its `answer`). Return a float, or a RewardResult to
also log why (shown by `rlkit reward score` and kept in each step's reward info).

Use it from a recipe (keyword arguments go in `args`; several rewards add up with their weights):

    rewards:
      - name: math
      - name: examples/custom_reward.py:numeric_closeness
        weight: 0.5
        args: {tolerance: 0.1}

Check it on a few rows first (one JSON object per line: `completion` plus the sample's fields):

    rlkit reward score examples/custom_reward.py:numeric_closeness --input rows.jsonl --arg tolerance=0.1
"""

from __future__ import annotations

from typing import Any

from rlkit.rewards.base import RewardResult
from rlkit.rewards.math import answer_part, gold_answer, last_boxed


def _number(text: str) -> float | None:
    try:
        return float(text.replace("{,}", "").replace(",", "").strip())
    except ValueError:
        return None


def numeric_closeness(completion: str, sample: dict[str, Any], tolerance: float = 0.1) -> RewardResult:
    """1.0 for the exact number, falling linearly to 0.0 at a relative error of `tolerance`."""
    part = answer_part(completion)  # the text after </think>, where the final answer is
    boxed = last_boxed(part) if part is not None else None
    if boxed is None:
        return RewardResult(0.0, {"reason": "no \\boxed{} answer"})
    pred, gold = _number(boxed), _number(gold_answer(sample))  # gold_answer raises KeyError if the row has none
    if pred is None or gold is None:
        return RewardResult(0.0, {"reason": "not a plain number", "pred": boxed})
    error = abs(pred - gold) / max(abs(gold), 1.0)
    return RewardResult(max(0.0, 1.0 - error / tolerance), {"pred": pred, "gold": gold, "relative_error": round(error, 4)})
