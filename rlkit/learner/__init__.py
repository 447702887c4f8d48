"""Learners: compute log-probabilities and take optimizer steps. DeepSpeed is imported only when selected."""

from rlkit.learner.base import Learner, TokenBatch

__all__ = ["Learner", "TokenBatch", "build_learner"]


def build_learner(config, model, lr: float, device, warmup_steps: int = 0):  # noqa: ANN001 - config is RunConfig
    if config.learner.backend == "torch":
        from rlkit.learner.torch_learner import TorchLearner

        return TorchLearner(model, config.learner, lr=lr, device=device, warmup_steps=warmup_steps)
    if config.learner.backend == "deepspeed":
        from rlkit.learner.deepspeed_learner import DeepSpeedLearner

        return DeepSpeedLearner(model, config.learner, lr=lr, device=device, warmup_steps=warmup_steps)
    raise ValueError(config.learner.backend)
