"""The `math` reward: answer extraction, gold answers, math-verify equivalence, bad input, time limits,
and agreement with the Qwen2.5-Math grader on 800 real responses."""

import json
import sys
import time
from pathlib import Path

import pytest
from math_verify.errors import TimeoutException

from rlkit.cli import main as rlkit_main
from rlkit.errors import DataError
from rlkit.rewards.base import RewardTimeout
from rlkit.rewards.math import (
    MissingGoldAnswer,
    answer_part,
    gold_answer,
    gold_answers,
    last_boxed,
    math_reward,
    time_limit,
)


def score(completion: str, gold: str) -> float:
    return math_reward(completion, {"answer": gold}).score


# ----------------------------------------------------------------------------- where the answer is
def test_r1_drafts_inside_think_do_not_count() -> None:
    text = "<think>First try: \\boxed{5}. Wait, recheck: \\boxed{7}.</think>\nSo the answer is \\boxed{6}."
    assert score(text, "6") == 1.0
    assert score(text, "7") == 0.0  # the last draft inside <think> is not the answer


def test_unfinished_think_has_no_answer() -> None:
    result = math_reward("<think>it is \\boxed{6} I think", {"answer": "6"})
    assert result.score == 0.0 and "unfinished" in result.info["reason"]
    assert answer_part("no thinking at all \\boxed{1}") == "no thinking at all \\boxed{1}"


def test_only_the_last_boxed_answer_counts() -> None:
    text = "Maybe \\boxed{3}; no: \\boxed{\\frac{1}{2}}, finally \\boxed{4}"
    assert score(text, "4") == 1.0
    assert score(text, "3") == 0.0 and score(text, "\\frac12") == 0.0


def test_last_boxed_balances_braces_and_reads_fbox_and_bare_tokens() -> None:
    assert last_boxed("\\boxed{\\frac{1}{\\sqrt{2}}} tail") == "\\frac{1}{\\sqrt{2}}"
    assert last_boxed("\\fbox{12}") == "12"
    assert last_boxed("so \\boxed 42.") == "42"
    assert last_boxed("\\boxed{\\frac{1}{2}") is None  # cut off inside the box
    assert last_boxed("no box") is None


# ----------------------------------------------------------------------------- equivalence
@pytest.mark.parametrize(
    "pred, gold, expected",
    [
        ("\\frac{1}{2}", "0.5", 1.0),  # fraction vs decimal
        ("0.5", "\\frac12", 1.0),
        ("1/2", "\\dfrac{1}{2}", 1.0),
        ("0.3", "\\frac{1}{3}", 0.0),
        ("(1, 2]", "(1,2]", 1.0),  # intervals: endpoints and their closedness
        ("[1, 2]", "(1,2]", 0.0),
        ("(-\\infty, 3) \\cup (5, \\infty)", "(-\\infty,3)\\cup(5,\\infty)", 1.0),
        ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3, \\frac{\\pi}{2})", 1.0),  # tuples: order matters
        ("(\\frac{\\pi}{2}, 3)", "(3, \\frac{\\pi}{2})", 0.0),
        ("\\begin{pmatrix}1\\\\2\\end{pmatrix}", "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", 1.0),  # matrices
        ("\\begin{pmatrix}2\\\\1\\end{pmatrix}", "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", 0.0),
        ("10000", "10{,}000", 1.0),  # thousands separators
        ("1,000,000", "1000000", 1.0),
        ("1{,}001", "1000", 0.0),
        ("\\frac{1}{2}\\sqrt{3}", "\\frac{\\sqrt{3}}{2}", 1.0),  # symbolic equivalence
        ("\\sqrt{8}", "2\\sqrt{2}", 1.0),
        ("(x+1)^2", "x^2+2x+1", 1.0),
        ("x^2+1", "x^2+2x+1", 0.0),
        ("6", "\\$6", 1.0),  # a gold with a dollar sign
        ("84, 69", "$69$,$84$", 1.0),  # OlympiadBench multi-answer, any order
        ("69", "$69$,$84$", 0.0),
    ],
)
def test_equivalence(pred: str, gold: str, expected: float) -> None:
    assert score(f"The answer is \\boxed{{{pred}}}.", gold) == expected


# ----------------------------------------------------------------------------- gold answers
def test_gold_answer_fields() -> None:
    assert gold_answer({"answer": "She pays 3 * 6 = <<3*6=18>>18 dollars.\n#### 18"}) == "18"  # GSM8K
    assert gold_answer({"answer": 27.0}) == "27.0"  # AMC stores numbers
    assert gold_answer({"final_answer": "['$\\\\frac{1}{2}$']"}) == "$\\frac{1}{2}$"  # a list written as a string
    assert gold_answer({"final_answer": ["$69$", "$84$"]}) == "$69$, $84$"
    assert gold_answer({"reward_model": {"ground_truth": "12.8"}}) == "12.8"  # verl rows
    assert gold_answer({"solution": "so $s=\\boxed{1.6} \\mathrm{~cm}$"}) == "1.6"  # Minerva
    assert math_reward("\\boxed{1.6}", {"answer": "", "solution": "\\boxed{1.6}"}).score == 1.0  # an empty field falls through


def test_missing_gold_answer_is_a_key_error_and_a_data_error_naming_file_and_row() -> None:
    with pytest.raises(MissingGoldAnswer) as err:
        math_reward("\\boxed{1}", {"question": "1+0?"})
    assert isinstance(err.value, KeyError) and "answer" in str(err.value)
    rows = [{"answer": "1"}, {"question": "no gold here", "solution": "no box"}]
    with pytest.raises(DataError, match=r"data/x\.jsonl row 2: no gold answer.*fields present: question, solution"):
        gold_answers(rows, "data/x.jsonl")


# ----------------------------------------------------------------------------- bad completions
@pytest.mark.parametrize(
    "completion",
    ["", "   ", "\\boxed{}", "\\boxed{3", "\\boxed{\\frac{1}{", "}}}{{{\\boxed{{{}", "\\boxed{\\undefinedmacro{x}}", "<think></think>"],
)
def test_empty_and_malformed_completions_score_zero(completion: str) -> None:
    assert math_reward(completion, {"answer": "3"}).score == 0.0


def test_huge_completion_is_fast() -> None:
    started = time.perf_counter()
    assert score("x" * 200_000 + " so \\boxed{4}", "4") == 1.0
    assert score("{" * 200_000 + "\\boxed{4", "4") == 0.0
    assert score("\\boxed{" + "1+" * 100_000 + "1}", "4") == 0.0  # a 200,000-char "answer" is not parsed
    assert time.perf_counter() - started < 5.0


def test_invalid_unicode_completion() -> None:
    assert score("\ud800 lone surrogate \\boxed{4}", "4") == 1.0
    assert score("\\boxed{\udcff\ufffd}", "4") == 0.0
    assert score("\x00\x1b[31m\\boxed{4}", "4") == 1.0


def test_pathological_expression_stops_within_its_time_limit() -> None:
    started = time.perf_counter()
    with pytest.raises(RewardTimeout):  # sympy would expand this for minutes
        math_reward("\\boxed{(x+1)^{100000}}", {"answer": "1"}, timeout=1)
    assert time.perf_counter() - started < 5.0
    assert score("\\boxed{1}", "1") == 1.0  # and the next call is fine


class _FinalizerThatSpinsPastTheAlarm:
    def __del__(self) -> None:  # the first alarm lands in here; Python prints its exception and drops it
        started = time.monotonic()
        while time.monotonic() - started < 0.5:
            pass


def test_a_time_limit_dropped_inside_a_finalizer_fires_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """What CI once hit: sympy ran a weakref callback when the one alarm fired, the exception was
    dropped, and a 1 s limit ran for 946 s. The timer must fire again after that."""
    dropped: list[BaseException | None] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda unraisable: dropped.append(unraisable.exc_value))
    started = time.monotonic()
    with pytest.raises(TimeoutException), time_limit(0.1):
        _FinalizerThatSpinsPastTheAlarm()  # refcount 0 at once: __del__ runs inside the limit
        while time.monotonic() - started < 5:
            pass
    assert time.monotonic() - started < 3  # not the 5 s the loop would spin
    assert len(dropped) == 1 and isinstance(dropped[0], TimeoutException)  # the first alarm was lost
    with time_limit(0.1):  # and a block that ends in time leaves no timer behind
        pass
    time.sleep(0.5)


# ----------------------------------------------------------------------------- real data
def test_agrees_with_the_qwen_grader_on_800_real_responses(shared_data: Path, tmp_path: Path) -> None:
    """math_cot_100.jsonl: 100 MATH questions x 8 responses, each graded by Qwen2.5-Math's evaluation
    grader. Scored through `rlkit reward score math`, as a user would. The one allowed disagreement:
    question 72, response 7 boxes 10000 for the gold 10{,}000, which that grader marks wrong."""
    source = shared_data / "verifier" / "math_cot_100.jsonl"
    rows, verdicts = [], []
    for question in map(json.loads, source.read_text().splitlines()):
        assert len(question["code"]) == len(question["score"]) == 8
        for j, (response, verdict) in enumerate(zip(question["code"], question["score"])):
            rows.append({"id": f"{question['idx']}-{j}", "completion": response, "answer": question["answer"]})
            verdicts.append(bool(verdict))
    assert len(rows) == 800
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert rlkit_main(["reward", "score", "math", "--input", str(tmp_path / "in.jsonl"), "--output", str(tmp_path / "out.jsonl")]) == 0
    scored = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["id"] for r in scored] == [r["id"] for r in rows]
    disagreements = [r["id"] for r, verdict in zip(scored, verdicts) if (r["reward"] == 1.0) != verdict]
    assert len(disagreements) <= 1, disagreements
    assert sum(r["reward"] for r in scored) == pytest.approx(sum(verdicts), abs=1)
