"""`rl`: policy optimization with verifiable rewards. `rl_step` is one step, in plain sight:

    prompts -> generate -> score -> advantages -> logprobs -> train -> weight sync
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any

import torch

from rlkit.algos.advantages import group_normalized_advantages
from rlkit.algos.rl_loss import make_policy_loss
from rlkit.config import RLStage, RolloutConfig
from rlkit.data import PromptStream, load_samples
from rlkit.learner import build_learner
from rlkit.learner.base import Learner, TokenBatch, pad_sequences
from rlkit.learner.logprobs import sequence_logprobs
from rlkit.models import encode_prompt
from rlkit.rollout.base import Completion, RolloutEngine, SamplingParams
from rlkit.scoring.pool import RewardPool
from rlkit.stages.context import StageContext, run_steps


@dataclass
class RLParts:
    engine: RolloutEngine
    learner: Learner
    scorer: RewardPool
    tokenizer: Any
    reference: torch.nn.Module | None  # frozen initial policy for the KL term


def completions_to_batch(completions: list[Completion], advantages: torch.Tensor, pad_id: int) -> TokenBatch:
    batch = pad_sequences(
        [c.prompt_ids + c.response_ids for c in completions], [len(c.prompt_ids) for c in completions], pad_id
    )
    batch.extras["advantages"] = advantages.float()[:, None].expand_as(batch.loss_mask).contiguous()
    return batch


def sampling_params(rollout: RolloutConfig, seed: int) -> SamplingParams:
    return SamplingParams(n=rollout.n, temperature=rollout.temperature, top_p=rollout.top_p, max_new_tokens=rollout.max_new_tokens, seed=seed)


def rl_step(
    parts: RLParts, stage: RLStage, rollout: RolloutConfig, prompts: list[dict[str, Any]], seed: int, accuracy_reward: str = "math"
) -> dict[str, float]:
    alg = stage.algorithm
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[f"time/{name}"] = now - clock
        clock = now

    # 1. generate: n samples per prompt
    prompt_ids = [encode_prompt(parts.tokenizer, p["prompt"]) for p in prompts]
    completions = parts.engine.generate(prompt_ids, sampling_params(rollout, seed))
    lap("generate")

    # 2. score with the recipe's rewards
    rewards = parts.scorer.score([c.text for c in completions], [prompts[c.prompt_index] for c in completions])
    reward = torch.tensor(rewards.total, dtype=torch.float)
    lap("reward")

    # 3. advantages, one group per prompt
    advantages = group_normalized_advantages(reward, rollout.n, normalize_std=alg.normalize_std and alg.advantage == "grpo")
    batch = completions_to_batch(completions, advantages, parts.tokenizer.pad_token_id)
    if alg.overlong_filter:
        truncated = torch.tensor([c.finish_reason == "length" for c in completions])
        batch.loss_mask[truncated] = 0.0

    # 4. log-probabilities of the sampled tokens under the current policy (the ratio's denominator) and the reference
    batch.extras["old_logprobs"], _ = parts.learner.logprobs(batch)
    if parts.reference is not None:
        with torch.no_grad():
            device = next(parts.reference.parameters()).device
            ref, _ = sequence_logprobs(parts.reference, batch.input_ids.to(device), batch.attention_mask.to(device))
        batch.extras["ref_logprobs"] = ref.cpu()
    lap("logprobs")

    # 5. one optimizer step on the surrogate loss
    num_tokens = float(batch.loss_mask.sum())
    loss_fn = make_policy_loss(alg, len(completions), num_tokens, rollout.max_new_tokens)
    train_metrics = parts.learner.train_step(batch, loss_fn)
    lap("train")

    # 6. weight sync learner -> engine (free when they share the module)
    parts.engine.update_weights(parts.learner.named_weights())
    lap("sync")

    lengths = torch.tensor([len(c.response_ids) for c in completions], dtype=torch.float)
    step_time = sum(timings.values())
    metrics = {
        "reward/mean": float(reward.mean()),
        "reward/std": float(reward.std()) if len(reward) > 1 else 0.0,
        "reward/errors": rewards.errors,
        "reward/timeouts": rewards.timeouts,
        "response_length/mean": float(lengths.mean()),
        "response_length/max": float(lengths.max()),
        "response_length/truncated": sum(c.finish_reason == "length" for c in completions) / len(completions),
        "time/step": step_time,
        "tokens_per_s": float(lengths.sum()) / max(timings["time/generate"], 1e-9),
        **timings,
        **train_metrics,
    }
    for name, scores in rewards.per_reward.items():
        metrics[f"reward/{name}"] = sum(scores) / max(len(scores), 1)
    if f"reward/{accuracy_reward}" in metrics:
        metrics["accuracy"] = metrics[f"reward/{accuracy_reward}"]
    return metrics


def run_rl(ctx: StageContext, stage: RLStage) -> None:
    samples = load_samples(stage.data, ctx.config.seed)
    stream = PromptStream(samples, ctx.config.seed, stage.data.shuffle)
    reference = None
    if stage.algorithm.kl_coef > 0:
        reference = copy.deepcopy(ctx.model).eval().requires_grad_(False)
    learner = build_learner(ctx.config, ctx.model, stage.lr, ctx.device, stage.warmup_steps)
    scorer = RewardPool(ctx.config.rewards, ctx.config.reward.workers, ctx.config.reward.timeout)
    parts = RLParts(ctx.engine, learner, scorer, ctx.tokenizer, reference)
    try:
        run_steps(
            ctx,
            stage,
            learner,
            stream,
            lambda step: rl_step(parts, stage, ctx.config.rollout, stream.take(stage.batch_size),
                                 seed=ctx.config.seed * 100003 + step, accuracy_reward=ctx.config.eval.reward),
            {"reward": "reward/mean", "acc": "accuracy", "eval": "eval/accuracy"},
            eval_every=ctx.config.eval.every,
        )
    finally:
        scorer.close()
