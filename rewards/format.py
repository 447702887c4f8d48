"""`format`: 1.0 when the completion has DeepSeek-R1's shape, `<think> reasoning </think> answer`, else 0.0.

The shape: one `<think>` at the start (or none, with `think_in_prompt=True`, when the chat template
already opened it), one `</think>`, non-empty reasoning between them and a non-empty answer after.
With `require_boxed=True` the answer must also hold a \\boxed{}.

    >>> format_reward("<think>\\n2+2 is 4\\n</think>\\nThe answer is 4.", {}).score
    1.0
"""

from __future__ import annotations

from typing import Any

from rlkit.rewards.base import RewardResult
from rlkit.rewards.math import THINK_END, THINK_START, last_boxed


def _fail(reason: str) -> RewardResult:
    return RewardResult(0.0, {"reason": reason})


def format_reward(completion: str, sample: dict[str, Any], think_in_prompt: bool = False, require_boxed: bool = False) -> RewardResult:
    text = completion.strip()
    opened = text.count(THINK_START)
    if think_in_prompt:
        if opened:
            return _fail("<think> in the completion, but the prompt already opened it (think_in_prompt)")
    elif opened != 1 or not text.startswith(THINK_START):
        return _fail(f"expected the completion to start with one <think>, found {opened}")
    closed = text.count(THINK_END)
    if closed != 1:
        return _fail(f"expected one </think>, found {closed}")
    reasoning, answer = text.split(THINK_END)
    if not reasoning.removeprefix(THINK_START).strip():
        return _fail("empty reasoning inside <think>")
    if not answer.strip():
        return _fail("no answer after </think>")
    if require_boxed and last_boxed(answer) is None:
        return _fail("no \\boxed{} in the answer after </think>")
    return RewardResult(1.0, {"reason": "ok"})
