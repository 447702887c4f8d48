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

`unboxed_fraction` makes the teacher end that fraction of its traces with "The answer is 97."
instead of the box the math reward reads: a format habit like a base model's, which the model
picks up in SFT and which RL can remove from one example (recipes/tiny/tiny_one_shot.yaml).
"""

from __future__ import annotations

import hashlib
import random

PROMPT = "Compute {expr}."


def _split_of(expr: str) -> str:
    return "test" if int(hashlib.sha1(expr.encode()).hexdigest(), 16) % 5 == 0 else "train"


def teacher_solution(operands: list[int], boxed: bool = True) -> str:
    """Column addition: units column, then tens column plus the carry; the answer is boxed (or stated)."""
    units = sum(n % 10 for n in operands)
    carry = units // 10
    tens = sum(n // 10 for n in operands) + carry
    units_line = "+".join(str(n % 10) for n in operands) + f"={units}"
    tens_line = "+".join([str(n // 10) for n in operands] + ([str(carry)] if carry else [])) + f"={tens}"
    answer = tens * 10 + units % 10
    final = f"\\boxed{{{answer}}}" if boxed else f"The answer is {answer}."
    return f"<think>\n{units_line}\n{tens_line}\n</think>\n{final}"


def _unboxed(expr: str, fraction: float) -> bool:
    # from the problem's own hash, so the problems drawn (and every other sample) are the same for any fraction
    return fraction > 0 and int(hashlib.sha1(f"unboxed-{expr}".encode()).hexdigest(), 16) % 10_000 < fraction * 10_000


def arithmetic_samples(split: str, size: int, seed: int = 0, unboxed_fraction: float = 0.0) -> list[dict]:
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
                "solution": teacher_solution(operands, boxed=not _unboxed(expr, unboxed_fraction)),
            }
        )
    return samples
