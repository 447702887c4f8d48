"""`format` (R1 shape) and `length` (DAPO soft overlong punishment) against hand-computed values."""

import pytest

from rlkit.rewards.format import format_reward
from rlkit.rewards.length import length_reward, overlong_penalty


@pytest.mark.parametrize(
    "length, expected",
    [(0, 0.0), (80, 0.0), (81, -0.05), (90, -0.5), (99, -0.95), (100, -1.0), (101, -1.0), (10_000, -1.0)],
)
def test_overlong_penalty(length: int, expected: float) -> None:
    # max_len 100, cache 20: free up to 80, then (80 - L) / 20, then -1 past 100
    assert overlong_penalty(length, max_len=100, cache_len=20) == pytest.approx(expected)


def test_length_counts_characters_or_tokens() -> None:
    assert length_reward("x" * 90, {}, max_len=100, cache_len=20).score == pytest.approx(-0.5)
    assert length_reward("x" * 90, {}, max_len=100, cache_len=20).info == {"length": 90, "unit": "chars"}
    tokens = length_reward("12+7=19", {}, max_len=10, cache_len=4, tokenizer="tiny")  # the tiny world: one token a character
    assert tokens.info == {"length": 7, "unit": "tokens"} and tokens.score == pytest.approx(-0.25)


@pytest.mark.parametrize(
    "completion, kwargs, expected, reason",
    [
        ("<think>\n12+7=19\n</think>\n\\boxed{19}", {}, 1.0, "ok"),
        ("  <think>r</think> answer  ", {}, 1.0, "ok"),
        ("\\boxed{19}", {}, 0.0, "start with one <think>, found 0"),
        ("I think <think>r</think> a", {}, 0.0, "start with one <think>"),
        ("<think>a<think>b</think> c", {}, 0.0, "found 2"),
        ("<think>a</think> b </think> c", {}, 0.0, "one </think>, found 2"),
        ("<think>r", {}, 0.0, "one </think>, found 0"),
        ("<think>  </think> answer", {}, 0.0, "empty reasoning"),
        ("<think>r</think>   ", {}, 0.0, "no answer after </think>"),
        ("<think>r</think> 19", {"require_boxed": True}, 0.0, "no \\boxed{}"),
        ("<think>r</think> \\boxed{19}", {"require_boxed": True}, 1.0, "ok"),
        ("r</think> 19", {"think_in_prompt": True}, 1.0, "ok"),  # the chat template opened <think>
        ("<think>r</think> 19", {"think_in_prompt": True}, 0.0, "already opened"),
    ],
)
def test_format(completion: str, kwargs: dict, expected: float, reason: str) -> None:
    result = format_reward(completion, {}, **kwargs)
    assert result.score == expected and reason in result.info["reason"]
