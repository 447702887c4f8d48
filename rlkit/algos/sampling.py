"""Sample filters of DAPO (Yu et al., 2025): dynamic sampling and overlong filtering."""

from __future__ import annotations

import torch


def groups_with_signal(rewards: torch.Tensor, group_size: int, tol: float = 1e-6) -> torch.Tensor:
    """[num_groups] bool: True for groups whose rewards are not all equal.

    A group of equal rewards (all right or all wrong) has zero group-relative advantage and so
    contributes no policy gradient; DAPO's dynamic sampling drops it and samples more prompts.
    """
    if rewards.numel() % group_size:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of {group_size}")
    grouped = rewards.float().view(-1, group_size)
    return (grouped.max(dim=1).values - grouped.min(dim=1).values) > tol


def overlong_mask(finish_reasons: list[str]) -> torch.Tensor:
    """[B] float: 0.0 for samples cut off at max_new_tokens, 1.0 otherwise.

    DAPO's overlong filtering masks truncated samples out of the loss: their reward says
    nothing about the answer they would have given.
    """
    return torch.tensor([0.0 if reason == "length" else 1.0 for reason in finish_reasons])
