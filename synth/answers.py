"""Step 7: reference answers by majority vote of a strong reasoning model.

SwS (section 3.2): Skywork-OR1-Math-7B (QwQ-32B for the 32B policy) samples 8 solutions per problem;
the problem is kept, with the majority answer as its reference, only if that answer (answers equal
under math-verify count as one) holds at least half of the 8 samples. A problem whose samples agree
less is likely ill-posed or too hard to label reliably.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from rlkit.eval.evaluate import math_equivalence
from rlkit.eval.scores import majority_index
from rlkit.rewards.math import answer_part, last_boxed
from rlkit.synth.asking import AskStats, Generator, Sampling, ask, load_template

ANSWERING = Sampling(n=8, temperature=0.6, max_tokens=8192)  # the paper: 8 samples; temperature and length are rlkit's


def final_answer(text: str) -> str | None:
    """The last \\boxed{} answer after </think> (the math reward's reading), None when there is none."""
    part = answer_part(text)
    boxed = last_boxed(part) if part is not None else None
    return boxed.strip() if boxed and boxed.strip() else None


def majority_answer(
    answers: Sequence[str | None], equivalent: Callable[[str, str], bool], min_share: float = 0.5
) -> tuple[str | None, int]:
    """(the majority answer, its votes) when its votes are at least `min_share` of ALL samples
    (samples without an answer count against it); (None, votes) otherwise."""
    winner = majority_index(answers, equivalent)
    if winner is None:
        return None, 0
    votes = sum(1 for a in answers if a is not None and equivalent(answers[winner], a))  # type: ignore[arg-type]
    return (answers[winner], votes) if votes >= min_share * len(answers) else (None, votes)


def label_answers(
    rows: Sequence[dict[str, Any]],
    solver: Generator,
    stats: AskStats,
    template: str = "solve",
    sampling: Sampling = ANSWERING,
    min_share: float = 0.5,
    retries: int = 2,
    timeout: float = 3,
) -> list[dict[str, Any]]:
    """Every row the solver answered, with `answer` (None when no majority), `answer_votes` and `answer_samples`.

    A row none of whose samples had a \\boxed{} answer, after the retries, is dropped and counted."""
    prompt = load_template(template)
    prompts = [prompt.safe_substitute(problem=r["problem"]) for r in rows]

    def parse(texts: list[str]) -> list[str | None] | None:
        answers = [final_answer(t) for t in texts]
        return answers if any(a is not None for a in answers) else None

    sampled = ask(solver, prompts, parse, sampling, stats, retries)
    equivalent = math_equivalence(timeout)
    labelled = []
    for row, answers in zip(rows, sampled, strict=True):
        if answers is None:
            continue
        answer, votes = majority_answer(answers, equivalent, min_share)
        labelled.append({**row, "answer": answer, "answer_votes": votes, "answer_samples": len(answers)})
    return labelled
