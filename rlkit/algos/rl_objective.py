"""The RL objective of one optimizer batch: clipped surrogate + KL to the reference - entropy bonus."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from rlkit.algos.kl import kl_estimate
from rlkit.algos.loss_aggregation import aggregate
from rlkit.algos.ppo_clip import clipped_surrogate

if TYPE_CHECKING:  # types only: algos/ stays below the config and the learners
    from rlkit.config import AlgorithmConfig
    from rlkit.learner.base import LossFn, TokenBatch


def make_policy_loss(alg: AlgorithmConfig, num_sequences: int, num_tokens: float, max_response_length: int) -> LossFn:
    """A LossFn whose micro-batch values sum to the loss of the whole batch.

    Reads the batch's `advantages` [B, L], `old_logprobs` and (for the KL loss term) `ref_logprobs`.
    Without `old_logprobs` the batch is on-policy (one update per rollout batch): the
    ratio's denominator is the current log-probability, detached, which saves a forward pass.

    The policy and KL terms are aggregated by `alg.loss_agg`; the entropy term is always the token
    mean over the batch, so `entropy_coef` means the same for every aggregation (as in TRL, and
    verl's default token-mean). `entropy_only` drops the policy term: the entropy alone drives the update.
    """

    def reduce(per_token: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return aggregate(per_token, mask, alg.loss_agg, num_sequences, num_tokens, constant=max_response_length)

    def loss_fn(batch: TokenBatch, logprobs: torch.Tensor, entropy: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        mask = batch.loss_mask
        # outside the mask the learner passes logprobs of 0 (it skips the head there): the ratio there is 1, not
        # exp(-old_logprobs), which overflows for a far-off token and would make the masked-out inf * 0 a NaN loss
        old = logprobs.detach() if batch.old_logprobs is None else torch.where(mask > 0, batch.old_logprobs, logprobs.detach())
        pg, clipped = clipped_surrogate(logprobs, old, batch.advantages, alg.clip_low, alg.clip_high, alg.dual_clip)
        policy = reduce(pg, mask)
        # metrics stay on the device (0-dim tensors): the learner reads them once a step, not once a micro-batch
        metrics = {"loss/policy": policy.detach(), "clip_fraction": (clipped * mask).sum().detach() / max(num_tokens, 1.0)}
        loss = policy.new_zeros(()) if alg.entropy_only else policy
        if alg.kl_coef > 0 and not alg.kl_in_reward:
            per_token_kl = kl_estimate(logprobs, batch.ref_logprobs, alg.kl_estimator)
            if alg.kl_ratio_correction:  # the samples came from the old policy: reweight to the current one
                per_token_kl = per_token_kl * torch.exp(logprobs - old)
            kl = reduce(per_token_kl, mask)
            loss = loss + alg.kl_coef * kl
            metrics["kl"] = kl.detach()
        ent = (entropy * mask).sum() / max(num_tokens, 1.0)
        if alg.entropy_coef:
            loss = loss - alg.entropy_coef * ent
        metrics["entropy"] = ent.detach()
        metrics["loss/total"] = loss.detach()
        return loss, metrics

    return loss_fn
