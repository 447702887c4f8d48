"""Step 5: new problems, one per concept combination: the model writes a rationale, then the problem.

SwS (section 3.2): the instruct model first reasons about how the concepts can meet in one problem
at the target level, then states the problem (temperature 0.6, up to 4,096 tokens). Multiple-choice,
multi-part and proof problems are excluded: their answers cannot be checked by one final value.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

from rlkit.synth.asking import AskStats, Generator, Sampling, ask, load_template

WRITING = Sampling(n=1, temperature=0.6, max_tokens=4096)  # the paper: temperature 0.6, up to 4,096 tokens

_PROBLEM = re.compile(r"^\s*\**\s*problem\s*\**\s*:\s*\**", re.IGNORECASE | re.MULTILINE)
_RATIONALE = re.compile(r"^\s*\**\s*rationale\s*\**\s*:\s*\**", re.IGNORECASE | re.MULTILINE)
_EXCLUDED = {
    # capital letters only: "(a) ... (b)" is a multi-part problem, "(A) ... (B)" a list of choices
    "multiple-choice": re.compile(r"\(\s*[A-E]\s*\)[^\n]*\(\s*[B-E]\s*\)|(?i:\b(?:answer )?choices?\s*:|\bwhich of the following\b)"),
    "multi-part": re.compile(r"(?:^|\s)\(?(?:a|i)\)\s.*(?:^|\s)\(?(?:b|ii)\)\s|\bpart\s*(?:\(?b\)?|2|ii)\b", re.IGNORECASE | re.DOTALL),
    "proof": re.compile(r"\b(?:prove|show that|demonstrate that|justify)\b", re.IGNORECASE),
}


def parse_problem(text: str) -> dict[str, str] | None:
    """{rationale, problem} from 'Rationale: ... Problem: ...'; None when there is no non-empty problem."""
    heads = list(_PROBLEM.finditer(text))
    if not heads:
        return None
    problem = text[heads[-1].end():].strip()
    before = text[: heads[-1].start()]
    rationale_head = list(_RATIONALE.finditer(before))
    rationale = before[rationale_head[-1].end():].strip() if rationale_head else before.strip()
    return {"rationale": rationale, "problem": problem} if problem else None


def exclusion_reason(problem: str) -> str | None:
    """'multiple-choice', 'multi-part' or 'proof' when the problem is of a kind SwS leaves out, else None."""
    for reason, pattern in _EXCLUDED.items():
        if pattern.search(problem):
            return reason
    return None


def format_concepts(concepts: Sequence[str]) -> str:
    return "\n".join(f"- {concept}" for concept in concepts)


def write_problems(
    combos: Sequence[dict[str, Any]],
    generator: Generator,
    stats: AskStats,
    excluded: Counter[str],
    template: str = "problem",
    sampling: Sampling = WRITING,
    retries: int = 2,
) -> list[dict[str, Any]]:
    """One problem row per combination whose answer parsed and is not of an excluded kind (counted in `excluded`)."""
    prompt = load_template(template)
    prompts = [
        prompt.safe_substitute(category=c["category"], level=c["level"], concepts=format_concepts(c["concepts"]))
        for c in combos
    ]
    written = ask(generator, prompts, lambda texts: parse_problem(texts[0]), sampling, stats, retries)
    rows = []
    for combo, parsed in zip(combos, written, strict=True):
        if parsed is None:
            continue
        reason = exclusion_reason(parsed["problem"])
        if reason:
            excluded[reason] += 1
            continue
        rows.append({"id": combo["id"].replace("combo-", "sws-", 1), "category": combo["category"],
                     "concepts": combo["concepts"], "level": combo["level"], **parsed})
    return rows
