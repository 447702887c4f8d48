"""Every file in ../shared/data/math loads, and every row's gold answer is read and parsed by math-verify."""

from pathlib import Path

import pytest

from rlkit.data import read_rows
from rlkit.rewards.math import gold_answers, parse_gold

# Golds math-verify keeps as text only (compared as strings): 'np.arcsin(10/13)', 'E_{1},E_{2}', ...
TEXT_ONLY = {"minerva_math.jsonl": 6, "olympiadbench.jsonl": 2}
ROWS = {
    "aime24.jsonl": 30,
    "aime25.jsonl": 30,
    "amc23.jsonl": 40,
    "gsm8k.jsonl": 1319,
    "math500.jsonl": 500,
    "minerva_math.jsonl": 272,
    "olympiadbench.jsonl": 675,
}


def test_the_seven_files_are_all_there(shared_data: Path) -> None:
    assert sorted(p.name for p in (shared_data / "math").glob("*.jsonl")) == sorted(ROWS)


@pytest.mark.parametrize("name", sorted(ROWS))
def test_gold_answers_parse(shared_data: Path, name: str) -> None:
    path = shared_data / "math" / name
    rows = read_rows(path)
    assert len(rows) == ROWS[name]
    golds = gold_answers(rows, str(path))  # a row without a gold answer raises DataError naming it
    unparseable = [(i + 1, gold) for i, gold in enumerate(golds) if not gold.strip() or not parse_gold(gold, 10)]
    assert unparseable == []
    text_only = [gold for gold in golds if all(isinstance(value, str) for value in parse_gold(gold, 10))]
    assert len(text_only) <= TEXT_ONLY.get(name, 0), text_only


def test_gold_fields_per_dataset(shared_data: Path) -> None:
    """Spot checks that each file's gold comes from the field it should."""
    math = shared_data / "math"
    assert gold_answers(read_rows(math / "gsm8k.jsonl")[:1], "gsm8k")[0] == "18"  # text after ####
    assert gold_answers(read_rows(math / "minerva_math.jsonl")[:1], "minerva")[0] == "1.6"  # last \boxed{} of solution
    olympiad = read_rows(math / "olympiadbench.jsonl")
    multi = next(row for row in olympiad if row["final_answer"] == ["$69$,$84$"])
    assert gold_answers([multi], "olympiadbench") == ["$69$,$84$"]
    assert set(parse_gold("$69$,$84$")[0]) == {69, 84}  # both answers, not only the last
