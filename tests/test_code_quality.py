"""`code_quality` (REAL): Bandit finds security defects, ruff maintainability defects; combined with unit tests."""

from __future__ import annotations

import pytest

from rlkit.rewards.code.code_quality import (
    analysed_code,
    code_quality_reward,
    maintainability_findings,
    quality_scores,
    security_findings,
)

SQL_BY_FORMATTING = '''
import sqlite3


def find_user(db: sqlite3.Connection, name: str) -> list:
    return db.execute("SELECT * FROM users WHERE name = '%s'" % name).fetchall()
'''
SQL_BY_FSTRING = '''
def find_user(db, name: str) -> list:
    query = f"SELECT id FROM users WHERE name = '{name}'"
    return db.execute(query).fetchall()
'''
PICKLE_OF_INPUT = '''
import pickle


def load(blob: bytes) -> object:
    return pickle.loads(blob)
'''
CLEAN_TYPED = '''
import json
import sqlite3


def find_user(db: sqlite3.Connection, name: str) -> list:
    return db.execute("SELECT * FROM users WHERE name = ?", (name,)).fetchall()


def load(blob: bytes) -> object:
    return json.loads(blob)
'''
SHELL = '''
import os
import subprocess


def run(cmd: str) -> None:
    subprocess.call(cmd, shell=True)
    os.system("ls " + cmd)
'''


def ids(findings: list[dict]) -> set[str]:
    return {f["id"] for f in findings}


def test_flags_sql_built_by_formatting():
    assert "B608" in ids(security_findings(SQL_BY_FORMATTING))
    assert "B608" in ids(security_findings(SQL_BY_FSTRING))


def test_flags_pickle_loads_of_input():
    assert "B301" in ids(security_findings(PICKLE_OF_INPUT))


def test_flags_shell_calls():
    assert {"B602", "B605"} <= ids(security_findings(SHELL))


def test_passes_clean_typed_code():
    assert security_findings(CLEAN_TYPED) == []
    assert maintainability_findings(CLEAN_TYPED) == []
    assert quality_scores(CLEAN_TYPED)[:2] == (1.0, 1.0)


def test_flags_missing_annotations_complexity_and_bare_except():
    untyped = "def f(a, b):\n    try:\n        return a + b\n    except:\n        return None\n"
    assert {"ANN001", "ANN201", "E722"} <= ids(maintainability_findings(untyped))
    branches = "".join(f"    if x == {i}:\n        return {i}\n" for i in range(12))
    complex_code = f"def g(x: int) -> int:\n{branches}    return -1\n"
    assert "C901" in ids(maintainability_findings(complex_code))
    assert "C901" not in ids(maintainability_findings(complex_code, max_complexity=20))


def test_suppression_comments_do_not_hide_defects():
    hidden = "import pickle  # nosec\n\n\ndef load(blob):  # noqa\n    return pickle.loads(blob)  # nosec B301\n"
    assert "B301" in ids(security_findings(hidden))
    assert {"ANN001", "ANN201"} <= ids(maintainability_findings(hidden))


def test_unparsable_code_has_every_defect():
    security, maintainability, info = quality_scores("def broken(:\n")
    assert (security, maintainability) == (0.0, 0.0) and "syntax_error" in info


ADD_SAMPLE = {"tests": ["assert add(2, 3) == 5"]}
CLEAN_ADD = "def add(a: int, b: int) -> int:\n    return a + b\n"
INSECURE_ADD = "def add(a: int, b: int) -> int:\n    return eval(str(a) + '+' + str(b))\n"
UNTYPED_ADD = "def add(a, b):\n    return a + b\n"


@pytest.mark.sandbox
def test_reward_orders_clean_above_insecure_and_untyped_for_equal_test_results():
    clean, insecure, untyped = (code_quality_reward(f"```python\n{c}```", ADD_SAMPLE) for c in (CLEAN_ADD, INSECURE_ADD, UNTYPED_ADD))
    assert clean.info["tests"] == insecure.info["tests"] == untyped.info["tests"] == 1.0
    assert clean.score == 1.0
    assert insecure.score == pytest.approx(0.5 + 0.25 * 0 + 0.25 * 1.0) and "B307" in str(insecure.info["security_findings"])
    assert untyped.score == pytest.approx(0.5 + 0.25 * 1.0 + 0.25 / 4)  # ANN001 x2 + ANN201: 1 / (1 + 3)
    assert clean.score > insecure.score and clean.score > untyped.score


@pytest.mark.sandbox
def test_weights_are_configurable_and_quality_is_gated_on_tests():
    result = code_quality_reward(INSECURE_ADD, ADD_SAMPLE, test_weight=0.0, security_weight=1.0, maintainability_weight=0.0)
    assert result.score == 0.0
    wrong = "def add(a: int, b: int) -> int:\n    return 0\n"
    assert code_quality_reward(wrong, ADD_SAMPLE).score == 0.0  # clean but wrong: no quality credit
    assert code_quality_reward(wrong, ADD_SAMPLE, gate_on_tests=False).score == pytest.approx(0.5)
    with pytest.raises(ValueError, match="weights"):
        code_quality_reward(CLEAN_ADD, ADD_SAMPLE, test_weight=0.0, security_weight=0.0, maintainability_weight=0.0)


def test_analysis_only_needs_no_tests():
    result = code_quality_reward(PICKLE_OF_INPUT, {"id": "x"}, test_weight=0.0, gate_on_tests=False)
    assert result.info["security"] == 0.0 and result.score == pytest.approx(0.5)  # maintainability 1, security 0


def test_a_standalone_answer_is_analysed_alone_and_a_body_with_its_prompt():
    prompt = "def add(a, b):\n    \"\"\"Add.\"\"\"\n"
    whole = "```python\ndef add(a: int, b: int) -> int:\n    return a + b\n```"
    assert analysed_code(whole, prompt + "def add(a: int, b: int) -> int:\n    return a + b\n").startswith("def add(a: int")
    body = "    return a + b\n"
    assert analysed_code(body, prompt + body) == prompt + body  # an indented body does not parse alone
