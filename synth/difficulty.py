"""Step 8: difficulty filter with the policy itself.

SwS (section 3.2): the initially trained policy samples each new problem 8 times; the problem is kept
if its accuracy lies in [25%, 75%]. Problems it always solves teach nothing, and problems it never
solves give GRPO no signal either.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from rlkit.rewards.math import math_reward
from rlkit.synth.asking import AskStats, Generator, Sampling, ask

POLICY_SAMPLING = Sampling(n=8, temperature=1.0, max_tokens=8192)  # the paper: 8 samples


def in_band(accuracy: float, band: tuple[float, float] = (0.25, 0.75)) -> bool:
    """low <= accuracy <= high (both ends included, as the paper's [25%, 75%])."""
    low, high = band
    return low <= accuracy <= high


def policy_accuracy(
    rows: Sequence[dict[str, Any]],
    policy: Generator,
    prompt_of: Callable[[dict[str, Any]], Any],
    stats: AskStats,
    sampling: Sampling = POLICY_SAMPLING,
    retries: int = 2,
) -> list[dict[str, Any]]:
    """Each row (with an `answer`) and its `policy_accuracy`: the fraction of samples the math reward scores 1.

    `prompt_of` renders a row as the policy is prompted in training (its chat template)."""

    rows = list(rows)
    sampled = ask(policy, [prompt_of(r) for r in rows], lambda texts: texts, sampling, stats, retries)
    scored = []
    for row, texts in zip(rows, sampled, strict=True):
        if texts is None:
            continue
        correct = sum(math_reward(text, {"answer": row["answer"]}).score for text in texts)
        scored.append({**row, "policy_accuracy": correct / len(texts)})
    return scored
