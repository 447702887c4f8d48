"""recipes/phi4_mini_reasoning.yaml loads with the paper's values and --dry-runs; the tiny twin resolves."""

from pathlib import Path

import pytest

from rlkit.cli import main as cli_main
from rlkit.config import TemperatureSchedule, load_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.shared_data
def test_phi4_recipe_has_the_papers_values():
    config = load_config(ROOT / "recipes" / "phi4_mini_reasoning.yaml")
    assert config.model.path == "microsoft/Phi-4-mini-instruct"
    assert [(s.name, s.type) for s in config.stages] == [
        ("distill", "distill"), ("midtrain", "sft"), ("sft", "sft"), ("dpo", "dpo"), ("rl", "rl")]
    distill, midtrain, sft, dpo, rl = config.stages
    assert (distill.generator.backend, distill.generator.model, distill.n) == ("openai", "deepseek-ai/DeepSeek-R1", 8)
    assert (midtrain.packing, midtrain.max_length, midtrain.batch_size, midtrain.lr) == (True, 16384, 128, 1e-5)
    assert midtrain.warmup_steps == midtrain.steps // 10
    assert (sft.packing, sft.max_length, sft.lr, sft.data.where) == (False, 20480, 1e-5, ["pass_rate <= 0.5"])
    assert (dpo.data.source, dpo.lr, dpo.max_length) == ("stage:distill/dpo", 5e-7, 16384)
    assert (rl.lr, rl.algorithm.advantage, rl.algorithm.rebalance, rl.length_filter.samples) == (5e-7, "grpo", True, 8)
    assert rl.algorithm.accuracy_band == (0.0, 0.5)  # prompts above 50% group accuracy dropped
    assert config.rollout.temperature == TemperatureSchedule.model_validate({"from": 1.0, "to": 0.6, "over": 0.5})
    assert config.eval.benchmarks == ["math500", "aime24"]


@pytest.mark.parametrize(
    "recipe", [pytest.param("recipes/phi4_mini_reasoning.yaml", marks=pytest.mark.shared_data), "recipes/tiny/tiny_phi4.yaml"],
)
def test_phi4_recipes_dry_run(recipe, capsys):
    assert cli_main(["run", str(ROOT / recipe), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "type: distill" in out and "from: 1.0" in out and "rebalance: true" in out
