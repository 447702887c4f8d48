"""Sample filters: DAPO's (Yu et al., 2025) dynamic sampling and overlong filtering, and accuracy bands."""

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


def group_accuracy(accuracy: torch.Tensor, group_size: int) -> torch.Tensor:
    """[num_groups]: the mean accuracy score of each group of `group_size` consecutive samples."""
    if accuracy.numel() % group_size:
        raise ValueError(f"{accuracy.numel()} scores do not split into groups of {group_size}")
    return accuracy.float().view(-1, group_size).mean(dim=1)


def groups_in_band(accuracy: torch.Tensor, group_size: int, low: float, high: float, tol: float = 1e-6) -> torch.Tensor:
    """[num_groups] bool: True for groups whose accuracy lies in [low, high] (inclusive, within `tol`).

    SwS's augmented RL skips prompts outside 10-90% accuracy; Phi-4-Mini-Reasoning drops prompts above
    50%: too easy (or too hard) a prompt teaches little. [tol, 1 - tol] is dynamic sampling's rule for 0/1 rewards.
    """
    acc = group_accuracy(accuracy, group_size)
    return (acc >= low - tol) & (acc <= high + tol)


def band_counts(accuracy: torch.Tensor, group_size: int, low: float, high: float, tol: float = 1e-6) -> tuple[int, int]:
    """(groups below the band, groups above it), for the metrics."""
    acc = group_accuracy(accuracy, group_size)
    return int((acc < low - tol).sum()), int((acc > high + tol).sum())
