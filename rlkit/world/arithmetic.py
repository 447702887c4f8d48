"""Synthetic arithmetic with a programmatic chain-of-thought teacher.

A problem chains two or three operands with + and -; the teacher writes one line per
operation and ends with the answer in \\boxed{}. Train and test splits are disjoint: a
problem's split is fixed by a hash of its text.
"""

from __future__ import annotations

import hashlib
import random

PROMPT = "Compute {expr}."


def _split_of(expr: str) -> str:
    return "test" if int(hashlib.sha1(expr.encode()).hexdigest(), 16) % 5 == 0 else "train"


def _random_problem(rng: random.Random) -> tuple[str, list[str], int]:
    value = rng.randint(10, 99)
    expr, lines = str(value), []
    for _ in range(rng.choice((1, 2))):
        operand = rng.randint(1, 99)
        if rng.random() < 0.5 or operand > value:
            new = value + operand
            lines.append(f"{value}+{operand}={new}")
            expr += f"+{operand}"
        else:
            new = value - operand
            lines.append(f"{value}-{operand}={new}")
            expr += f"-{operand}"
        value = new
    return expr, lines, value


def teacher_solution(lines: list[str], answer: int) -> str:
    return "<think>\n" + "\n".join(lines) + "\n</think>\n\\boxed{" + str(answer) + "}"


def arithmetic_samples(split: str, size: int, seed: int = 0) -> list[dict]:
    """`size` distinct problems of one split, each a sample dict with prompt, answer and teacher solution."""
    rng = random.Random(f"arithmetic-{split}-{seed}")
    samples, seen = [], set()
    while len(samples) < size:
        expr, lines, answer = _random_problem(rng)
        if expr in seen or _split_of(expr) != split:
            continue
        seen.add(expr)
        samples.append(
            {
                "id": f"arith-{split}-{len(samples)}",
                "problem": PROMPT.format(expr=expr),
                "answer": str(answer),
                "solution": teacher_solution(lines, answer),
            }
        )
    return samples
