"""Phi-4-Mini-Reasoning's prompt optimization: before RL, sample each candidate prompt a few times with
the starting policy and keep only prompts whose responses have fairly uniform lengths (prompts whose
answers swing between short and very long destabilized the small model's GRPO run).

The paper does not give its measure; rlkit uses the coefficient of variation of the response lengths
(population std / mean), which has no unit, so one threshold serves short and long answers alike.
"""

from __future__ import annotations

import statistics


def length_spread(lengths: list[int]) -> float:
    """Coefficient of variation of one prompt's response lengths: population std / mean (0 when all equal)."""
    if not lengths:
        raise ValueError("no response lengths")
    mean = statistics.fmean(lengths)
    return statistics.pstdev(lengths) / mean if mean > 0 else 0.0


def uniform_length_prompts(lengths_per_prompt: list[list[int]], max_spread: float) -> list[bool]:
    """For each prompt, whether its responses' length spread is at most `max_spread`."""
    return [length_spread(lengths) <= max_spread for lengths in lengths_per_prompt]
