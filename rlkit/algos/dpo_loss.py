"""Preference losses on (chosen, rejected) pairs against a frozen reference: DPO (sigmoid) and IPO."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def dpo_loss(
    chosen_logps: torch.Tensor,
    rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    beta: float,
    loss_type: str = "sigmoid",
    chosen_lengths: torch.Tensor | None = None,
    rejected_lengths: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-pair loss from sequence log-probabilities (sums over response tokens) [P].

    sigmoid (Rafailov et al., 2023): -log sigmoid(beta * (chosen log-ratio - rejected log-ratio)).
    ipo (Azar et al., 2023): (h - 1 / (2 beta))^2 with h the difference of the per-token mean
        log-ratios; the length normalization is the one the IPO authors used (and TRL uses),
        so `chosen_lengths` / `rejected_lengths` (response token counts) are required.
    Returns (per-pair loss, chosen reward, rejected reward), rewards = beta * log-ratio.
    """
    chosen_ratio = chosen_logps - ref_chosen_logps
    rejected_ratio = rejected_logps - ref_rejected_logps
    if loss_type == "sigmoid":
        loss = -F.logsigmoid(beta * (chosen_ratio - rejected_ratio))
    elif loss_type == "ipo":
        if chosen_lengths is None or rejected_lengths is None:
            raise ValueError("the IPO loss needs the response lengths of chosen and rejected")
        h = chosen_ratio / chosen_lengths.clamp(min=1.0) - rejected_ratio / rejected_lengths.clamp(min=1.0)
        loss = (h - 1.0 / (2.0 * beta)).square()
    else:
        raise ValueError(f"unknown DPO loss {loss_type!r} (expected sigmoid or ipo)")
    return loss, beta * chosen_ratio.detach(), beta * rejected_ratio.detach()
