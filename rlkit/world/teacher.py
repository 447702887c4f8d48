"""The fallible teacher: the tiny world's stand-in for a large teacher model that is sometimes wrong.

Each column line slips (is written one too high or too low) with probability `slip_rate * difficulty`,
capped at 1, where a problem's difficulty is 1 plus its carries, borrows and third operand
(rlkit/world/categories.py). A slip makes the answer wrong, so a problem of difficulty d is answered
wrongly with probability 1 - (1 - min(1, slip_rate * d)) ** 2 (two columns): harder problems fail more.

Sampling is seeded by (seed, the problem's expression, sample index), so sample 3 of a problem is the same text in every
run (a resumed `rlkit generate` redoes nothing differently), while samples of one problem differ; that
makes rejection sampling, majority votes and (correct, incorrect) pairs of one problem meaningful.
"""

from __future__ import annotations

import random

from rlkit.world.categories import Category, difficulty, parse_problem, trace

COLUMNS = 2  # every category's trace has a units line and a tens line


class FallibleTeacher:
    def __init__(self, slip_rate: float = 0.05, seed: int = 0):
        if not 0.0 <= slip_rate <= 1.0:
            raise ValueError(f"slip_rate must be in [0, 1], got {slip_rate}")
        self.slip_rate, self.seed = slip_rate, seed

    def slip_probability(self, problem_difficulty: int) -> float:
        """Probability that one column line of a problem of this difficulty is written wrong."""
        return min(1.0, self.slip_rate * problem_difficulty)

    def error_rate(self, problem: str) -> float:
        """The probability that a sampled solution of `problem` ends in a wrong answer."""
        category, operands = parse_problem(problem)
        return 1.0 - (1.0 - self.slip_probability(difficulty(category.concepts(operands)))) ** COLUMNS

    def solve(self, problem: str, index: int = 0) -> str:
        """Sample `index` of the teacher's solution to a problem text (or a prompt holding it)."""
        category, operands = parse_problem(problem)
        rng = random.Random(f"teacher-{self.seed}-{category.expression(operands)}-{index}")  # not the prompt's wording
        return self._trace(category, operands, rng)

    def sample(self, problem: str, n: int, start: int = 0) -> list[str]:
        """Samples start .. start + n - 1 of the teacher's solutions to one problem."""
        return [self.solve(problem, index) for index in range(start, start + n)]

    def _trace(self, category: Category, operands: list[int], rng: random.Random) -> str:
        p = self.slip_probability(difficulty(category.concepts(operands)))

        def slip(value: int) -> int:
            if rng.random() >= p:
                return value
            return value + 1 if value == 0 else value + rng.choice((-1, 1))  # a column never goes negative

        return trace(category, operands, slip)
