"""Held-out accuracy of the policy: greedy decoding, scored by the correctness reward."""

from __future__ import annotations

from typing import Any

from rlkit.models import encode_prompt
from rlkit.rollout.base import RolloutEngine, SamplingParams
from rlkit.scoring.pool import RewardPool


def evaluate_accuracy(
    engine: RolloutEngine,
    tokenizer,  # noqa: ANN001
    samples: list[dict[str, Any]],
    scorer: RewardPool,
    max_new_tokens: int,
    batch_size: int = 256,
) -> dict[str, float]:
    sampling = SamplingParams(n=1, temperature=0.0, max_new_tokens=max_new_tokens)
    correct, lengths, truncated = 0.0, 0, 0
    by_category: dict[str, list[float]] = {}  # tiny-world rows (and any data with a `category` field)
    for start in range(0, len(samples), batch_size):
        chunk = samples[start : start + batch_size]
        completions = engine.generate([encode_prompt(tokenizer, s["prompt"]) for s in chunk], sampling)
        scores = scorer.score([c.text for c in completions], chunk)
        correct += sum(scores.total)
        for sample, score in zip(chunk, scores.total):
            if isinstance(sample.get("category"), str):
                by_category.setdefault(sample["category"], []).append(score)
        lengths += sum(len(c.response_ids) for c in completions)
        truncated += sum(c.finish_reason == "length" for c in completions)
    n = len(samples)
    result = {"accuracy": correct / n, "mean_response_length": lengths / n, "truncated": truncated / n, "count": n}
    if len(by_category) > 1:
        result.update({f"accuracy/{name}": sum(scores) / len(scores) for name, scores in sorted(by_category.items())})
    return result
