"""The RL objective of one optimizer batch: clipped surrogate + KL to the reference - entropy bonus."""

from __future__ import annotations

import torch

from rlkit.algos.kl import kl_estimate
from rlkit.algos.policy_loss import aggregate, clipped_surrogate
from rlkit.config import AlgorithmConfig
from rlkit.learner.base import LossFn, TokenBatch


def make_policy_loss(alg: AlgorithmConfig, num_sequences: int, num_tokens: float, max_response_length: int) -> LossFn:
    """A LossFn whose micro-batch values sum to the loss of the whole batch.

    Reads `advantages`, `old_logprobs` and (when kl_coef > 0) `ref_logprobs` from the batch extras.
    """

    def reduce(per_token: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return aggregate(per_token, mask, alg.loss_agg, num_sequences, num_tokens, constant=max_response_length)

    def loss_fn(batch: TokenBatch, logprobs: torch.Tensor, entropy: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        mask = batch.loss_mask
        pg, clipped = clipped_surrogate(
            logprobs, batch.extras["old_logprobs"], batch.extras["advantages"], alg.clip_low, alg.clip_high, alg.dual_clip
        )
        if alg.entropy_only:
            pg = torch.zeros_like(pg)
        loss = reduce(pg, mask)
        metrics = {"loss/policy": float(loss), "clip_fraction": float((clipped * mask).sum()) / max(num_tokens, 1.0)}
        if alg.kl_coef > 0 and not alg.kl_in_reward:
            kl = reduce(kl_estimate(logprobs, batch.extras["ref_logprobs"], alg.kl_estimator), mask)
            loss = loss + alg.kl_coef * kl
            metrics["kl"] = float(kl)
        ent = reduce(entropy, mask)
        if alg.entropy_coef:
            loss = loss - alg.entropy_coef * ent
        metrics["entropy"] = float(ent)
        metrics["loss/total"] = float(loss)
        return loss, metrics

    return loss_fn
