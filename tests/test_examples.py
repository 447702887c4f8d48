"""The programs in examples/ run as their docstrings say (custom_reward.py: tests/test_custom_reward.py)."""

import runpy
from pathlib import Path

import pytest

from rlkit.config import load_config
from rlkit.data import load_samples
from rlkit.errors import ConfigError
from rlkit.scoring.registry import check_samples

REPO = Path(__file__).resolve().parents[1]


def recipe(tmp_path: Path, source: str) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(f"stages:\n  - type: rl\n    data: {{source: '{source}', template: qwen_boxed}}\n")
    return path


def test_custom_dataset_loader_feeds_a_stage(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)  # the recipe names the loader relative to the directory rlkit runs in
    config = load_config(recipe(tmp_path, "examples/custom_dataset.py:word_problems"))
    stage = config.stages[0]
    samples = load_samples(stage.data)
    assert [s["id"] for s in samples] == ["wp-1", "wp-2", "wp-3", "wp-4"]  # the train split
    assert samples[1]["answer"] == "180" and "How far does it go in 3 hours?" in samples[1]["prompt"][-1]["content"]
    check_samples(config.rewards, samples, stage.data.source)  # the math reward finds every gold answer
    test_rows = load_samples(stage.data.model_copy(update={"split": "test", "ids": ["wp-6"]}))
    assert [s["answer"] for s in test_rows] == ["10"]


def test_a_missing_loader_function_fails_when_the_recipe_loads(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    with pytest.raises(ConfigError, match=r"key 'rl\.data\.source': loader: examples/custom_dataset\.py has no function 'word_problem'"):
        load_config(recipe(tmp_path, "examples/custom_dataset.py:word_problem"))


def test_train_from_python_runs_a_recipe_and_an_own_loop(tmp_path):
    example = runpy.run_path(str(REPO / "examples" / "train_from_python.py"))
    summary = example["run_whole_recipe"](tmp_path / "run")
    assert list(summary["stages"]) == ["sft", "rl"] and (tmp_path / "run" / "final" / "config.json").is_file()
    rewards = example["own_rl_loop"](steps=2)
    assert 1 <= len(rewards) <= 2 and all(0.0 <= r <= 1.0 for r in rewards)
