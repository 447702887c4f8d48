"""KL estimators between the policy and a reference, per token (Schulman's k1, k2, k3).

Each estimator is a function of the per-token log-ratio r = log p_ref - log p_policy of tokens sampled
from the policy, registered under the name `algorithm.kl_estimator` takes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rlkit.algos.registry import Registry

if TYPE_CHECKING:
    import torch

KL_ESTIMATORS = Registry("KL estimator", "algorithm.kl_estimator")


@KL_ESTIMATORS.register("k1")
def k1(log_ratio: torch.Tensor) -> torch.Tensor:
    """-r: unbiased, but negative on single tokens."""
    return -log_ratio


@KL_ESTIMATORS.register("k2")
def k2(log_ratio: torch.Tensor) -> torch.Tensor:
    """r^2 / 2: low variance, biased."""
    return 0.5 * log_ratio.square()


@KL_ESTIMATORS.register("k3")
def k3(log_ratio: torch.Tensor) -> torch.Tensor:
    """exp(r) - 1 - r: unbiased and >= 0."""
    log_ratio = log_ratio.clamp(-20.0, 20.0)  # exp overflow guard for far-off tokens
    return log_ratio.exp() - 1.0 - log_ratio


def kl_estimate(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, estimator: str = "k3") -> torch.Tensor:
    """Per-token estimate of KL(policy || reference) from samples of the policy."""
    return KL_ESTIMATORS.get(estimator).fn(ref_logprobs - logprobs)
