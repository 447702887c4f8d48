"""avg@k, pass@k (unbiased) and maj@k against hand-computed values."""

from __future__ import annotations

import math
import time

import pytest

from rlkit.eval.evaluate import math_equivalence
from rlkit.eval.scores import avg_at_k, maj_at_k, majority_index, mean_pass_at_k, pass_at_k, pass_ks

T, F = True, False


@pytest.mark.parametrize(
    "n, c, k, expected",
    [
        (4, 1, 2, 1 - 3 / 6),  # 1 - C(3,2)/C(4,2)
        (5, 2, 3, 1 - 1 / 10),  # 1 - C(3,3)/C(5,3)
        (8, 3, 1, 3 / 8),  # pass@1 is the fraction correct
        (10, 3, 4, 1 - 35 / 210),  # 1 - C(7,4)/C(10,4)
        (8, 0, 8, 0.0),
        (8, 1, 8, 1.0),  # pass@n: any correct
        (4, 2, 3, 1.0),  # fewer than k wrong samples: every draw of 3 holds a correct one
    ],
)
def test_pass_at_k_matches_the_binomial_formula(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)
    assert pass_at_k(n, c, k) == pytest.approx(1 - math.comb(n - c, k) / math.comb(n, k), abs=1e-12)


def test_pass_at_k_rejects_impossible_counts():
    with pytest.raises(ValueError, match="0 <= c <= n"):
        pass_at_k(3, 4, 1)
    with pytest.raises(ValueError, match="1 <= k <= n"):
        pass_at_k(3, 1, 4)


VERDICTS = [[T, F, F, F], [F, F, F, F], [T, T, F, F]]


def test_avg_and_mean_pass_at_k_over_problems():
    assert avg_at_k(VERDICTS) == pytest.approx((1 / 4 + 0 + 2 / 4) / 3)
    # per problem pass@2: 1 - C(3,2)/C(4,2) = 1/2; 0; 1 - C(2,2)/C(4,2) = 5/6
    assert mean_pass_at_k(VERDICTS, 2) == pytest.approx((1 / 2 + 0 + 5 / 6) / 3)
    assert mean_pass_at_k(VERDICTS, 4) == pytest.approx(2 / 3)
    assert mean_pass_at_k(VERDICTS, 1) == pytest.approx(avg_at_k(VERDICTS))


def test_greedy_accuracy_is_avg_at_1():
    assert avg_at_k([[T], [F], [T], [T]]) == 0.75


def test_maj_at_k_by_hand():
    answers = [
        ["2", "3", "3", None],  # '3' wins 2 to 1 and is wrong
        ["1", "1", "2", "2"],  # a tie: the class sampled first ('1') wins, and it is wrong
        [None, None, None, None],  # nobody answered: wrong
        ["x", "y", "x", "z"],  # 'x' wins and is right
        ["7", "7 ", " 7", "8"],  # spaces do not split a class
    ]
    verdicts = [[T, F, F, F], [F, F, T, T], [F, F, F, F], [T, F, T, F], [T, T, T, F]]
    assert maj_at_k(answers, verdicts) == pytest.approx(2 / 5)


def test_majority_tie_rule_picks_the_earliest_class():
    assert majority_index(["b", "a", "a", "b"]) == 0
    assert majority_index(["b", "a", "a", "c"]) == 1
    assert majority_index([None, "c", None]) == 1
    assert majority_index([None, None]) is None


def test_maj_at_k_with_math_equivalence_groups_equal_numbers():
    answers = [["3", "1/2", "0.5", "\\frac{1}{2}"]]
    verdicts = [[F, T, T, T]]
    assert maj_at_k(answers, verdicts) == 0.0  # as strings: four singletons, the tie goes to '3'
    assert maj_at_k(answers, verdicts, math_equivalence()) == 1.0  # as numbers: 1/2 wins 3 to 1


def test_math_equivalence_gives_up_on_a_pathological_answer_in_time():
    equivalent = math_equivalence(timeout=1)
    started = time.perf_counter()
    assert not equivalent("(x+1)^{100000}", "4")  # sympy would expand this for minutes
    assert time.perf_counter() - started < 5
    assert equivalent("0.5", "\\frac{1}{2}")  # and the next comparison is fine


def test_maj_at_k_checks_lengths():
    with pytest.raises(ValueError, match="2 answer lists but 1 verdict lists"):
        maj_at_k([["1"], ["2"]], [[T]])


def test_reported_pass_ks():
    assert pass_ks(1) == [1]
    assert pass_ks(8) == [1, 2, 4, 8]
    assert pass_ks(6) == [1, 2, 4, 6]
