"""How per-token losses [B, L] become the batch loss (`algorithm.loss_agg`).

`num_sequences` / `num_tokens` are totals over the whole optimizer batch, so that summing the values
of its micro-batches gives the batch loss. `constant` is Dr.GRPO's normalizer (the max response length).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rlkit.algos.registry import Registry

if TYPE_CHECKING:
    import torch

LOSS_AGGREGATIONS = Registry("loss aggregation", "algorithm.loss_agg")


@LOSS_AGGREGATIONS.register("token_mean")
def token_mean(masked: torch.Tensor, mask: torch.Tensor, num_sequences: int, num_tokens: float, constant: float) -> torch.Tensor:
    """Sum over all tokens / tokens in the batch (DAPO; TRL's and verl's default)."""
    return masked.sum() / max(num_tokens, 1.0)


@LOSS_AGGREGATIONS.register("seq_mean_token_mean")
def seq_mean_token_mean(masked: torch.Tensor, mask: torch.Tensor, num_sequences: int, num_tokens: float, constant: float) -> torch.Tensor:
    """Mean over sequences of each sequence's token mean (the GRPO paper)."""
    return (masked.sum(1) / mask.sum(1).clamp(min=1.0)).sum() / num_sequences


@LOSS_AGGREGATIONS.register("seq_mean_token_sum")
def seq_mean_token_sum(masked: torch.Tensor, mask: torch.Tensor, num_sequences: int, num_tokens: float, constant: float) -> torch.Tensor:
    """Mean over sequences of each sequence's token sum."""
    return masked.sum() / num_sequences


@LOSS_AGGREGATIONS.register("seq_mean_token_sum_norm")
def seq_mean_token_sum_norm(masked: torch.Tensor, mask: torch.Tensor, num_sequences: int, num_tokens: float, constant: float) -> torch.Tensor:
    """Token sum / (sequences x constant) (Dr.GRPO: constant = the max response length)."""
    return masked.sum() / (num_sequences * constant)


def aggregate(per_token: torch.Tensor, mask: torch.Tensor, mode: str, num_sequences: int, num_tokens: float, constant: float = 1.0) -> torch.Tensor:
    """Reduce [B, L] per-token values under `mask` to the batch loss, as `mode` says."""
    return LOSS_AGGREGATIONS.get(mode).fn(per_token * mask, mask, num_sequences, num_tokens, constant)
