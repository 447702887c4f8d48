"""PPO's clipped policy-gradient surrogate, per token (aggregation: loss_aggregation.py)."""

from __future__ import annotations

import torch


def clipped_surrogate(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    dual_clip: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token PPO loss -min(ratio * A, clip(ratio, 1 - clip_low, 1 + clip_high) * A).

    With `dual_clip = c`, negative-advantage tokens are also bounded by -c * A (Ye et al., 2020).
    Returns (per-token loss, per-token 1.0 where clipping was active).
    """
    ratio = torch.exp(logprobs - old_logprobs)
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1.0 - clip_low, 1.0 + clip_high)
    loss = torch.maximum(unclipped, clipped)
    was_clipped = (clipped > unclipped).float()
    if dual_clip is not None:
        bound = -advantages * dual_clip
        dual = torch.minimum(loss, bound)
        loss = torch.where(advantages < 0, dual, loss)
    return loss, was_clipped
