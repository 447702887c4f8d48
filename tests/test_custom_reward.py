"""A tiny RL job with the README's custom reward: the recipe names examples/custom_reward.py:fn, a
reward worker process imports it, and every RL step logs its column next to the built-in math reward."""

import json
from pathlib import Path

import pytest

from rlkit.config import load_config
from rlkit.runner import run_recipe

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "custom_reward.py"

RECIPE = """
name: custom-reward-test
threads: 1
rollout: {{n: 2, max_new_tokens: 24}}
eval: {{limit: 4}}
reward: {{workers: 1, timeout: 30}}  # the user's file is imported again inside the worker process
rewards:
  - name: math
  - name: {example}:numeric_closeness
    weight: 0.5
    args: {{tolerance: 0.2}}
stages:
  - {{type: sft, steps: 2, lr: 1.0e-3, batch_size: 4}}
  - {{type: rl, steps: 2, lr: 1.0e-4, batch_size: 2}}
"""


def test_tiny_rl_run_logs_the_custom_reward(tmp_path: Path) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(RECIPE.format(example=EXAMPLE))
    config = load_config(recipe)
    run_recipe(config, tmp_path / "run")
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    rl = [r for r in records if r["stage"] == "rl"]
    assert [r["step"] for r in rl] == [1, 2]
    for record in rl:
        closeness, math = record["reward/numeric_closeness"], record["reward/math"]
        assert 0.0 <= closeness <= 1.0 and 0.0 <= math <= 1.0
        assert record["reward/mean"] == pytest.approx(math + 0.5 * closeness, abs=1e-6)
        assert record["reward/errors"] == 0 and record["reward/timeouts"] == 0

