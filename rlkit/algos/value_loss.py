"""The critic's loss: squared error to the GAE returns, with PPO's value clipping."""

from __future__ import annotations

import torch


def clipped_value_loss(
    values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, clip: float | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token 0.5 * max((V - R)^2, (V_clip - R)^2), V_clip = V_old + clamp(V - V_old, -clip, clip).

    The clipped term keeps one update from moving a value far from the one the advantages were
    computed with. `clip=None` is the plain squared error. Returns (per-token loss, 1.0 where the
    clipped term was the larger one).
    """
    plain = (values - returns).square()
    if clip is None:
        return 0.5 * plain, torch.zeros_like(plain)
    clipped_values = old_values + (values - old_values).clamp(-clip, clip)
    clipped = (clipped_values - returns).square()
    return 0.5 * torch.maximum(plain, clipped), (clipped > plain).float()


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> float:
    """1 - Var(R - V) / Var(R) over the masked tokens: the critic's squared error relative to the
    spread of what it predicts. 1 is perfect, 0 is no better than predicting the mean, and it does
    not drift when the reward's own variance does (the raw value loss does, as accuracy moves)."""
    keep = mask.bool()
    residual, target = (returns - values)[keep], returns[keep]
    if target.numel() < 2 or float(target.var()) == 0.0:
        return float("nan")
    return float(1.0 - residual.var() / target.var())
