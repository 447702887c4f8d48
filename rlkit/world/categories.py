"""The tiny world's problem categories: each a distinct skill with its own column-by-column trace.

    add2   47+38     two-operand addition          concepts: addition, carry-tens, carry-hundreds
    add3   47+38+12  three-operand addition        + three-operands
    sub    74-38     subtraction of two-digit numbers  concepts: subtraction, borrow
    mul1   47*8      a two-digit number times a digit  concepts: multiplication, carry-tens, carry-hundreds

Every trace has two column lines (units, then tens with the carry or borrow) and boxes the answer. A row
carries `category` and `concepts` (the skills it exercises, as SwS tags real problems) and `difficulty`
(the number of concepts: each carry, borrow or third operand is one more thing to get right).

`columns(operands, slip)` computes the lines through `slip`, which the fallible teacher uses to get a
column wrong by one (rlkit/world/teacher.py); the exact teacher passes the identity. A slip changes the
answer by 1 (units) or 10 (tens), so any slip makes the answer wrong.

`problem_with_concepts` draws a problem of a category that exercises given concepts: the tiny world's
problem writer for concept combinations (SwS).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass

Slip = Callable[[int], int]  # a column's true value -> the value written


def _exact(value: int) -> int:
    return value


@dataclass(frozen=True)
class Category:
    name: str
    operator: str  # joins the operands in the problem text
    draw: Callable[[random.Random], list[int]]
    columns: Callable[[list[int], Slip], tuple[list[str], int]]  # (trace lines, the answer they reach)
    concepts: Callable[[list[int]], list[str]]

    def expression(self, operands: list[int]) -> str:
        return self.operator.join(map(str, operands))

    def answer(self, operands: list[int]) -> int:
        return self.columns(operands, _exact)[1]


def _addition_columns(operands: list[int], slip: Slip) -> tuple[list[str], int]:
    units = slip(sum(n % 10 for n in operands))
    carry = units // 10
    tens = slip(sum(n // 10 for n in operands) + carry)
    units_line = "+".join(str(n % 10) for n in operands) + f"={units}"
    tens_line = "+".join([str(n // 10) for n in operands] + ([str(carry)] if carry else [])) + f"={tens}"
    return [units_line, tens_line], tens * 10 + units % 10


def _addition_concepts(operands: list[int]) -> list[str]:
    concepts = ["addition"] + (["three-operands"] if len(operands) == 3 else [])
    if sum(n % 10 for n in operands) >= 10:
        concepts.append("carry-tens")
    if sum(operands) >= 100:
        concepts.append("carry-hundreds")
    return concepts


def _subtraction_draw(rng: random.Random) -> list[int]:
    first = rng.randint(11, 99)
    return [first, rng.randint(10, first - 1)]


def _subtraction_columns(operands: list[int], slip: Slip) -> tuple[list[str], int]:
    a, b = operands
    borrow = int(a % 10 < b % 10)
    units = slip(a % 10 + 10 * borrow - b % 10)
    tens = slip(a // 10 - borrow - b // 10)
    tens_line = "-".join([str(a // 10)] + (["1"] if borrow else []) + [str(b // 10)]) + f"={tens}"
    return [f"{a % 10 + 10 * borrow}-{b % 10}={units}", tens_line], tens * 10 + units


def _subtraction_concepts(operands: list[int]) -> list[str]:
    a, b = operands
    return ["subtraction"] + (["borrow"] if a % 10 < b % 10 else [])


def _multiplication_draw(rng: random.Random) -> list[int]:
    return [rng.randint(10, 99), rng.randint(2, 9)]


def _multiplication_columns(operands: list[int], slip: Slip) -> tuple[list[str], int]:
    number, digit = operands
    units = slip((number % 10) * digit)
    carry = units // 10
    tens = slip((number // 10) * digit + carry)
    tens_line = f"{number // 10}*{digit}" + (f"+{carry}" if carry else "") + f"={tens}"
    return [f"{number % 10}*{digit}={units}", tens_line], tens * 10 + units % 10


def _multiplication_concepts(operands: list[int]) -> list[str]:
    number, digit = operands
    concepts = ["multiplication"]
    if (number % 10) * digit >= 10:
        concepts.append("carry-tens")
    if number * digit >= 100:
        concepts.append("carry-hundreds")
    return concepts


CATEGORIES: dict[str, Category] = {
    category.name: category
    for category in (
        Category("add2", "+", lambda rng: [rng.randint(10, 99) for _ in range(2)], _addition_columns, _addition_concepts),
        Category("add3", "+", lambda rng: [rng.randint(10, 99) for _ in range(3)], _addition_columns, _addition_concepts),
        Category("sub", "-", _subtraction_draw, _subtraction_columns, _subtraction_concepts),
        Category("mul1", "*", _multiplication_draw, _multiplication_columns, _multiplication_concepts),
    )
}
# The world before categories: two- and three-operand addition, equally often. Equal weights draw the
# category with rng.choice, the draw that world used, so this mix reproduces its problems exactly.
DEFAULT_MIX: dict[str, float] = {"add2": 1.0, "add3": 1.0}
CONCEPTS: tuple[str, ...] = (
    "addition", "three-operands", "carry-tens", "carry-hundreds", "subtraction", "borrow", "multiplication",
)

_EXPRESSION = re.compile(r"(\d+(?:[+\-*]\d+)+)")


def check_mix(mix: dict[str, float]) -> None:
    """A ValueError naming what is wrong: an unknown category, a negative weight, or no weight at all."""
    unknown = [name for name in mix if name not in CATEGORIES]
    if unknown:
        raise ValueError(f"unknown tiny-world categories {unknown}; expected some of {', '.join(CATEGORIES)}")
    if any(weight < 0 for weight in mix.values()) or not any(weight > 0 for weight in mix.values()):
        raise ValueError(f"category weights must be >= 0 with at least one > 0, got {mix}")


def draw_category(rng: random.Random, mix: dict[str, float]) -> Category:
    names = [name for name in CATEGORIES if mix.get(name, 0) > 0]  # registry order: YAML order does not matter
    weights = [mix[name] for name in names]
    if len(set(weights)) == 1:
        return CATEGORIES[rng.choice(names)]
    return CATEGORIES[rng.choices(names, weights)[0]]


def difficulty(concepts: list[str]) -> int:
    """1 for a plain problem; one more for each carry, borrow or third operand."""
    return len(concepts)


def trace(category: Category, operands: list[int], slip: Slip = _exact, boxed: bool = True) -> str:
    """The chain-of-thought solution: the column lines, then the answer they reach (boxed or stated)."""
    lines, answer = category.columns(operands, slip)
    final = f"\\boxed{{{answer}}}" if boxed else f"The answer is {answer}."
    return "<think>\n" + "\n".join(lines) + f"\n</think>\n{final}"


def parse_problem(text: str) -> tuple[Category, list[int]]:
    """The category and operands of a tiny-world problem text ('Compute 47+38.', or a prompt that holds
    it); a ValueError when the text has no tiny-world expression."""
    found = _EXPRESSION.findall(text)
    if not found:
        raise ValueError(f"no tiny-world expression (like 47+38, 74-38 or 47*8) in {text[:80]!r}")
    expr = found[-1]
    operands = [int(part) for part in re.split(r"[+\-*]", expr)]
    if "*" in expr:
        return CATEGORIES["mul1"], operands
    if "-" in expr:
        return CATEGORIES["sub"], operands
    return CATEGORIES["add3" if len(operands) == 3 else "add2"], operands


def problem_with_concepts(
    rng: random.Random, category: str, concepts: set[str] | list[str], accept: Callable[[str], bool] = lambda expr: True,
    tries: int = 2000,
) -> list[int] | None:
    """Operands of a `category` problem that exercises every one of `concepts` (and passes `accept`, e.g.
    a split or novelty check on its expression); None when `tries` draws find none (an impossible
    combination such as subtraction with carry-hundreds)."""
    wanted, kind = set(concepts), CATEGORIES[category]
    for _ in range(tries):
        operands = kind.draw(rng)
        if wanted <= set(kind.concepts(operands)) and accept(kind.expression(operands)):
            return operands
    return None
