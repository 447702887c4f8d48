"""`rl`: policy optimization with verifiable rewards. `rl_step` is one step, in plain sight:

    prompts -> generate -> score -> advantages -> logprobs -> train -> weight sync
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch

from rlkit.algos.advantage_estimators import ADVANTAGE_ESTIMATORS, AdvantageInputs
from rlkit.algos.advantages import token_rewards
from rlkit.algos.kl import kl_estimate
from rlkit.algos.rebalance import rebalanced_keep
from rlkit.algos.rl_objective import make_policy_loss
from rlkit.algos.sampling import band_counts, groups_in_band, groups_with_signal, overlong_mask
from rlkit.algos.value_loss import explained_variance
from rlkit.config import AlgorithmConfig, RLStage, RolloutConfig, RunConfig
from rlkit.data import PromptStream, load_samples
from rlkit.learner.base import Learner, TokenBatch, pad_sequences
from rlkit.learner.critic import Critic, LearnerWithCritic
from rlkit.learner.reference import ReferencePolicy
from rlkit.ledger import Ledger
from rlkit.models import encode_prompt
from rlkit.rollout.base import Completion, RolloutEngine, SamplingParams
from rlkit.scoring.pool import RewardPool
from rlkit.scoring.registry import check_samples
from rlkit.stages.context import StageContext, run_steps, step_seed
from rlkit.stages.length_filter import filter_by_length_spread
from rlkit.stages.registry import STAGES
from rlkit.stages.synthesize import synthetic_samples

# Dynamic sampling's round r of a step samples with the step's seed (`step_seed`) + r * ROUND_SEED_STRIDE,
# a prime, so the rounds of a step draw different samples.
ROUND_SEED_STRIDE = 7919


@dataclass
class RLParts:
    engine: RolloutEngine
    learner: Learner
    scorer: RewardPool
    tokenizer: Any
    reference: ReferencePolicy | None  # the KL reference: the policy the stage started from (`learner.reference_policy()`)
    critic: Critic | None = None  # PPO's value model (an estimator with needs_critic)

    def checkpointed(self) -> Learner:
        """What a checkpoint saves: the learner, with the critic when there is one."""
        return self.learner if self.critic is None else LearnerWithCritic(self.learner, self.critic)


def build_rl_parts(
    config: RunConfig,
    stage: RLStage,
    model: torch.nn.Module,
    tokenizer: Any,
    device: torch.device,
    *,
    engine: RolloutEngine | None = None,
    make_learner: Callable[[], Learner] | None = None,
    scorer: RewardPool | None = None,
) -> RLParts:
    """The parts of one RL stage. The stage context passes the engine, learner and scorer its runtime
    places; a program that passes none gets the in-process ones built from `config`. The learner comes
    from a factory because it is built after the critic: LoRA injects adapters into `model` in place,
    and the critic copies the transformer without them."""
    alg, learner_cfg = stage.algorithm, config.learner
    critic = None
    if ADVANTAGE_ESTIMATORS.get(alg.advantage).needs_critic:  # the value model starts from the policy's own transformer
        critic = Critic(model, alg.critic_lr, learner_cfg.micro_batch_size, learner_cfg.max_grad_norm, device)
    if make_learner is None:
        from rlkit.learner import build_learner

        learner = build_learner(config, model, stage.lr, device, stage.warmup_steps)
    else:
        learner = make_learner()
    # taken before the first step: under LoRA the base with the adapter off, else a frozen copy
    reference = learner.reference_policy() if alg.kl_coef > 0 else None
    if engine is None:
        from rlkit.rollout import build_engine

        engine = build_engine(config, model, tokenizer)
    if scorer is None:
        scorer = RewardPool(config.rewards, config.reward.workers, config.reward.timeout)
    return RLParts(engine=engine, learner=learner, scorer=scorer, tokenizer=tokenizer, reference=reference, critic=critic)


@dataclass
class Rollouts:
    """The scored samples of one step, grouped by prompt (rollout.n consecutive samples per prompt)."""

    completions: list[Completion]
    samples: list[dict[str, Any]]  # the prompt's sample dict of each completion
    reward: torch.Tensor  # [B] weighted total
    per_reward: dict[str, list[float]]
    errors: int = 0
    timeouts: int = 0
    rounds: int = 1
    groups_seen: int = 0


def completions_to_batch(completions: list[Completion], pad_id: int) -> TokenBatch:
    """Prompt + response of each completion, right-padded; the loss sees the response tokens."""
    return pad_sequences([c.prompt_ids + c.response_ids for c in completions], [len(c.prompt_ids) for c in completions], pad_id)


def rollout_at(rollout: RolloutConfig, step: int, total_steps: int) -> RolloutConfig:
    """The rollout config of one step: its temperature schedule (if any) resolved to this step's value."""
    return rollout.model_copy(update={"temperature": rollout.temperature_at(step, total_steps)})


def sampling_params(rollout: RolloutConfig, seed: int) -> SamplingParams:
    return SamplingParams(n=rollout.n, temperature=rollout.temperature, top_p=rollout.top_p, max_new_tokens=rollout.max_new_tokens, seed=seed)


def generate_and_score(parts: RLParts, rollout: RolloutConfig, prompts: list[dict[str, Any]], seed: int) -> Rollouts:
    prompt_ids = [encode_prompt(parts.tokenizer, p["prompt"]) for p in prompts]
    completions = parts.engine.generate(prompt_ids, sampling_params(rollout, seed))
    samples = [prompts[c.prompt_index] for c in completions]
    scored = parts.scorer.score([c.text for c in completions], samples)
    reward = torch.tensor(scored.total, dtype=torch.float)
    return Rollouts(completions=completions, samples=samples, reward=reward, per_reward=scored.per_reward,
                    errors=scored.errors, timeouts=scored.timeouts, rounds=1, groups_seen=len(prompts))


def keep_groups(rollouts: Rollouts, keep: torch.Tensor, n: int) -> Rollouts:
    """The rollouts of the groups where `keep` [num_groups] is True."""
    rows = [i for i in range(len(rollouts.completions)) if keep[i // n]]
    return replace(
        rollouts,
        completions=[rollouts.completions[i] for i in rows],
        samples=[rollouts.samples[i] for i in rows],
        reward=rollouts.reward[rows],
        per_reward={name: [scores[i] for i in rows] for name, scores in rollouts.per_reward.items()},
    )


def join_rollouts(a: Rollouts, b: Rollouts) -> Rollouts:
    return Rollouts(
        completions=a.completions + b.completions,
        samples=a.samples + b.samples,
        reward=torch.cat([a.reward, b.reward]),
        per_reward={name: a.per_reward.get(name, []) + b.per_reward.get(name, []) for name in {*a.per_reward, *b.per_reward}},
        errors=a.errors + b.errors,
        timeouts=a.timeouts + b.timeouts,
        rounds=a.rounds + b.rounds,
        groups_seen=a.groups_seen + b.groups_seen,
    )


def accuracy_scores(rollouts: Rollouts, accuracy_reward: str) -> torch.Tensor:
    """[B] the accuracy reward's scores (the weighted total when that reward is not among the recipe's)."""
    scores = rollouts.per_reward.get(accuracy_reward)
    return rollouts.reward if scores is None else torch.tensor(scores, dtype=torch.float)


def group_filter(alg: AlgorithmConfig, n: int, accuracy_reward: str) -> Callable[[Rollouts], torch.Tensor]:
    """Which groups a step keeps: DAPO's groups whose rewards differ, and those in the accuracy band."""

    def keep(rollouts: Rollouts) -> torch.Tensor:
        mask = torch.ones(len(rollouts.completions) // n, dtype=torch.bool)
        if alg.dynamic_sampling:
            mask &= groups_with_signal(rollouts.reward, n)
        if alg.accuracy_band is not None:
            mask &= groups_in_band(accuracy_scores(rollouts, accuracy_reward), n, *alg.accuracy_band)
        return mask

    return keep


def dynamic_sampling(
    parts: RLParts, rollout: RolloutConfig, alg: AlgorithmConfig, first: Rollouts, more_prompts, want_groups: int, seed: int,  # noqa: ANN001
    keep: Callable[[Rollouts], torch.Tensor],
) -> tuple[Rollouts, Rollouts]:
    """Keep only the groups `keep` passes (DAPO: rewards that differ; an accuracy band); sample more prompts
    until `want_groups` are kept or `max_sampling_rounds` rounds ran. Returns (kept, everything sampled)."""
    seen = first
    kept = keep_groups(first, keep(first), rollout.n)
    while len(kept.completions) < want_groups * rollout.n and seen.rounds < alg.max_sampling_rounds and more_prompts:
        fresh = generate_and_score(parts, rollout, more_prompts(want_groups), seed + ROUND_SEED_STRIDE * seen.rounds)
        seen = join_rollouts(seen, fresh)
        kept = join_rollouts(kept, keep_groups(fresh, keep(fresh), rollout.n))
    kept = keep_groups(kept, torch.arange(len(kept.completions) // rollout.n) < want_groups, rollout.n)
    return kept, seen


def mini_batches(batch: TokenBatch, count: int, generator: torch.Generator) -> list[TokenBatch]:
    """`count` random, disjoint mini-batches of the batch's sequences (one PPO epoch)."""
    order = torch.randperm(len(batch), generator=generator)
    return [batch.select(index) for index in order.chunk(count) if len(index)]


def mean_metrics(records: list[dict[str, float]]) -> dict[str, float]:
    keys = {k for r in records for k in r}
    return {k: sum(r[k] for r in records if k in r) / sum(k in r for r in records) for k in keys}


def rl_step(
    parts: RLParts,
    stage: RLStage,
    rollout: RolloutConfig,
    prompts: list[dict[str, Any]],
    seed: int,
    accuracy_reward: str = "math",
    more_prompts: Callable[[int], list[dict[str, Any]]] | None = None,
    step: int = 1,
    on_sampled: Callable[[Rollouts], None] | None = None,
) -> dict[str, float]:
    """One RL step. `more_prompts(k)` supplies fresh prompts for dynamic sampling; `step` (1-based)
    decides whether the critic is still warming up; `on_sampled` sees every group sampled (the ledger)."""
    alg = stage.algorithm
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[f"time/{name}"] = now - clock
        clock = now

    # 1. generate n samples per prompt, and 2. score them with the recipe's rewards
    rollouts = seen = generate_and_score(parts, rollout, prompts, seed)
    if (alg.dynamic_sampling or alg.accuracy_band is not None) and not alg.entropy_only:
        keep = group_filter(alg, rollout.n, accuracy_reward)
        rollouts, seen = dynamic_sampling(parts, rollout, alg, rollouts, more_prompts, len(prompts), seed, keep)
    lap("generate")
    if on_sampled is not None:
        on_sampled(seen)
    completions, reward = rollouts.completions, rollouts.reward
    metrics = rollout_metrics(seen, accuracy_reward)
    if alg.accuracy_band is not None:
        below, above = band_counts(accuracy_scores(seen, accuracy_reward), rollout.n, *alg.accuracy_band)
        metrics.update({"sampling/below_band": float(below), "sampling/above_band": float(above)})
    if not completions:  # dynamic sampling found no group with a signal: nothing to learn from
        return {**metrics, **timings, "sampling/kept_groups": 0.0, "sampling/rounds": float(seen.rounds)}

    batch = completions_to_batch(completions, parts.tokenizer.pad_token_id)
    if alg.overlong_filter:  # truncated samples leave the loss
        batch.loss_mask = batch.loss_mask * overlong_mask([c.finish_reason for c in completions])[:, None]
    keep = None
    if alg.rebalance:  # Phi-4-Mini-Reasoning: all positives of a group and as many random negatives stay in the loss
        correct = torch.tensor(rollouts.per_reward.get(accuracy_reward, reward.tolist())) > 0.5
        keep = rebalanced_keep(correct, rollout.n, torch.Generator().manual_seed(seed))
        batch.loss_mask = batch.loss_mask * keep[:, None]
        metrics["rebalance/kept_fraction"] = float(keep.float().mean())
    mask = batch.loss_mask

    # 3. log-probabilities: the policy's before the update (the ratio's denominator) and the reference's
    on_policy = alg.epochs == 1 and alg.mini_batches == 1 and not alg.kl_in_reward
    if not on_policy:  # else the loss uses the current log-probabilities, detached: one forward pass fewer
        batch.old_logprobs, _ = parts.learner.logprobs(batch)
    if parts.reference is not None:
        batch.ref_logprobs, _ = parts.reference.logprobs(batch)
    lap("logprobs")

    # 4. advantages: per-sample estimators compare the samples of a prompt; per-token ones spread the reward
    kl_penalty = None
    if alg.kl_in_reward:
        kl_penalty = kl_estimate(batch.old_logprobs, batch.ref_logprobs, alg.kl_estimator) * mask
        metrics["kl_penalty"] = float(kl_penalty.sum() / mask.sum().clamp(min=1.0))
    if alg.entropy_only:  # the outcome reward is ignored
        batch.advantages = torch.zeros_like(mask)
    else:
        estimator = ADVANTAGE_ESTIMATORS.get(alg.advantage)
        if estimator.per_token:
            rewards = token_rewards(reward, mask, kl_penalty, alg.kl_coef)
        else:
            rewards = reward if kl_penalty is None else reward - alg.kl_coef * kl_penalty.sum(1)
        values = parts.critic.values(batch) if estimator.needs_critic else None
        inputs = AdvantageInputs(rewards=rewards, mask=mask, group_size=rollout.n, normalize_std=alg.normalize_std,
                                 gamma=alg.gamma, lam=alg.lam, values=values, keep=keep)
        batch.advantages, returns = estimator.fn(inputs)
        if values is not None:
            batch.old_values, batch.returns = values, returns
            metrics["critic/explained_variance"] = explained_variance(values, returns, mask)  # before this step's update
    lap("advantages")

    # 5. optimizer steps: `epochs` passes over `mini_batches` random mini-batches (one step when both are 1);
    #    while the critic warms up, only the critic trains
    policy_frozen = parts.critic is not None and step <= alg.critic_warmup_steps
    generator = torch.Generator().manual_seed(seed)
    updates: list[dict[str, float]] = []
    for _ in range(alg.epochs):
        for mini in mini_batches(batch, alg.mini_batches, generator) if alg.mini_batches > 1 else [batch]:
            update: dict[str, float] = {}
            if parts.critic is not None:
                update.update(parts.critic.train_step(mini, alg.value_clip))
            if not policy_frozen:
                loss_fn = make_policy_loss(alg, len(mini), float(mini.loss_mask.sum()), rollout.max_new_tokens)
                update.update(parts.learner.train_step(mini, loss_fn))
            updates.append(update)
    lap("train")

    # 6. weight sync learner -> engine (free when they share the module)
    if not policy_frozen:
        parts.engine.update_weights(parts.learner.named_weights())
    lap("sync")

    lengths = torch.tensor([len(c.response_ids) for c in seen.completions], dtype=torch.float)
    metrics.update(
        {
            "time/step": sum(timings.values()),
            "tokens_per_s": float(lengths.sum()) / max(timings["time/generate"], 1e-9),
            "sampling/kept_groups": len(completions) / rollout.n,
            "sampling/rounds": float(seen.rounds),
            **timings,
            **mean_metrics(updates),
        }
    )
    return metrics


def rollout_metrics(rollouts: Rollouts, accuracy_reward: str) -> dict[str, float]:
    """Reward and length statistics of every sample generated this step (before any filtering)."""
    reward = rollouts.reward
    lengths = torch.tensor([len(c.response_ids) for c in rollouts.completions], dtype=torch.float)
    metrics = {
        "reward/mean": float(reward.mean()),
        "reward/std": float(reward.std()) if len(reward) > 1 else 0.0,
        "reward/errors": rollouts.errors,
        "reward/timeouts": rollouts.timeouts,
        "response_length/mean": float(lengths.mean()),
        "response_length/max": float(lengths.max()),
        "response_length/std": float(lengths.std()) if len(lengths) > 1 else 0.0,
        "response_length/truncated": sum(c.finish_reason == "length" for c in rollouts.completions) / len(rollouts.completions),
    }
    for name, scores in rollouts.per_reward.items():
        metrics[f"reward/{name}"] = sum(scores) / max(len(scores), 1)
    if f"reward/{accuracy_reward}" in metrics:
        metrics["accuracy"] = metrics[f"reward/{accuracy_reward}"]
    return metrics


@STAGES.register("rl", rl_like=True)
def run_rl(ctx: StageContext, stage: RLStage) -> None:
    samples = load_samples(stage.data) + synthetic_samples(ctx.run_dir, stage.data)  # SwS: + the new problems
    check_samples(ctx.config.rewards, samples, stage.data.source)  # e.g. a row without a gold answer, before any step
    samples = filter_by_length_spread(ctx, stage, samples)  # with the starting policy, before any step
    stream = PromptStream(samples, ctx.config.seed, stage.data.shuffle)
    parts = build_rl_parts(ctx.config, stage, ctx.model, ctx.tokenizer, ctx.device,
                           engine=ctx.engine, make_learner=lambda: ctx.build_learner(stage), scorer=ctx.build_scorer())
    ledger, accuracy_reward = Ledger(ctx.run_dir), ctx.config.eval.reward

    def step_fn(step: int) -> dict[str, float]:
        first = stream.position  # the ledger's epochs: where each sampled prompt sat in the stream
        metrics = rl_step(parts, stage, rollout_at(ctx.config.rollout, step, stage.steps), stream.take(stage.batch_size),
                          seed=step_seed(ctx.config.seed, step), accuracy_reward=accuracy_reward,
                          more_prompts=stream.take, step=step,
                          on_sampled=lambda seen: ledger.record_rollouts(str(stage.name), step, seen, first, len(samples),
                                                                         ctx.config.rollout.n, accuracy_reward))
        return {**metrics, "rollout/temperature": ctx.config.rollout.temperature_at(step, stage.steps)}

    try:
        run_steps(
            ctx,
            stage,
            parts.checkpointed(),  # checkpoints keep the critic
            stream,
            step_fn,
            {"reward": "reward/mean", "acc": "accuracy", "eval": "eval/accuracy"},
            eval_every=ctx.config.eval.every,
        )
    finally:
        parts.scorer.close()
