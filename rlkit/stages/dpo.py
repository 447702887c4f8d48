"""`dpo` and `rollout_dpo`: preference optimization against a frozen copy of the starting policy.

dpo:          (prompt, chosen, rejected) rows from a file.
rollout_dpo:  the policy samples rollout.n responses per prompt, the recipe's rewards label them, and
              a correct response is paired with an incorrect one of the same prompt (prompts where all
              are right or all are wrong give no pair and are skipped).
"""

from __future__ import annotations

import random
import time
from typing import Any

import torch

from rlkit.algos.dpo_loss import dpo_loss
from rlkit.algos.pairs import select_pairs
from rlkit.config import DPOStage, RolloutDPOStage
from rlkit.data import PromptStream, load_samples
from rlkit.errors import DataError
from rlkit.learner.base import LossFn, TokenBatch, pad_sequences
from rlkit.models import encode_prompt
from rlkit.rollout.base import SamplingParams
from rlkit.scoring.pool import RewardPool
from rlkit.scoring.registry import check_samples
from rlkit.stages.context import StageContext, run_steps, step_seed
from rlkit.stages.registry import STAGES


def response_of(value: Any, field: str, sample: dict[str, Any]) -> str:
    """A preference field is a string or chat messages (the last assistant message is the response)."""
    if isinstance(value, str) and value:
        return value
    if isinstance(value, (list, tuple)) and value and isinstance(value[-1], dict) and "content" in value[-1]:
        return str(value[-1]["content"])
    raise DataError(f"sample {sample.get('id')}: a dpo stage needs '{field}' as a string or chat messages, got {type(value).__name__}")


def preference_batch(pairs: list[tuple[list[int], list[int], list[int]]], max_length: int, pad_id: int) -> TokenBatch:
    """(prompt ids, chosen ids, rejected ids) -> rows [chosen 0, rejected 0, chosen 1, ...]; loss on responses.

    Chosen and rejected of a pair are neighbours and form a row group: no micro-batch or rank splits them.
    """
    sequences, starts = [], []
    for prompt, chosen, rejected in pairs:
        for response in (chosen, rejected):
            sequences.append((prompt + response)[:max_length])
            starts.append(min(len(prompt), max_length))
    batch = pad_sequences(sequences, starts, pad_id)
    batch.row_group = 2
    return batch


def make_dpo_loss(stage: DPOStage, num_pairs: int) -> LossFn:
    """Mean pair loss over the whole batch; reads the batch's `ref_logprobs`."""

    def loss_fn(batch: TokenBatch, logprobs: torch.Tensor, entropy: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        if len(batch) % 2:
            raise ValueError(f"a DPO micro-batch of {len(batch)} rows split a (chosen, rejected) pair; build batches with preference_batch (row_group 2)")
        mask = batch.loss_mask
        seq = (logprobs * mask).sum(1)
        ref = (batch.ref_logprobs * mask).sum(1)
        lengths = mask.sum(1)
        loss, chosen_reward, rejected_reward = dpo_loss(
            seq[0::2], seq[1::2], ref[0::2], ref[1::2], stage.beta, stage.loss, lengths[0::2], lengths[1::2]
        )
        total = loss.sum() / num_pairs
        margin = chosen_reward - rejected_reward
        return total, {
            "loss": float(total.detach()),
            "rewards/chosen": float(chosen_reward.sum()) / num_pairs,
            "rewards/rejected": float(rejected_reward.sum()) / num_pairs,
            "rewards/margin": float(margin.sum()) / num_pairs,
            "rewards/accuracy": float((margin > 0).float().sum()) / num_pairs,
        }

    return loss_fn


@STAGES.register("rollout_dpo", rl_like=True)
@STAGES.register("dpo", rl_like=True)
def run_dpo(ctx: StageContext, stage: DPOStage) -> None:
    samples = load_samples(stage.data)
    stream = PromptStream(samples, ctx.config.seed, stage.data.shuffle)
    # the learner and the reference live where the runtime puts them (Ray actors under runtime: ray);
    # the reference is the policy as the stage starts (under LoRA: the same module, adapter disabled)
    learner = ctx.build_learner(stage)
    reference = learner.reference_policy()
    tokenizer = ctx.tokenizer

    def train_on(pairs: list[tuple[list[int], list[int], list[int]]]) -> dict[str, float]:
        batch = preference_batch(pairs, stage.max_length, tokenizer.pad_token_id)
        batch.ref_logprobs, _ = reference.logprobs(batch)
        metrics = learner.train_step(batch, make_dpo_loss(stage, len(pairs)))
        ctx.engine.update_weights(learner.named_weights())  # free when the engine shares the module
        return metrics

    if isinstance(stage, RolloutDPOStage):
        check_samples(ctx.config.rewards, samples, stage.data.source)  # e.g. a row without a gold answer
        scorer = ctx.build_scorer()

        def step_fn(step: int) -> dict[str, float]:
            return rollout_dpo_step(ctx, stage, scorer, stream, train_on, step)

        status = {"loss": "loss", "pairs": "pairs", "acc": "accuracy", "eval": "eval/accuracy"}
    else:
        scorer = None
        response_of(samples[0].get("chosen"), "chosen", samples[0])  # fail before training on data without pairs

        def step_fn(step: int) -> dict[str, float]:
            started = time.perf_counter()
            rows = stream.take(stage.batch_size)
            pairs = [
                (
                    encode_prompt(tokenizer, s["prompt"]),
                    tokenizer(response_of(s.get("chosen"), "chosen", s), add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id],
                    tokenizer(response_of(s.get("rejected"), "rejected", s), add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id],
                )
                for s in rows
            ]
            return {**train_on(pairs), "pairs": float(len(pairs)), "time/step": time.perf_counter() - started}

        status = {"loss": "loss", "margin": "rewards/margin"}
    try:
        run_steps(ctx, stage, learner, stream, step_fn, status, eval_every=ctx.config.eval.every)
    finally:
        if scorer is not None:
            scorer.close()


def rollout_dpo_step(ctx: StageContext, stage: RolloutDPOStage, scorer: RewardPool, stream: PromptStream, train_on, step: int) -> dict[str, float]:
    """Sample k responses per prompt, label them with the rewards, pair correct with incorrect, take a DPO step."""
    started = time.perf_counter()
    rollout, n = ctx.config.rollout, ctx.config.rollout.n
    prompts = stream.take(stage.batch_size)
    prompt_ids = [encode_prompt(ctx.tokenizer, p["prompt"]) for p in prompts]
    seed = step_seed(ctx.config.seed, step)
    sampling = SamplingParams(n=n, temperature=rollout.temperature_at(step, stage.steps), top_p=rollout.top_p, max_new_tokens=rollout.max_new_tokens, seed=seed)
    completions = ctx.engine.generate(prompt_ids, sampling)
    scored = scorer.score([c.text for c in completions], [prompts[c.prompt_index] for c in completions])
    # correct = the accuracy reward (eval.reward) when the recipe has it, else the weighted total
    labels = scored.per_reward.get(ctx.config.eval.reward, scored.total)
    rng = random.Random(seed)
    pairs, prompts_with_pairs = [], 0
    for group in range(len(prompts)):
        rows = range(group * n, (group + 1) * n)
        chosen_rejected = select_pairs(
            [labels[i] > 0.5 for i in rows], [len(completions[i].response_ids) for i in rows], stage.pair_selection, stage.pairs_per_prompt, rng
        )
        prompts_with_pairs += bool(chosen_rejected)
        for c, r in chosen_rejected:
            chosen, rejected = completions[group * n + c], completions[group * n + r]
            pairs.append((chosen.prompt_ids, chosen.response_ids, rejected.response_ids))
    metrics = {
        "accuracy": sum(labels) / len(labels),
        "reward/mean": sum(scored.total) / len(scored.total),
        "reward/errors": scored.errors,
        "pairs": float(len(pairs)),
        "prompts_with_pairs": prompts_with_pairs / len(prompts),
        "rollout/temperature": sampling.temperature,
    }
    generated = time.perf_counter()
    if pairs:  # a batch where every prompt was all right or all wrong teaches nothing
        metrics.update(train_on(pairs))
    metrics["time/generate"] = generated - started
    metrics["time/step"] = time.perf_counter() - started
    return metrics
