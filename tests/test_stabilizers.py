"""Phi-4-Mini-Reasoning's RL stabilizers as pure functions, against hand-computed values."""

import pytest
import torch

from rlkit.algos.advantages import group_normalized_advantages
from rlkit.algos.length_uniformity import length_spread, uniform_length_prompts
from rlkit.algos.rebalance import kept_group_advantages, rebalanced_keep
from rlkit.algos.schedules import linear_schedule


def test_linear_schedule_anneals_over_the_first_half_then_holds():
    values = [linear_schedule(1.0, 0.6, 0.5, step, 10) for step in range(1, 11)]
    assert values == pytest.approx([1.0, 0.92, 0.84, 0.76, 0.68, 0.6, 0.6, 0.6, 0.6, 0.6])


def test_linear_schedule_edges():
    assert linear_schedule(1.0, 0.6, 0.0, 1, 10) == pytest.approx(0.6)  # no ramp: the end value at once
    assert [linear_schedule(1.0, 0.6, 1.0, s, 4) for s in range(1, 5)] == pytest.approx([1.0, 0.9, 0.8, 0.7])
    assert linear_schedule(0.6, 1.0, 0.5, 3, 4) == pytest.approx(1.0)  # rising works the same way
    with pytest.raises(ValueError, match=r"outside 1\.\.10"):
        linear_schedule(1.0, 0.6, 0.5, 11, 10)


def test_rebalanced_keep_all_positives_and_as_many_negatives():
    correct = torch.tensor([1, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 0, 1, 1, 0, 0], dtype=torch.bool)
    keep = rebalanced_keep(correct, 4, torch.Generator().manual_seed(0)).view(4, 4)
    grouped = correct.view(4, 4)
    assert keep[grouped].all()  # every positive stays
    assert keep.sum(1).tolist() == [2, 0, 4, 4]  # 1+1; no positive: nothing; 3 + the only negative; 2+2


def test_rebalanced_keep_draws_negatives_at_random():
    correct = torch.tensor([1, 0, 0, 0], dtype=torch.bool)
    picked = {int(rebalanced_keep(correct, 4, torch.Generator().manual_seed(s))[1:].nonzero()[0]) for s in range(40)}
    assert picked == {0, 1, 2}  # each of the three negatives gets its turn


def test_kept_group_advantages_by_hand():
    rewards = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0])
    keep = torch.tensor([1, 1, 0, 0, 1, 1, 1, 1], dtype=torch.bool)
    # group 1 over its kept pair: mean 0.5, unbiased std sqrt(0.5) -> +-0.5/0.7071; dropped -> 0
    # group 2, everything kept: the plain GRPO advantages
    expected = torch.tensor([0.70711, -0.70711, 0.0, 0.0, *group_normalized_advantages(rewards[4:], 4).tolist()])
    assert torch.allclose(kept_group_advantages(rewards, keep, 4), expected, atol=1e-4)
    assert torch.allclose(kept_group_advantages(rewards, torch.ones(8, dtype=torch.bool), 4), group_normalized_advantages(rewards, 4))
    unnormalized = kept_group_advantages(rewards, keep, 4, normalize_std=False)
    assert unnormalized[:4].tolist() == [0.5, -0.5, 0.0, 0.0]


def test_length_spread_and_filter_by_hand():
    assert length_spread([10, 10, 10]) == 0.0
    assert length_spread([5, 15]) == pytest.approx(0.5)  # population std 5 over mean 10
    assert uniform_length_prompts([[5, 15], [10, 11], [7]], 0.4) == [False, True, True]


def test_temperature_schedule_in_the_config(tmp_path):
    from rlkit.config import RunConfig, dump_config, load_config
    from rlkit.errors import ConfigError

    recipe = tmp_path / "r.yaml"
    recipe.write_text("rollout: {temperature: {from: 1.0, to: 0.6, over: 0.5}}\nstages: [{type: rl, steps: 10}]\n")
    config = load_config(recipe)
    assert [config.rollout.temperature_at(s, 10) for s in (1, 2, 6, 10)] == pytest.approx([1.0, 0.92, 0.6, 0.6])
    assert "from: 1.0" in dump_config(config)  # config.yaml keeps the recipe's words, and reloads
    assert RunConfig.model_validate(__import__("yaml").safe_load(dump_config(config))).rollout.temperature == config.rollout.temperature
    assert load_config(recipe, ["rollout.temperature=0.7"]).rollout.temperature_at(3, 10) == 0.7
    with pytest.raises(ConfigError, match=r"missing required key 'rollout.temperature.to'"):
        load_config(recipe, ["rollout.temperature={from: 1.0}"])
