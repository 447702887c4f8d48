"""Advantage estimators against values computed by hand."""

import math

import pytest
import torch

from rlkit.algos.advantages import (
    discounted_returns,
    gae_advantages,
    group_normalized_advantages,
    masked_whiten,
    reinforce_pp_advantages,
    rloo_advantages,
    token_rewards,
)
from rlkit.algos.sampling import groups_with_signal, overlong_mask


def close(a: torch.Tensor, b: list, tol: float = 1e-5) -> None:
    assert torch.allclose(a.float(), torch.tensor(b, dtype=torch.float), atol=tol), (a.tolist(), b)


def test_grpo_group_mean_and_std():
    # group 1: [1, 0, 0, 1]: mean 0.5, unbiased std sqrt(1/3); group 2 all equal -> zeros
    adv = group_normalized_advantages(torch.tensor([1.0, 0, 0, 1, 1, 1, 1, 1]), 4)
    s = math.sqrt(1 / 3)
    close(adv, [0.5 / s, -0.5 / s, -0.5 / s, 0.5 / s, 0, 0, 0, 0], tol=1e-4)


def test_dr_grpo_has_no_std_normalization():
    adv = group_normalized_advantages(torch.tensor([1.0, 0, 0, 0, 2, 2]), 3, normalize_std=False)
    close(adv, [2 / 3, -1 / 3, -1 / 3, -4 / 3, 2 / 3, 2 / 3])


def test_rloo_leave_one_out_baseline():
    # r = [1, 0, 0]: baselines (0+0)/2, (1+0)/2, (1+0)/2
    close(rloo_advantages(torch.tensor([1.0, 0, 0, 3, 3, 3]), 3), [1.0, -0.5, -0.5, 0, 0, 0])
    with pytest.raises(ValueError, match="at least 2"):
        rloo_advantages(torch.tensor([1.0]), 1)


def test_group_size_must_divide():
    with pytest.raises(ValueError, match="groups of 4"):
        group_normalized_advantages(torch.ones(6), 4)


# Ragged rows: prompt tokens (mask 0), response tokens (mask 1), right padding (mask 0).
MASK = torch.tensor([[0, 1, 1, 1, 0], [0, 0, 1, 0, 0], [0, 0, 0, 0, 0]], dtype=torch.float)


def test_token_rewards_put_outcome_on_last_response_token_and_kl_everywhere():
    kl = torch.full(MASK.shape, 0.5)
    rewards = token_rewards(torch.tensor([1.0, 2.0, 7.0]), MASK, kl, kl_coef=0.1)
    close(rewards, [[0, -0.05, -0.05, 0.95, 0], [0, 0, 1.95, 0, 0], [0, 0, 0, 0, 0]])


def test_discounted_returns_stop_at_the_mask():
    rewards = torch.tensor([[9.0, 1, 2, 3, 9], [9, 9, 5, 9, 9], [1, 1, 1, 1, 1]])
    close(discounted_returns(rewards, MASK, gamma=0.5), [[0, 1 + 0.5 * (2 + 0.5 * 3), 2 + 1.5, 3, 0], [0, 0, 5, 0, 0], [0] * 5])


def test_reinforce_pp_whitens_returns_over_batch_tokens():
    rewards = token_rewards(torch.tensor([1.0, 0.0, 0.0]), MASK)
    # returns on the 4 response tokens: [1, 1, 1] and [0]; mean 0.75, unbiased std 0.5
    adv = reinforce_pp_advantages(rewards, MASK)
    close(adv, [[0, 0.5, 0.5, 0.5, 0], [0, 0, -1.5, 0, 0], [0] * 5], tol=1e-4)


def test_masked_whiten_ignores_masked_entries():
    x = torch.tensor([[100.0, 1.0, 3.0]])
    close(masked_whiten(x, torch.tensor([[0.0, 1, 1]])), [[0, -1 / math.sqrt(2), 1 / math.sqrt(2)]], tol=1e-4)


def test_gae_by_hand():
    mask = torch.tensor([[0, 1, 1, 1, 0]], dtype=torch.float)
    rewards = torch.tensor([[0, 0, 0, 1.0, 0]])
    values = torch.tensor([[0, 0.5, 0.2, 0.4, 0]])
    gamma, lam = 0.9, 0.8
    # deltas: t3 = 1 - 0.4 = 0.6 (V after the end is 0); t2 = 0 + 0.9*0.4 - 0.2 = 0.16; t1 = 0.9*0.2 - 0.5 = -0.32
    a3 = 0.6
    a2 = 0.16 + gamma * lam * a3
    a1 = -0.32 + gamma * lam * a2
    adv, ret = gae_advantages(rewards, values, mask, gamma, lam)
    close(adv, [[0, a1, a2, a3, 0]])
    close(ret, [[0, a1 + 0.5, a2 + 0.2, a3 + 0.4, 0]])


def test_gae_with_lambda_one_and_zero_values_is_the_return():
    rewards = token_rewards(torch.tensor([1.0, 2.0, 0.0]), MASK)
    adv, _ = gae_advantages(rewards, torch.zeros(MASK.shape), MASK, gamma=1.0, lam=1.0)
    close(adv, discounted_returns(rewards, MASK).tolist())


def test_dynamic_sampling_keeps_groups_with_different_rewards():
    keep = groups_with_signal(torch.tensor([1.0, 1, 1, 0, 1, 0, 0, 0, 0]), 3)
    assert keep.tolist() == [False, True, False]
    assert groups_with_signal(torch.tensor([0.2, 0.2, 1.0, 1.0]), 2).tolist() == [False, False]


def test_overlong_mask():
    assert overlong_mask(["stop", "length", "stop"]).tolist() == [1.0, 0.0, 1.0]
