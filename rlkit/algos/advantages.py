"""Outcome-reward advantage estimators. Rewards arrive grouped: `group_size` consecutive samples share a prompt."""

from __future__ import annotations

import torch


def group_normalized_advantages(rewards: torch.Tensor, group_size: int, normalize_std: bool = True, eps: float = 1e-6) -> torch.Tensor:
    """GRPO: (r - mean of its group) / (std of its group + eps). Dr.GRPO passes normalize_std=False.

    A group whose rewards are all equal gets zero advantage (it carries no signal).
    """
    if rewards.numel() % group_size:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of {group_size}")
    grouped = rewards.float().view(-1, group_size)
    centered = grouped - grouped.mean(dim=1, keepdim=True)
    if normalize_std:
        std = grouped.std(dim=1, keepdim=True, unbiased=True) if group_size > 1 else torch.ones_like(grouped[:, :1])
        centered = centered / (std + eps)
    return centered.view(-1)
