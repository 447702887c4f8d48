"""The Phi-4-Mini-Reasoning stabilizers wired into a tiny `rl` stage: each leaves its metric in metrics.jsonl."""

import json
import shutil

import pytest

import rlkit.stages.rl as rl_module
from rlkit.config import load_config
from rlkit.runner import run_recipe

RECIPE = """
name: tiny-stabilizers
threads: 1
rollout: {n: 4, max_new_tokens: 40, temperature: {from: 1.0, to: 0.6, over: 0.5}}
eval: {limit: 8}
stages:
  - {type: sft, steps: 20, lr: 1.0e-3, batch_size: 8}
  - type: rl
    steps: 4
    lr: 1.0e-4
    batch_size: 4
    data: {size: 24}
    algorithm: {rebalance: true}
    length_filter: {samples: 4, max_spread: 0.3}
"""


def test_temperature_schedule_rebalancing_and_length_filter_in_a_run(tmp_path, monkeypatch):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE)
    temperatures = []
    real = rl_module.sampling_params
    monkeypatch.setattr(rl_module, "sampling_params", lambda rollout, seed: temperatures.append(rollout.temperature) or real(rollout, seed))
    run_dir = tmp_path / "run"
    run_recipe(load_config(recipe), run_dir)

    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    rl = [m for m in metrics if m["stage"] == "rl"]
    assert [m["step"] for m in rl] == [0, 1, 2, 3, 4]
    # the schedule: 1.0 -> 0.6 over the first half of 4 steps; the engine sampled with the logged value
    assert [m["rollout/temperature"] for m in rl[1:]] == pytest.approx([1.0, 0.8, 0.6, 0.6])
    assert temperatures == pytest.approx([1.0, 0.8, 0.6, 0.6])
    assert all(0.0 <= m["rebalance/kept_fraction"] <= 1.0 for m in rl[1:])
    # the filter ran once, before step 1, on the 24 distinct prompts, and saved what it kept
    record = rl[0]
    assert record["length_filter/kept"] + record["length_filter/dropped"] == 24
    assert record["length_filter/kept"] >= 1 and record["length_filter/dropped"] >= 1, record  # the threshold bites here
    saved = json.loads((run_dir / "stages" / "rl" / "length_filter.json").read_text())
    assert len(saved["kept_ids"]) == record["length_filter/kept"]

    # the stage redone on --resume reads the saved filter: same prompts, still one record
    shutil.rmtree(run_dir / "stages" / "rl" / "output")
    run_recipe(load_config(recipe), run_dir, resume=True)
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert sum("length_filter/kept" in m for m in metrics) == 1
    assert [m["step"] for m in metrics if m["stage"] == "rl"] == [0, 1, 2, 3, 4]


def test_rebalance_needs_a_group_estimator(tmp_path):
    from rlkit.errors import ConfigError

    recipe = tmp_path / "r.yaml"
    recipe.write_text("stages: [{type: rl, algorithm: {advantage: rloo, rebalance: true}}]\n")
    with pytest.raises(ConfigError, match=r"key 'rl.algorithm.rebalance': needs advantage grpo or dr_grpo .* got 'rloo'"):
        load_config(recipe)
