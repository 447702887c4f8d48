"""recipes/real_code.yaml resolves, and one RL step of the tiny world runs with the code rewards."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from rlkit.cli import main as cli_main
from rlkit.config import load_config
from rlkit.runner import run_recipe
from tests.conftest import SHARED_DATA

REPO = Path(__file__).resolve().parents[1]
HUMANEVAL = SHARED_DATA / "code" / "HumanEval.jsonl.gz"


@pytest.mark.shared_data
def test_real_code_recipe_dry_run(capsys):
    assert cli_main(["run", str(REPO / "recipes" / "real_code.yaml"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "name: code_quality" in out and "Qwen/Qwen2.5-Coder" in out and "HumanEval.jsonl.gz" in out
    config = load_config(REPO / "recipes" / "real_code.yaml")
    assert config.eval.reward == "unit_tests" and config.stages[0].data.template == "plain"


TINY_RECIPE = """
name: tiny-real-code
threads: 1
rollout: {{n: 2, max_new_tokens: 16}}
rewards:
  - name: unit_tests
  - name: code_quality
    weight: 0.5
reward: {{workers: 1, timeout: 30}}   # the sandbox runs from a reward worker process, as in a real run
eval: {{reward: unit_tests, limit: 2, data: {{source: {data}, template: plain, shuffle: false}}}}
stages:
  - {{type: rl, steps: 1, lr: 1.0e-4, batch_size: 2, data: {{source: {data}, template: plain}}}}
"""


@pytest.mark.sandbox
@pytest.mark.shared_data
def test_one_tiny_rl_step_with_the_code_rewards(tmp_path):
    with gzip.open(HUMANEVAL, "rt") as f:
        humaneval_row = json.loads(f.readline())
    rows = [
        {"id": "add", "prompt": "Write add(a, b) returning a + b.", "tests": ["assert add(1, 2) == 3", "assert add(0, 0) == 0"]},
        {key: humaneval_row[key] for key in ("task_id", "prompt", "test", "entry_point")},
    ]
    data = tmp_path / "code.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(TINY_RECIPE.format(data=data))
    summary = run_recipe(load_config(recipe), tmp_path / "run")
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    rl = [r for r in records if r["stage"] == "rl"]
    assert len(rl) == 1
    step = rl[0]
    # the tiny arithmetic model cannot write Python: every completion scores 0, without errors or timeouts
    assert step["reward/unit_tests"] == 0.0 and step["reward/code_quality"] == 0.0 and step["reward/mean"] == 0.0, step
    assert step["reward/errors"] == 0 and step["reward/timeouts"] == 0, step
    assert summary["final_eval"]["accuracy"] == 0.0, summary
