"""The tiny world's stand-ins for the large model SwS asks: a concept extractor, a problem writer per
concept combination, and two raters. Each reads the prompt built from the same template file a real
model gets (synth/templates/) and answers in the text form a real model is asked for, so the whole
pipeline, parsing and retries included, runs in CI. The answer labeller is the fallible teacher
(rlkit/world/teacher.py), whose slips make the majority vote of 8 matter.

The writer is imperfect on purpose, so the later filters have work to do: with probability
`flaw_rate` it writes a flawed problem (no expression at all, or two expressions: ambiguous), which the
raters catch; a combination the category cannot satisfy (subtraction with carry-hundreds) gets a
rationale without a problem, which the pipeline counts as unparseable.
"""

from __future__ import annotations

import random
import re

from rlkit.world.arithmetic import PROMPT, split_of
from rlkit.world.categories import CATEGORIES, parse_problem, problem_with_concepts

_CATEGORY = re.compile(r"^\s*Category:\s*(\S+)", re.MULTILINE)
_CONCEPT = re.compile(r"^\s*-\s+(\S+)\s*$", re.MULTILINE)
_PROBLEM = re.compile(r"Problem:\s*(.+)", re.DOTALL)
_CANONICAL = re.compile(r"^Compute \d+(?:[+\-*]\d+)+\.$")


def extract_concepts(prompt: str) -> str:
    """The concepts of the tiny-world problem in the prompt, one '- concept' line each."""
    category, operands = parse_problem(prompt)
    return "\n".join(f"- {concept}" for concept in category.concepts(operands))


def write_problem(prompt: str, seed: int = 0, sample: int = 0, flaw_rate: float = 0.1) -> str:
    """'Rationale: ...\\nProblem: Compute ...' for the category and concepts listed in the prompt; a
    training-split problem (test problems stay held out), seeded by the prompt, seed and sample index."""
    category = _CATEGORY.search(prompt)
    if not category or category.group(1) not in CATEGORIES:
        return "I cannot tell which kind of problem to write."
    name, concepts = category.group(1), _CONCEPT.findall(prompt)
    rng = random.Random(f"tiny-writer-{seed}-{sample}-{prompt}")
    rationale = f"Rationale: a {name} problem must exercise {', '.join(concepts)} together."
    operands = problem_with_concepts(rng, name, concepts, accept=lambda expr: split_of(expr) == "train", tries=500)
    if operands is None:
        return rationale + " No such problem exists."
    expr = CATEGORIES[name].expression(operands)
    flaw = rng.random()
    if flaw < flaw_rate / 2:
        return f"{rationale}\nProblem: Compute the sum of the digits you like best."
    if flaw < flaw_rate:
        other = CATEGORIES[name].expression(CATEGORIES[name].draw(rng))
        return f"{rationale}\nProblem: Compute {expr} or {other}, whichever is larger."
    return f"{rationale}\nProblem: {PROMPT.format(expr=expr)}"


def rate_problem(prompt: str, strict: bool) -> str:
    """'Rating: perfect' for a canonical 'Compute <expr>.' problem; a problem with two expressions is
    'bad' to the strict rater and 'acceptable' to the lenient one; no expression at all is 'bad'."""
    found = _PROBLEM.search(prompt)
    problem = found.group(1).strip().splitlines()[0].strip() if found else ""
    expressions = re.findall(r"\d+(?:[+\-*]\d+)+", problem)
    if not expressions:
        return "The problem asks for nothing computable.\nRating: bad"
    if _CANONICAL.match(problem):
        return "Well-posed, one answer.\nRating: perfect"
    return "It has more than one computation in it.\nRating: " + ("bad" if strict else "acceptable")
