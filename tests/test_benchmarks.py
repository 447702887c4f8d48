"""Benchmark name resolution, sampling defaults, data-dir errors and prompt templates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rlkit.config import load_config
from rlkit.data import load_benchmark
from rlkit.errors import ConfigError, DataError
from rlkit.eval.benchmarks import (
    KNOWN,
    check_gold_answers,
    default_data_dir,
    resolve_benchmark,
    split_specs,
)
from rlkit.shared_data import ENV as SHARED_DATA_ENV
from rlkit.templates import render_prompt


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    for name in KNOWN:
        write_jsonl(tmp_path / f"{name}.jsonl", [{"problem": f"{name} problem", "answer": "1"}])
    return tmp_path


def test_known_names_resolve_to_files_with_paper_sampling(data_dir: Path):
    math500 = resolve_benchmark("math500", data_dir)
    assert (math500.source, math500.n, math500.temperature) == (str(data_dir / "math500.jsonl"), 1, 0.0)
    for name in ("aime24", "aime25", "amc23"):  # avg@8 at temperature 0.6, as the 1-shot RLVR paper reports
        bench = resolve_benchmark(name, data_dir)
        assert (bench.n, bench.temperature) == (8, 0.6)
    for name in ("minerva_math", "olympiadbench", "gsm8k"):
        assert resolve_benchmark(name, data_dir).n == 1


def test_unknown_name_lists_the_known_ones(data_dir: Path):
    with pytest.raises(ConfigError) as err:
        resolve_benchmark("math5000", data_dir)
    message = str(err.value)
    assert "unknown benchmark 'math5000'" in message
    for name in KNOWN:
        assert name in message


def test_named_benchmark_without_a_data_dir_says_how_to_give_one():
    with pytest.raises(ConfigError, match=f"{SHARED_DATA_ENV}=DIR.*--data-dir DIR"):
        resolve_benchmark("aime24", None)


def test_missing_data_dir_and_missing_file(tmp_path: Path):
    with pytest.raises(ConfigError, match=f"data directory not found: {tmp_path / 'nope'}"):
        resolve_benchmark("gsm8k", tmp_path / "nope")
    with pytest.raises(ConfigError, match=f"benchmark 'gsm8k': file not found: {tmp_path / 'gsm8k.jsonl'}"):
        resolve_benchmark("gsm8k", tmp_path)


def test_paths_and_hub_ids(tmp_path: Path):
    own = resolve_benchmark(str(write_jsonl(tmp_path / "mine.jsonl", [{"question": "q", "answer": "2"}])), None)
    assert (own.name, own.n, own.temperature) == ("mine", 1, 0.0)
    (tmp_path / "copy").mkdir()
    copy = resolve_benchmark(str(write_jsonl(tmp_path / "copy" / "aime24.jsonl", [{"problem": "p", "answer": "3"}])), None)
    assert (copy.name, copy.n, copy.temperature) == ("aime24", 8, 0.6)  # named like a known benchmark
    with pytest.raises(ConfigError, match="benchmark file not found"):
        resolve_benchmark(str(tmp_path / "absent.jsonl"), None)
    hub = resolve_benchmark("hf:HuggingFaceH4/MATH-500", None)
    assert (hub.name, hub.source) == ("math-500", "hf:HuggingFaceH4/MATH-500")
    assert resolve_benchmark("tiny:arithmetic", None).name == "tiny_arithmetic"


def test_default_data_dir_is_math_in_the_shared_data_folder(monkeypatch, tmp_path: Path):
    monkeypatch.setenv(SHARED_DATA_ENV, str(tmp_path))
    assert default_data_dir() == tmp_path.resolve() / "math"
    (tmp_path / "other").mkdir()
    assert default_data_dir(tmp_path / "other") == (tmp_path / "other").resolve() / "math"  # --shared-data beats the variable


def test_split_specs():
    assert split_specs(" math500, aime24,,gsm8k ") == ["math500", "aime24", "gsm8k"]


def test_load_with_templates_and_limit(data_dir: Path):
    bench = resolve_benchmark("gsm8k", data_dir)
    (sample,) = load_benchmark(bench, "auto", limit=1)
    assert sample["prompt"] == render_prompt("gsm8k problem", "qwen_boxed")
    (sample,) = load_benchmark(bench, "qwen25_math_cot")
    assert [m["role"] for m in sample["prompt"]] == ["system", "user"]
    assert "\\boxed{}" in sample["prompt"][0]["content"] and sample["prompt"][1]["content"] == "gsm8k problem"
    with pytest.raises(ConfigError, match="unknown template 'qwen'"):
        load_benchmark(bench, "qwen")


def test_rows_without_a_gold_answer_are_named(tmp_path: Path):
    path = write_jsonl(tmp_path / "bad.jsonl", [{"problem": "p", "answer": "1"}, {"problem": "q"}])
    bench = resolve_benchmark(str(path), None)
    with pytest.raises(DataError, match=r"benchmark 'bad' .* row 2"):
        check_gold_answers(bench, load_benchmark(bench))


def test_recipe_with_an_unknown_eval_benchmark_fails_at_load(tmp_path: Path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"eval: {{benchmarks: [aime24, aime2024], data_dir: {tmp_path}}}\nstages: [{{type: rl}}]\n")
    write_jsonl(tmp_path / "aime24.jsonl", [{"problem": "p", "answer": "1"}])
    with pytest.raises(ConfigError, match=r"key 'eval\.benchmarks': unknown benchmark 'aime2024'"):
        load_config(recipe)
    assert load_config(recipe, ["eval.benchmarks=[aime24]"]).eval.benchmarks == ["aime24"]
