"""Advantage estimators.

Outcome estimators (GRPO, Dr.GRPO, RLOO) take one reward per sample; rewards arrive grouped:
`group_size` consecutive samples share a prompt. Token estimators (REINFORCE++, GAE) take per-token
rewards [B, L] under a response mask [B, L] (see `token_rewards`) and return per-token advantages.
"""

from __future__ import annotations

import torch


def _grouped(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    if rewards.numel() % group_size:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of {group_size}")
    return rewards.float().view(-1, group_size)


def group_normalized_advantages(rewards: torch.Tensor, group_size: int, normalize_std: bool = True, eps: float = 1e-6) -> torch.Tensor:
    """GRPO: (r - mean of its group) / (std of its group + eps). Dr.GRPO passes normalize_std=False.

    A group whose rewards are all equal gets zero advantage (it carries no signal).
    """
    grouped = _grouped(rewards, group_size)
    centered = grouped - grouped.mean(dim=1, keepdim=True)
    if normalize_std:
        std = grouped.std(dim=1, keepdim=True, unbiased=True) if group_size > 1 else torch.ones_like(grouped[:, :1])
        centered = centered / (std + eps)
    return centered.view(-1)


def rloo_advantages(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """RLOO: r_i minus the mean reward of the other samples of its group (leave-one-out baseline)."""
    if group_size < 2:
        raise ValueError("RLOO needs at least 2 samples per prompt (rollout.n >= 2)")
    grouped = _grouped(rewards, group_size)
    others_mean = (grouped.sum(dim=1, keepdim=True) - grouped) / (group_size - 1)
    return (grouped - others_mean).view(-1)


def token_rewards(outcome: torch.Tensor, mask: torch.Tensor, kl: torch.Tensor | None = None, kl_coef: float = 0.0) -> torch.Tensor:
    """Per-token rewards [B, L]: the outcome reward on each sequence's last response token, minus
    `kl_coef * kl` on every response token when the KL is applied as a reward penalty."""
    rewards = torch.zeros_like(mask, dtype=torch.float)
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    last = torch.where(mask > 0, positions, -1).max(dim=1).values  # index of the last response token
    has_response = last >= 0
    rows = torch.arange(mask.shape[0], device=mask.device)[has_response]
    rewards[rows, last[has_response]] = outcome.float()[has_response]
    if kl is not None and kl_coef:
        rewards = rewards - kl_coef * kl * mask
    return rewards


def discounted_returns(rewards: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0) -> torch.Tensor:
    """G_t = sum over later response tokens s >= t of gamma^(s - t) r_s; 0 outside the mask."""
    returns = torch.zeros_like(rewards, dtype=torch.float)
    running = torch.zeros(rewards.shape[0], dtype=torch.float, device=rewards.device)
    for t in reversed(range(rewards.shape[1])):
        running = (rewards[:, t] + gamma * running) * mask[:, t]
        returns[:, t] = running
    return returns


def masked_whiten(values: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(x - mean) / std over the masked entries of the whole batch; 0 outside the mask."""
    count = mask.sum().clamp(min=1.0)
    mean = (values * mask).sum() / count
    var = (((values - mean) * mask) ** 2).sum() / (count - 1).clamp(min=1.0)  # unbiased, as torch.std
    return (values - mean) * torch.rsqrt(var + eps) * mask


def reinforce_pp_advantages(rewards: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0) -> torch.Tensor:
    """REINFORCE++ (Hu, 2025): per-token discounted returns, normalized over all response tokens of the batch."""
    return masked_whiten(discounted_returns(rewards, mask, gamma), mask)


def gae_advantages(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0, lam: float = 0.95
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized advantage estimation over response tokens. Returns (advantages, returns).

    delta_t = r_t + gamma V_{t+1} - V_t, with V = 0 after the last response token;
    A_t = delta_t + gamma lam A_{t+1}; returns = A + V (the critic's regression target).
    Advantages are returned raw; the caller whitens them (`masked_whiten`) as PPO does.
    """
    mask = mask.float()
    advantages = torch.zeros_like(rewards, dtype=torch.float)
    running = torch.zeros(rewards.shape[0], dtype=torch.float, device=rewards.device)
    width = rewards.shape[1]
    for t in reversed(range(width)):
        next_mask = mask[:, t + 1] if t + 1 < width else torch.zeros_like(running)
        next_value = values[:, t + 1] * next_mask if t + 1 < width else torch.zeros_like(running)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = (delta + gamma * lam * next_mask * running) * mask[:, t]
        advantages[:, t] = running
    return advantages, (advantages + values) * mask
