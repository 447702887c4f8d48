"""Synthetic arithmetic with a programmatic chain-of-thought teacher.

A problem is one of the categories in rlkit/world/categories.py (two- or three-operand addition,
subtraction with borrowing, a two-digit number times a digit). The teacher works column by column, as on
paper: the units column first, then the tens column with the carry, and boxes the answer. Each line needs a
few digits and a one-digit fact, which a tiny transformer learns in minutes on a CPU; getting every digit
right is what RL then improves.

    Compute 47+38+12.
    <think>
    7+8+2=17
    4+3+1+1=9
    </think>
    \\boxed{97}

`mix` weighs the categories (default: two- and three-operand addition equally, the world as it was before
categories, drawn with the same random numbers, so its problems are the same). Train and test splits are
disjoint: a problem's split is fixed by a hash of its text.

`unboxed_fraction` makes the teacher end that fraction of its traces with "The answer is 97."
instead of the box the math reward reads: a format habit like a base model's, which the model
picks up in SFT and which RL can remove from one example (recipes/tiny/tiny_one_shot.yaml).
"""

from __future__ import annotations

import hashlib
import random

from rlkit.world.categories import CATEGORIES, DEFAULT_MIX, Category, check_mix, difficulty, draw_category, trace

PROMPT = "Compute {expr}."


def split_of(expr: str) -> str:
    return "test" if int(hashlib.sha1(expr.encode()).hexdigest(), 16) % 5 == 0 else "train"


def teacher_solution(operands: list[int], boxed: bool = True) -> str:
    """Column addition: units column, then tens column plus the carry; the answer is boxed (or stated)."""
    return trace(CATEGORIES["add3" if len(operands) == 3 else "add2"], operands, boxed=boxed)


def _unboxed(expr: str, fraction: float) -> bool:
    # from the problem's own hash, so the problems drawn (and every other sample) are the same for any fraction
    return fraction > 0 and int(hashlib.sha1(f"unboxed-{expr}".encode()).hexdigest(), 16) % 10_000 < fraction * 10_000


def problem_row(row_id: str, category: Category, operands: list[int], boxed: bool = True) -> dict:
    """One tiny-world row: the problem, its answer and the exact teacher's solution, tagged."""
    concepts = category.concepts(operands)
    return {
        "id": row_id,
        "problem": PROMPT.format(expr=category.expression(operands)),
        "answer": str(category.answer(operands)),
        "solution": trace(category, operands, boxed=boxed),
        "category": category.name,
        "concepts": concepts,
        "difficulty": difficulty(concepts),
    }


def arithmetic_samples(
    split: str, size: int, seed: int = 0, unboxed_fraction: float = 0.0, mix: dict[str, float] | None = None
) -> list[dict]:
    """`size` distinct problems of one split, drawn by the category weights `mix`."""
    mix = DEFAULT_MIX if mix is None else mix
    check_mix(mix)
    rng = random.Random(f"arithmetic-{split}-{seed}")
    samples, seen, misses = [], set(), 0
    while len(samples) < size:
        category = draw_category(rng, mix)
        operands = category.draw(rng)
        expr = category.expression(operands)
        if expr in seen or split_of(expr) != split:
            misses += 1
            if misses > 100 * size + 100_000:  # the mix has fewer distinct problems than asked for (mul1 has 720)
                raise ValueError(f"tiny world: only {len(samples)} distinct {split} problems of mix {mix}; asked for {size}")
            continue
        misses = 0
        seen.add(expr)
        samples.append(problem_row(f"arith-{split}-{len(samples)}", category, operands, boxed=not _unboxed(expr, unboxed_fraction)))
    return samples
