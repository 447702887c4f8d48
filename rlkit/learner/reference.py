"""The KL reference as the RL step sees it: per-token log-probabilities under a fixed policy.

A learner hands one out (`learner.reference_policy()`): under LoRA it is the learner's own
module with the adapter disabled, otherwise a frozen copy of the policy taken before the first
step. The Ray learner group hands out one whose ranks each score their shard.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from rlkit.learner.base import TokenBatch


class ReferencePolicy:
    def __init__(self, logprobs: Callable[[TokenBatch], torch.Tensor], kind: str):
        self._logprobs = logprobs
        self.kind = kind  # "adapter_disabled", "frozen_copy" or "remote": shown in logs and tests

    def logprobs(self, batch: TokenBatch) -> tuple[torch.Tensor, None]:
        """[B, L] log p_ref(token t | tokens < t), aligned as `Learner.logprobs`."""
        with torch.no_grad():
            return self._logprobs(batch), None
