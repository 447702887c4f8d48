"""The algorithm registries: one registration names a part and what it needs; the config's allowed values
and the error for an unknown name come from it."""

import pytest
import torch
from pydantic import ValidationError

from rlkit.algos.advantage_estimators import ADVANTAGE_ESTIMATORS, AdvantageInputs
from rlkit.algos.kl import KL_ESTIMATORS
from rlkit.algos.loss_aggregation import LOSS_AGGREGATIONS
from rlkit.algos.registry import Registry
from rlkit.config import AlgorithmConfig, RunConfig


def test_the_registered_names_and_their_traits():
    assert ADVANTAGE_ESTIMATORS.names() == ["grpo", "dr_grpo", "rloo", "reinforce_pp", "gae"]
    traits = {e: (ADVANTAGE_ESTIMATORS.get(e).per_token, ADVANTAGE_ESTIMATORS.get(e).compares_group,
                  ADVANTAGE_ESTIMATORS.get(e).needs_critic) for e in ADVANTAGE_ESTIMATORS.names()}
    assert traits == {"grpo": (False, True, False), "dr_grpo": (False, True, False), "rloo": (False, True, False),
                      "reinforce_pp": (True, False, False), "gae": (True, False, True)}
    assert LOSS_AGGREGATIONS.names() == ["token_mean", "seq_mean_token_mean", "seq_mean_token_sum", "seq_mean_token_sum_norm"]
    assert KL_ESTIMATORS.names() == ["k1", "k2", "k3"]


@pytest.mark.parametrize("key, registry", [("advantage", ADVANTAGE_ESTIMATORS), ("loss_agg", LOSS_AGGREGATIONS),
                                           ("kl_estimator", KL_ESTIMATORS)])
def test_config_accepts_exactly_the_registered_names(key, registry):
    for name in registry.names():
        assert getattr(AlgorithmConfig(**{key: name}), key) == name
    with pytest.raises(ValidationError, match=f"unknown .* 'nope' for algorithm.{key} \\(expected one of {', '.join(registry.names())}\\)"):
        AlgorithmConfig(**{key: "nope"})
    assert ", ".join(registry.names()) in AlgorithmConfig.model_fields[key].description  # --explain lists them


def test_a_new_estimator_is_one_function_and_one_registration(monkeypatch):
    monkeypatch.setattr(ADVANTAGE_ESTIMATORS, "_entries", dict(ADVANTAGE_ESTIMATORS._entries))  # undone after the test

    @ADVANTAGE_ESTIMATORS.register("sign", per_token=False, compares_group=True, needs_critic=False)
    def sign(x: AdvantageInputs):
        return (x.rewards - 0.5).sign()[:, None] * x.mask, None

    config = RunConfig.model_validate({"rollout": {"n": 2}, "stages": [{"type": "rl", "algorithm": {"advantage": "sign"}}]})
    entry = ADVANTAGE_ESTIMATORS.get(config.stages[0].algorithm.advantage)
    advantages, _ = entry.fn(AdvantageInputs(rewards=torch.tensor([1.0, 0.0]), mask=torch.ones(2, 3), group_size=2))
    assert advantages.tolist() == [[1.0] * 3, [-1.0] * 3]
    with pytest.raises(ValidationError, match="compares the samples of a prompt; expected n >= 2"):  # its traits are used
        RunConfig.model_validate({"rollout": {"n": 1}, "stages": [{"type": "rl", "algorithm": {"advantage": "sign"}}]})


def test_a_name_registers_once():
    registry = Registry("thing", "section.thing")
    registry.register("a")(len)
    with pytest.raises(ValueError, match="thing 'a' is registered twice"):
        registry.register("a")(len)


def test_every_stage_type_of_the_schema_is_registered_once_with_its_traits():
    from typing import get_args

    from rlkit.config import DATA_STAGES, Stage
    from rlkit.runner import stage_entry
    from rlkit.stages.registry import STAGES

    union = get_args(get_args(Stage)[0])
    schema_types = sorted(get_args(cls.model_fields["type"].annotation)[0] for cls in union)
    assert sorted(STAGES.names()) == schema_types
    assert sorted(k for k in STAGES.names() if stage_entry(k).rl_like) == ["dpo", "rl", "rollout_dpo"]  # eval before the first
    assert tuple(k for k in STAGES.names() if stage_entry(k).data_stage) == DATA_STAGES  # the config's reference check agrees
    with pytest.raises(ValueError, match=r"unknown stage 'nope' for stages\[\]\.type"):
        stage_entry("nope")
