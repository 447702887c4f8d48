"""`math`: 1.0 when the completion's final answer equals the gold answer (math-verify), else 0.0.

The final answer is the last \\boxed{} in the text after the last </think> (the whole text when there
is no </think>; an unclosed <think> means no answer yet). The gold answer comes from whichever field
the dataset has (see `gold_answer`).

Time limits: a parse or a comparison is stopped after `timeout` seconds by a SIGALRM timer, which
works only in a process's main thread. The reward sets the timer when it runs in a main thread (the
pool's worker processes, or in-process scoring called from the main thread) and raises RewardTimeout
when it fires, so the pool counts a timeout. The timer is ours, not math-verify's one-shot alarm: it
fires again every REPEAT_S until the work stops, because sympy runs weakref callbacks and __del__
methods, and an exception raised inside one of those is printed and dropped (CI once saw a 1 s limit
run for 946 s that way). Called from another thread the reward runs without a limit; work stuck inside
C code (huge integer powers) is not interrupted by a signal either: only the pool's worker processes
(reward.workers > 0) can stop those.

    >>> math_reward("<think>maybe 3?</think> so \\\\boxed{\\\\frac{1}{2}}", {"answer": "0.5"}).score
    1.0
"""

from __future__ import annotations

import ast
import contextlib
import functools
import logging
import re
import signal
import threading
from collections.abc import Iterator
from typing import Any

from math_verify import parse, verify
from math_verify.errors import TimeoutException

from rlkit.errors import DataError
from rlkit.rewards.base import RewardResult, RewardTimeout

THINK_START, THINK_END = "<think>", "</think>"
MAX_ANSWER_CHARS = 4096  # a longer "answer" is a runaway generation, not worth a parse
REPEAT_S = 0.25  # after the first alarm, fire again this often until the timed work has stopped
_DELIMITERS = re.compile(r"(?<!\\)\$|\\\(|\\\)|\\\[|\\\]")  # $ (not \$ = dollar sign), \( \), \[ \]


class MissingGoldAnswer(KeyError):
    """A sample without any field the gold answer can be read from."""

    needs = "a gold answer: a field 'answer', 'final_answer' or 'reward_model.ground_truth', or a 'solution' with a \\boxed{}"

    def __str__(self) -> str:  # KeyError would print the message in quotes
        return str(self.args[0])


def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} (or \\fbox{...}) in text, with balanced braces; also `\\boxed 5`."""
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if start < 0:
        return None
    rest = start + (len("\\boxed") if text.startswith("\\boxed", start) else len("\\fbox"))
    if text.startswith(" ", rest):  # `\boxed 42`: the argument is the next token
        token = text[rest:].split(maxsplit=1)
        return token[0].rstrip(".$") if token else None
    if not text.startswith("{", rest):
        return None
    depth = 0
    for i in range(rest, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[rest + 1 : i]
    return None  # unbalanced: the generation stopped inside the box


def answer_part(completion: str) -> str | None:
    """The text that may hold the final answer: after the last </think>; None while a <think> is open."""
    if THINK_END in completion:
        return completion.rsplit(THINK_END, 1)[1]
    if THINK_START in completion:
        return None  # R1-style draft that never finished thinking: its \boxed{} are drafts
    return completion


def gold_answer(sample: dict[str, Any]) -> str:
    """The gold answer from whichever field the dataset has, in this order:

    `answer` (MATH-500, AIME, AMC; GSM8K's solution text ending `#### 18` gives `18`),
    `final_answer` (OlympiadBench: a list, or a list written as a string; several items are joined
    with ', '), verl's `reward_model.ground_truth`, else the last \\boxed{} of `solution` (Minerva).
    Raises MissingGoldAnswer (a KeyError) when the sample has none of them.
    """
    answer = sample.get("answer")
    if answer not in (None, ""):
        text = str(answer)
        return text.rsplit("####", 1)[1].strip() if "####" in text else text.strip()
    final = sample.get("final_answer")
    if final not in (None, "", []):
        if isinstance(final, str) and final.lstrip().startswith("["):
            try:
                final = ast.literal_eval(final)
            except (ValueError, SyntaxError):
                pass  # not a list after all: use the text as written
        if isinstance(final, (list, tuple)):
            return ", ".join(str(item).strip() for item in final)
        return str(final).strip()
    reward_model = sample.get("reward_model")
    if isinstance(reward_model, dict) and reward_model.get("ground_truth") not in (None, ""):
        return str(reward_model["ground_truth"]).strip()
    solution = sample.get("solution")
    if isinstance(solution, str) and (boxed := last_boxed(solution)):
        return boxed
    raise MissingGoldAnswer(
        "no gold answer: expected a field 'answer', 'final_answer' or 'reward_model.ground_truth', "
        "or a 'solution' with a \\boxed{} answer"
    )


def gold_answers(rows: list[dict[str, Any]], source: str) -> list[str]:
    """Every row's gold answer; a row without one is a DataError naming the file and the row (1-based)."""
    answers = []
    for index, row in enumerate(rows, 1):
        try:
            answers.append(gold_answer(row))
        except MissingGoldAnswer as err:
            raise DataError(f"{source} row {index}: {err} (fields present: {', '.join(sorted(row)) or 'none'})") from None
    return answers


def usable_limit(timeout: float | None) -> float | None:
    """The time limit to enforce: none where signals cannot be delivered (outside the main thread)."""
    if timeout is None or threading.current_thread() is not threading.main_thread():
        return None
    return float(timeout)


class _DropDisabledTimeoutWarning(logging.Filter):
    """math-verify warns once that its own timeout is off; here that is on purpose (see `time_limit`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Timeout is disabled")


for _name in ("math_verify.parser", "math_verify.grader"):
    logging.getLogger(_name).addFilter(_DropDisabledTimeoutWarning())


@contextlib.contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Raise TimeoutException in the main thread after `seconds`, and every REPEAT_S after that until
    the block ends: one alarm is not enough, since an exception raised inside a weakref callback or a
    __del__ that sympy happens to be running is printed and dropped."""
    if seconds is None:
        yield
        return

    def fire(signum: int, frame: Any) -> None:
        raise TimeoutException(f"over {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds, REPEAT_S)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _parse(latex: str, timeout: float | None) -> list[Any]:
    try:
        with time_limit(timeout):
            return parse(latex, parsing_timeout=None, raise_on_error=True)
    except TimeoutException:
        raise RewardTimeout(f"math-verify parsing took over {timeout:g} s") from None
    except Exception:  # noqa: BLE001 - malformed LaTeX is an unparseable answer, not a reward failure
        return []


@functools.lru_cache(maxsize=8192)
def parse_gold(gold: str, timeout: float | None = None) -> tuple[Any, ...]:
    """Parse a gold answer once (a batch shares golds): math delimiters are dropped and the whole
    text read as one formula, so OlympiadBench's '$69$,$84$' is the set {69, 84}, not just 84."""
    text = " ".join(_DELIMITERS.sub(" ", gold).split())
    return tuple(_parse("$" + text + "$", timeout))


def parse_answer(answer: str, timeout: float | None = None) -> list[Any]:
    """math-verify's parse of a \\boxed{} answer's content ([] when unparseable); RewardTimeout past `timeout`."""
    return _parse("\\boxed{" + answer + "}", timeout)


def answers_equal(gold: tuple[Any, ...] | list[Any], pred: list[Any], timeout: float | None = None) -> bool:
    """math-verify's any-pair comparison, one pair at a time so a timed-out pair is told apart;
    RewardTimeout when no pair was shown equal and one ran past `timeout`."""
    timed_out = False
    for g in gold:
        for p in pred:
            try:
                with time_limit(timeout):
                    equal = verify(g, p, timeout_seconds=None, raise_on_error=True)
                if equal:
                    return True
            except TimeoutException:
                timed_out = True
            except Exception:  # noqa: BLE001 - sympy failing to compare means "not shown equal"
                continue
    if timed_out:
        raise RewardTimeout(f"math-verify comparison took over {timeout:g} s")
    return False


def math_reward(completion: str, sample: dict[str, Any], timeout: float | None = 3) -> RewardResult:
    """1.0 if the last \\boxed{} answer (after </think>) equals the gold answer, else 0.0.

    `timeout`: seconds math-verify may spend on each parse and each comparison (None: no limit).
    """
    part = answer_part(completion)
    if part is None:
        return RewardResult(0.0, {"reason": "unfinished <think>: no answer after it"})
    boxed = last_boxed(part)
    if boxed is None:
        return RewardResult(0.0, {"reason": "no \\boxed{} answer"})
    gold = gold_answer(sample)
    if not boxed.strip() or len(boxed) > MAX_ANSWER_CHARS:
        return RewardResult(0.0, {"reason": "empty or overlong \\boxed{} answer", "gold": gold})
    parsed, correct = verdict(gold, boxed, usable_limit(timeout))
    if not parsed:
        return RewardResult(0.0, {"reason": "answer not parseable", "pred": boxed, "gold": gold})
    return RewardResult(1.0 if correct else 0.0, {"pred": boxed, "gold": gold})


@functools.lru_cache(maxsize=65536)
def verdict(gold: str, answer: str, timeout: float | None = None) -> tuple[bool, bool]:
    """(answer parseable, answer equals gold). Cached: a group of samples of one prompt often
    repeats an answer, and a repeated answer need not be parsed and compared again."""
    gold_parsed = parse_gold(gold, timeout)
    if not gold_parsed:
        raise ValueError(f"math-verify cannot parse the gold answer {gold!r}")
    pred_parsed = parse_answer(answer, timeout)
    if not pred_parsed:
        return False, False
    return True, answers_equal(gold_parsed, pred_parsed, timeout)


math_reward.check_sample = gold_answer  # type: ignore[attr-defined]  # run before training: rlkit.scoring.registry.check_samples
