"""`rlkit reward score` and `rlkit reward list`: rows in, rows with reward and info out, a summary line,
and one-line errors (exit 2) that name the line, the field and the reward."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rlkit.cli import main

CUSTOM = '''
import time

def needs_difficulty(completion, sample):
    return float(sample["difficulty"]) * len(completion)

def slow_on_hang(completion, sample):
    if "hang" in completion:
        time.sleep(10**6)
    return 1.0
'''


def write_rows(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


@pytest.fixture
def custom(tmp_path: Path) -> str:
    (tmp_path / "custom.py").write_text(CUSTOM)
    return str(tmp_path / "custom.py")


def test_scores_rows_and_writes_them_back(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rows = [
        {"id": "a", "completion": "<think>2+2</think> \\boxed{4}", "answer": "4", "extra": [1, 2]},
        {"id": "b", "completion": "\\boxed{5}", "answer": "4"},
        {"id": "c", "completion": "no answer", "answer": "4"},
    ]
    source = write_rows(tmp_path / "in.jsonl", rows[:1] + [""] + rows[1:])  # a blank line is skipped
    assert main(["reward", "score", "math", "--input", str(source), "--output", str(tmp_path / "out.jsonl")]) == 0
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["reward"] for r in out] == [1.0, 0.0, 0.0]
    assert out[0] == {**rows[0], "reward": 1.0, "info": {"pred": "4", "gold": "4"}}
    assert out[2]["info"] == {"reason": "no \\boxed{} answer"}
    summary = capsys.readouterr().out
    assert "scored 3 rows with 'math': mean reward 0.3333, errors 0, timeouts 0" in summary and "rows/s" in summary


def test_without_output_shows_the_first_rows(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    source = write_rows(tmp_path / "in.jsonl", [{"completion": "x" * 9}] * 7)
    assert main(["reward", "score", "length", "--input", str(source), "--arg", "max_len=10", "--arg", "cache_len=4"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == 'line 1: reward -0.75  info {"length": 9, "unit": "chars"}'
    assert len([line for line in lines if line.startswith("line ")]) == 5
    assert lines[-1].startswith("scored 7 rows with 'length': mean reward -0.7500")


def test_format_reward(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    source = write_rows(tmp_path / "in.jsonl", [{"completion": "<think>\nok\n</think>\n\\boxed{1}"}, {"completion": "\\boxed{1}"}])
    assert main(["reward", "score", "format", "--input", str(source)]) == 0
    assert "mean reward 0.5000" in capsys.readouterr().out


@pytest.mark.parametrize(
    "lines, message",
    [
        (['{"completion": "a"}', '{"completion": "b", oops}'], "in.jsonl line 2: not valid JSON"),
        (['{"completion": "a"}', "[1, 2]"], "in.jsonl line 2: expected a JSON object, got list"),
        (['{"answer": "1"}'], "in.jsonl line 1: expected a 'completion' string (the text to score), no 'completion' field"),
        (['{"completion": 3}'], "line 1: expected a 'completion' string (the text to score), 'completion' is int"),
        (['{"completion": "\\\\boxed{1}", "answer": "1"}', '{"completion": "\\\\boxed{1}", "question": "q"}'],
         "in.jsonl line 2: reward 'math' needs a gold answer: a field 'answer', 'final_answer'"),
    ],
)
def test_user_errors_name_the_line(tmp_path: Path, capsys: pytest.CaptureFixture, lines: list, message: str) -> None:
    source = write_rows(tmp_path / "in.jsonl", lines)
    assert main(["reward", "score", "math", "--input", str(source)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("rlkit: error:") == 1


def test_missing_field_names_the_field_and_the_reward(tmp_path: Path, custom: str, capsys: pytest.CaptureFixture) -> None:
    source = write_rows(tmp_path / "in.jsonl", [{"completion": "ab", "difficulty": 2}, {"completion": "ab", "level": 3}])
    assert main(["reward", "score", f"{custom}:needs_difficulty", "--input", str(source)]) == 2
    err = capsys.readouterr().err
    assert f"line 2: reward '{custom}:needs_difficulty' needs field 'difficulty', which the row does not have (its fields: completion, level)" in err


def test_invalid_utf8_names_the_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    source = tmp_path / "in.jsonl"
    source.write_bytes(b'{"completion": "ok"}\n{"completion": "\xff"}\n')
    assert main(["reward", "score", "format", "--input", str(source)]) == 2
    assert "in.jsonl line 2: not valid UTF-8 (byte 0xff at column 17)" in capsys.readouterr().err


def test_escaped_invalid_unicode_completion_is_scored(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    source = write_rows(tmp_path / "in.jsonl", ['{"completion": "\\ud800 \\\\boxed{4}", "answer": "4"}'])
    assert main(["reward", "score", "math", "--input", str(source), "--output", str(tmp_path / "out.jsonl")]) == 0
    assert json.loads((tmp_path / "out.jsonl").read_text())["reward"] == 1.0


@pytest.mark.parametrize(
    "argv, message",
    [
        (["nope"], "unknown reward 'nope'"),
        (["length", "--arg", "max_len"], "bad --arg 'max_len': expected NAME=VALUE"),
        (["length", "--arg", "max_length=3"], "unexpected keyword argument 'max_length'"),
        (["math", "--workers", "-1"], "--workers must be >= 0"),
    ],
)
def test_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture, argv: list, message: str) -> None:
    source = write_rows(tmp_path / "in.jsonl", [{"completion": "a", "answer": "1"}])
    assert main(["reward", "score", *argv, "--input", str(source)]) == 2
    assert message in capsys.readouterr().err


def test_missing_input_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["reward", "score", "math", "--input", str(tmp_path / "nope.jsonl")]) == 2
    assert "input file not found" in capsys.readouterr().err


def test_a_hanging_reward_times_out_in_a_worker(tmp_path: Path, custom: str) -> None:
    """Through the real console entry point, as a user runs it."""
    source = write_rows(tmp_path / "in.jsonl", [{"completion": "fine"}, {"completion": "hang"}, {"completion": "fine"}])
    out = subprocess.run(
        [sys.executable, "-m", "rlkit.cli", "reward", "score", f"{custom}:slow_on_hang", "--input", str(source), "--workers", "1", "--timeout", "1"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "scored 3 rows" in out.stdout and "mean reward 0.6667, errors 0, timeouts 1" in out.stdout
    assert "reward slow_on_hang timed out on sample line-2" in out.stderr


def test_list_shows_the_built_ins(capsys: pytest.CaptureFixture) -> None:
    assert main(["reward", "list"]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert {"math", "format", "length"} <= set(names)
