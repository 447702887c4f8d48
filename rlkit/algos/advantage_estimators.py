"""The advantage estimators a recipe names (`algorithm.advantage`), each registered with what it needs:

  per_token:       False = takes one reward per sample [B]; True = per-token rewards [B, L] (`token_rewards`)
  compares_group:  compares the samples of a prompt, so it needs rollout.n >= 2
  needs_critic:    takes the critic's values (PPO's GAE); the RL stage builds a critic for it

Adding an estimator is one function here (the math in advantages.py), its registration and its test.
The math is imported when an estimator runs, so reading the names (config validation) needs no torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from rlkit.algos.registry import Registry

if TYPE_CHECKING:
    import torch

ADVANTAGE_ESTIMATORS = Registry("advantage estimator", "algorithm.advantage")


@dataclass
class AdvantageInputs:
    rewards: torch.Tensor  # [B] for per-sample estimators, [B, L] per-token rewards for per-token ones
    mask: torch.Tensor  # [B, L] response tokens the loss sees
    group_size: int  # rollout.n: consecutive samples that share a prompt
    normalize_std: bool = True
    gamma: float = 1.0
    lam: float = 0.95
    values: torch.Tensor | None = None  # [B, L] the critic's values, for estimators that need a critic
    keep: torch.Tensor | None = None  # [B] bool: samples rebalancing kept (algorithm.rebalance); group statistics over these


# Each returns (advantages [B, L] under the mask, returns [B, L] for the critic or None).
AdvantageResult = tuple["torch.Tensor", "torch.Tensor | None"]


@ADVANTAGE_ESTIMATORS.register("grpo", per_token=False, compares_group=True, needs_critic=False)
def grpo(x: AdvantageInputs) -> AdvantageResult:
    """(r - group mean) / group std (Shao et al., 2024); `normalize_std: false` leaves out the division.
    With `keep`, the mean and std are the kept samples' (rlkit/algos/rebalance.py)."""
    from rlkit.algos.advantages import group_normalized_advantages

    if x.keep is not None:
        from rlkit.algos.rebalance import kept_group_advantages

        return kept_group_advantages(x.rewards, x.keep, x.group_size, normalize_std=x.normalize_std)[:, None] * x.mask, None

    return group_normalized_advantages(x.rewards, x.group_size, normalize_std=x.normalize_std)[:, None] * x.mask, None


@ADVANTAGE_ESTIMATORS.register("dr_grpo", per_token=False, compares_group=True, needs_critic=False)
def dr_grpo(x: AdvantageInputs) -> AdvantageResult:
    """Dr.GRPO (Liu et al., 2025): r - group mean, never divided by the std (with `keep`: the kept samples' mean)."""
    from rlkit.algos.advantages import group_normalized_advantages

    if x.keep is not None:
        from rlkit.algos.rebalance import kept_group_advantages

        return kept_group_advantages(x.rewards, x.keep, x.group_size, normalize_std=False)[:, None] * x.mask, None

    return group_normalized_advantages(x.rewards, x.group_size, normalize_std=False)[:, None] * x.mask, None


@ADVANTAGE_ESTIMATORS.register("rloo", per_token=False, compares_group=True, needs_critic=False)
def rloo(x: AdvantageInputs) -> AdvantageResult:
    """RLOO (Ahmadian et al., 2024): r minus the mean of the other samples of its group."""
    from rlkit.algos.advantages import rloo_advantages

    return rloo_advantages(x.rewards, x.group_size)[:, None] * x.mask, None


@ADVANTAGE_ESTIMATORS.register("reinforce_pp", per_token=True, compares_group=False, needs_critic=False)
def reinforce_pp(x: AdvantageInputs) -> AdvantageResult:
    """REINFORCE++ (Hu, 2025): discounted per-token returns, whitened over the batch."""
    from rlkit.algos.advantages import reinforce_pp_advantages

    return reinforce_pp_advantages(x.rewards, x.mask, x.gamma), None


@ADVANTAGE_ESTIMATORS.register("gae", per_token=True, compares_group=False, needs_critic=True)
def gae(x: AdvantageInputs) -> AdvantageResult:
    """PPO: GAE over the critic's values, whitened over the batch; the returns are the critic's target."""
    from rlkit.algos.advantages import gae_advantages, masked_whiten

    if x.values is None:
        raise ValueError("the gae estimator needs the critic's values")
    raw, returns = gae_advantages(x.rewards, x.values, x.mask, x.gamma, x.lam)
    return masked_whiten(raw, x.mask), returns
