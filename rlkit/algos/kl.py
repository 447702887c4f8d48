"""KL estimators between the policy and a reference, per token (Schulman's k1, k2, k3)."""

from __future__ import annotations

import torch


def kl_estimate(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, estimator: str = "k3") -> torch.Tensor:
    """Per-token estimate of KL(policy || reference) from samples of the policy.

    With log-ratio r = ref - policy: k1 = -r, k2 = r^2 / 2, k3 = exp(r) - 1 - r (unbiased, >= 0).
    """
    log_ratio = ref_logprobs - logprobs
    if estimator == "k1":
        return -log_ratio
    if estimator == "k2":
        return 0.5 * log_ratio.square()
    if estimator == "k3":
        log_ratio = log_ratio.clamp(-20.0, 20.0)  # exp overflow guard for far-off tokens
        return torch.exp(log_ratio) - 1.0 - log_ratio
    raise ValueError(f"unknown KL estimator {estimator!r} (expected k1, k2 or k3)")
