"""Synthetic arithmetic with a programmatic chain-of-thought teacher.

A problem adds two or three two-digit numbers. The teacher works column by column, as on
paper: the units column first (its sum), then the tens column with the carry, and boxes the
answer. Each line needs a few digits and a one-digit addition fact, which a tiny transformer
learns in minutes on a CPU; getting every digit right is what RL then improves.

    Compute 47+38+12.
    <think>
    7+8+2=17
    4+3+1+1=9
    </think>
    \\boxed{97}

Train and test splits are disjoint: a problem's split is fixed by a hash of its text.
"""

from __future__ import annotations

import hashlib
import random

PROMPT = "Compute {expr}."


def _split_of(expr: str) -> str:
    return "test" if int(hashlib.sha1(expr.encode()).hexdigest(), 16) % 5 == 0 else "train"


def teacher_solution(operands: list[int]) -> str:
    """Column addition: units column, then tens column plus the carry; the answer is boxed."""
    units = sum(n % 10 for n in operands)
    carry = units // 10
    tens = sum(n // 10 for n in operands) + carry
    units_line = "+".join(str(n % 10) for n in operands) + f"={units}"
    tens_line = "+".join([str(n // 10) for n in operands] + ([str(carry)] if carry else [])) + f"={tens}"
    answer = tens * 10 + units % 10
    return f"<think>\n{units_line}\n{tens_line}\n</think>\n\\boxed{{{answer}}}"


def arithmetic_samples(split: str, size: int, seed: int = 0) -> list[dict]:
    """`size` distinct problems of one split, each a sample dict with prompt, answer and teacher solution."""
    rng = random.Random(f"arithmetic-{split}-{seed}")
    samples, seen = [], set()
    while len(samples) < size:
        operands = [rng.randint(10, 99) for _ in range(rng.choice((2, 3)))]
        expr = "+".join(map(str, operands))
        if expr in seen or _split_of(expr) != split:
            continue
        seen.add(expr)
        samples.append(
            {
                "id": f"arith-{split}-{len(samples)}",
                "problem": PROMPT.format(expr=expr),
                "answer": str(sum(operands)),
                "solution": teacher_solution(operands),
            }
        )
    return samples
