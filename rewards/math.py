"""`math`: 1.0 when the completion's final answer equals the gold answer (math-verify), else 0.0.

The answer is the last \\boxed{} after the last </think> (the whole text when there is none).
"""

from __future__ import annotations

import re
from typing import Any

from rlkit.rewards.base import RewardResult

THINK_END = "</think>"


def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} (or \\fbox{...}) in text, with balanced braces."""
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if start < 0:
        return None
    brace = text.find("{", start)
    if brace < 0:
        return None
    depth = 0
    for i in range(brace, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[brace + 1 : i]
    return None


def gold_answer(sample: dict[str, Any]) -> str:
    """The gold answer from whichever field the dataset has."""
    if sample.get("answer") not in (None, ""):
        answer = str(sample["answer"])
        return answer.split("####")[-1].strip() if "####" in answer else answer
    if sample.get("final_answer") not in (None, ""):
        value = sample["final_answer"]
        return str(value[0] if isinstance(value, (list, tuple)) else value)
    solution = sample.get("solution")
    if isinstance(solution, str) and (boxed := last_boxed(solution)) is not None:
        return boxed
    raise KeyError("no gold answer: expected one of answer, final_answer, or a \\boxed{} in solution")


def math_reward(completion: str, sample: dict[str, Any]) -> RewardResult:
    from math_verify import parse, verify

    answer_part = completion.rsplit(THINK_END, 1)[-1]
    boxed = last_boxed(answer_part)
    if boxed is None:
        return RewardResult(0.0, {"reason": "no \\boxed{} answer"})
    gold = gold_answer(sample)
    gold_parsed = parse("$" + gold + "$") if not re.search(r"\$|\\\(|\\\[", gold) else parse(gold)
    pred_parsed = parse("\\boxed{" + boxed + "}")
    ok = bool(gold_parsed) and bool(pred_parsed) and verify(gold_parsed, pred_parsed)
    return RewardResult(1.0 if ok else 0.0, {"pred": boxed, "gold": gold})
