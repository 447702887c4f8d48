"""Phi-4-Mini-Reasoning's reward rebalancing: within each prompt's group keep every positive
(correct) response and as many randomly chosen negatives, so that a hard prompt's few right answers
are not outweighed by its many wrong ones; advantages are then taken over the kept responses only."""

from __future__ import annotations

import torch


def rebalanced_keep(correct: torch.Tensor, group_size: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """[B] bool: which responses a step keeps. `correct` [B] bool, `group_size` consecutive per prompt.

    Per group: all positives and min(#positives, #negatives) negatives drawn at random without
    replacement. A group with no positive keeps nothing (nothing to balance against); a group with
    no negative keeps its positives (they carry no group-relative signal either way).
    """
    if correct.numel() % group_size:
        raise ValueError(f"{correct.numel()} responses do not split into groups of {group_size}")
    grouped = correct.bool().view(-1, group_size)
    keep = grouped.clone()
    for group, row in enumerate(grouped):
        negatives = (~row).nonzero().flatten()
        take = min(int(row.sum()), len(negatives))
        chosen = negatives[torch.randperm(len(negatives), generator=generator)[:take]]
        keep[group, chosen] = True
    return keep.view(-1)


def kept_group_advantages(
    rewards: torch.Tensor, keep: torch.Tensor, group_size: int, normalize_std: bool = True, eps: float = 1e-6
) -> torch.Tensor:
    """GRPO advantages whose group mean and std are taken over the kept responses only; 0 for the
    others (they leave the batch). Equal to `group_normalized_advantages` when everything is kept."""
    if rewards.numel() % group_size or rewards.shape != keep.shape:
        raise ValueError(f"rewards {tuple(rewards.shape)} and keep {tuple(keep.shape)} must match and split into groups of {group_size}")
    values = rewards.float().view(-1, group_size)
    weights = keep.float().view(-1, group_size)
    count = weights.sum(1, keepdim=True)
    mean = (values * weights).sum(1, keepdim=True) / count.clamp(min=1.0)
    centered = (values - mean) * weights
    if normalize_std:
        variance = (centered**2).sum(1, keepdim=True) / (count - 1).clamp(min=1.0)  # unbiased, as torch.std
        centered = centered / (variance.sqrt() + eps)
    return centered.view(-1)
