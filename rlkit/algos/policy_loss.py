"""The clipped policy-gradient surrogate and how per-token losses are aggregated into one number."""

from __future__ import annotations

import torch


def aggregate(per_token: torch.Tensor, mask: torch.Tensor, mode: str, num_sequences: int, num_tokens: float, constant: float = 1.0) -> torch.Tensor:
    """Reduce [B, L] per-token values under `mask` to the batch loss.

    `num_sequences` / `num_tokens` are totals over the whole optimizer batch, so that summing the
    returned values of its micro-batches gives the batch loss.
      token_mean: sum over all tokens / tokens in the batch
      seq_mean_token_mean: mean over sequences of each sequence's token mean (GRPO paper)
      seq_mean_token_sum: mean over sequences of each sequence's token sum
      seq_mean_token_sum_norm: token sum / (sequences x constant) (Dr.GRPO: constant = max length)
    """
    masked = per_token * mask
    if mode == "token_mean":
        return masked.sum() / max(num_tokens, 1.0)
    if mode == "seq_mean_token_mean":
        return (masked.sum(1) / mask.sum(1).clamp(min=1.0)).sum() / num_sequences
    if mode == "seq_mean_token_sum":
        return masked.sum() / num_sequences
    if mode == "seq_mean_token_sum_norm":
        return masked.sum() / (num_sequences * constant)
    raise ValueError(f"unknown loss aggregation {mode!r}")


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
