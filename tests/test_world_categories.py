"""Tiny-world categories, the category mix and the fallible teacher."""

import hashlib
import json
import random
from collections import Counter

import pytest

from rlkit.config import DataConfig
from rlkit.data import load_samples
from rlkit.errors import ConfigError
from rlkit.rewards.math import math_reward
from rlkit.world.arithmetic import arithmetic_samples
from rlkit.world.categories import CATEGORIES, parse_problem, problem_with_concepts
from rlkit.world.teacher import FallibleTeacher

ALL = dict.fromkeys(CATEGORIES, 1.0)


def _fingerprint(rows: list[dict]) -> str:
    fields = ("id", "problem", "answer", "solution")
    return hashlib.sha256(json.dumps([{f: r[f] for f in fields} for r in rows], sort_keys=True).encode()).hexdigest()


def test_default_mix_reproduces_the_world_before_categories_byte_for_byte():
    # sha256 of the rows arithmetic_samples returned before categories existed (commit f5c9b88): the quickstart's
    # SFT data, its held-out split and the 1-shot twin's unboxed traces are unchanged, so README numbers hold
    assert _fingerprint(arithmetic_samples("train", 4000)) == "176ea1040100e36d87b7d279d893312dbf01204c6423f4dc4f7745744d7699ac"
    assert _fingerprint(arithmetic_samples("test", 200)) == "6e254220dbdd5c61b6b66c376646bfda6eba77b0708112ef069fa2ee5e674d5b"
    unboxed = arithmetic_samples("train", 4000, unboxed_fraction=0.6)
    assert _fingerprint(unboxed) == "b7f6cc56feea3f7e43c132d77af5fa328125bca582f8b8832f53d8cb0e95bfba"
    assert {r["category"] for r in arithmetic_samples("train", 200)} == {"add2", "add3"}


@pytest.mark.parametrize("name", list(CATEGORIES))
def test_every_category_has_right_traces_and_honest_tags(name):
    rows = arithmetic_samples("train", 300, mix={name: 1.0})
    assert {r["category"] for r in rows} == {name}
    for row in rows:
        expr = row["problem"].removeprefix("Compute ").removesuffix(".")
        assert eval(expr) == int(row["answer"])  # noqa: S307 - our own generated arithmetic
        assert math_reward(row["solution"], row).score == 1.0
        assert row["difficulty"] == len(row["concepts"])
        category, operands = parse_problem(row["problem"])
        assert category.name == name
        if name == "sub":
            assert ("borrow" in row["concepts"]) == (operands[0] % 10 < operands[1] % 10)
        elif name != "mul1":
            assert ("carry-tens" in row["concepts"]) == (sum(n % 10 for n in operands) >= 10)
            assert ("three-operands" in row["concepts"]) == (name == "add3")


def test_subtraction_and_multiplication_traces_read_as_on_paper():
    assert arithmetic_samples("train", 1, mix={"sub": 1})[0]["solution"].count("\n") == 4
    sub, mul = CATEGORIES["sub"], CATEGORIES["mul1"]
    assert sub.columns([74, 38], lambda v: v) == (["14-8=6", "7-1-3=3"], 36)
    assert mul.columns([47, 8], lambda v: v) == (["7*8=56", "4*8+5=37"], 376)


def test_mix_weights_set_category_shares_and_bad_mixes_are_errors_naming_the_key():
    rows = arithmetic_samples("train", 3000, mix={"add2": 4.0, "sub": 1.0})
    share = Counter(r["category"] for r in rows)["sub"] / len(rows)
    assert abs(share - 0.2) < 0.03
    samples = load_samples(DataConfig(size=50, mix={"mul1": 1.0}))
    assert samples[0]["category"] == "mul1" and samples[0]["concepts"][0] == "multiplication"
    with pytest.raises(ValueError, match="unknown tiny-world categories"):
        DataConfig(mix={"div": 1.0})
    with pytest.raises(ValueError, match="at least one > 0"):
        DataConfig(mix={"add2": 0.0})
    with pytest.raises(ValueError, match=r"only .* distinct train problems"):
        arithmetic_samples("train", 1000, mix={"mul1": 1.0})  # 720 multiplications exist in all


def test_a_bad_mix_in_a_recipe_is_one_line_naming_the_key(tmp_path):
    from rlkit.config import load_config

    recipe = tmp_path / "r.yaml"
    recipe.write_text("stages:\n  - type: sft\n    data: {mix: {add2: 1, div: 2}}\n")
    with pytest.raises(ConfigError, match=r"key 'sft.data.mix': unknown tiny-world categories \['div'\]"):
        load_config(recipe)


def test_problem_writer_meets_a_concept_combination_or_says_none():
    rng = random.Random(0)
    operands = problem_with_concepts(rng, "add3", {"carry-tens", "carry-hundreds"})
    assert {"carry-tens", "carry-hundreds", "three-operands"} <= set(CATEGORIES["add3"].concepts(operands))
    assert problem_with_concepts(rng, "sub", {"carry-hundreds"}, tries=200) is None


def test_fallible_teacher_error_rate_matches_its_setting_and_grows_with_difficulty():
    teacher = FallibleTeacher(slip_rate=0.08, seed=1)
    rows = arithmetic_samples("train", 2000, mix=ALL)
    wrong, expected, by_difficulty = 0, 0.0, {}
    for row in rows:
        for sample in teacher.sample(row["problem"], 4):
            bad = math_reward(sample, row).score == 0.0
            wrong += bad
            stats = by_difficulty.setdefault(row["difficulty"], [0, 0])
            stats[0] += bad
            stats[1] += 1
        expected += 4 * teacher.error_rate(row["problem"])
    total = 4 * len(rows)
    stderr = (expected / total * (1 - expected / total) / total) ** 0.5
    assert abs(wrong / total - expected / total) < 4 * stderr  # 8,000 samples: the measured rate is the set one
    for d, (bad, count) in by_difficulty.items():
        p = 1 - (1 - 0.08 * d) ** 2
        assert abs(bad / count - p) < 4 * (p * (1 - p) / count) ** 0.5 + 1e-9, (d, bad / count, p)
    rates = [by_difficulty[d][0] / by_difficulty[d][1] for d in sorted(by_difficulty)]
    assert rates == sorted(rates) and rates[-1] > 2 * rates[0]


def test_fallible_teacher_samples_are_reproducible_and_differ_within_a_problem():
    teacher = FallibleTeacher(slip_rate=0.3, seed=0)
    problem = "Compute 74+77+83."
    first = teacher.sample(problem, 16)
    assert first == teacher.sample(problem, 16)
    assert teacher.sample(problem, 8, start=8) == first[8:]
    assert teacher.solve(f"<|im_start|>user\n{problem}<|im_end|>", 3) == first[3]  # the wording does not matter
    assert len(set(first)) > 2
    assert FallibleTeacher(slip_rate=0.0).sample(problem, 4) == [arithmetic_samples("train", 1)[0]["solution"]] * 4
    with pytest.raises(ValueError, match="no tiny-world expression"):
        teacher.solve("What is the capital of France?")
