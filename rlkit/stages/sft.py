"""`sft`: supervised fine-tuning on (prompt, response) pairs, loss on the assistant's tokens only."""

from __future__ import annotations

import time
from typing import Any

import torch

from rlkit.config import SFTStage
from rlkit.data import PromptStream, load_samples
from rlkit.errors import DataError
from rlkit.learner import build_learner
from rlkit.learner.base import TokenBatch, pad_sequences
from rlkit.models import encode_prompt
from rlkit.stages.context import StageContext, run_steps

RESPONSE_FIELDS = ("response", "solution", "completion", "output")


def response_text(sample: dict[str, Any]) -> str:
    for field in RESPONSE_FIELDS:
        if isinstance(sample.get(field), str) and sample[field]:
            return sample[field]
    raise DataError(f"sample {sample.get('id')}: an sft stage needs a response field (one of {', '.join(RESPONSE_FIELDS)})")


def sft_batch(tokenizer, samples: list[dict[str, Any]], max_length: int) -> TokenBatch:  # noqa: ANN001
    """Prompt (chat template) + response + eos; the loss covers the response and eos."""
    sequences, starts = [], []
    for sample in samples:
        prompt = encode_prompt(tokenizer, sample["prompt"])
        response = tokenizer(response_text(sample), add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        sequences.append((prompt + response)[:max_length])
        starts.append(len(prompt))
    return pad_sequences(sequences, starts, tokenizer.pad_token_id)


def sft_loss(num_tokens: float):  # noqa: ANN201
    def loss_fn(batch: TokenBatch, logprobs: torch.Tensor, entropy: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        nll = -(logprobs * batch.loss_mask).sum() / num_tokens
        return nll, {"loss": float(nll)}

    return loss_fn


def run_sft(ctx: StageContext, stage: SFTStage) -> None:
    samples = load_samples(stage.data, ctx.config.seed)
    response_text(samples[0])  # fail before training when the data has no responses
    stream = PromptStream(samples, ctx.config.seed, stage.data.shuffle)
    learner = build_learner(ctx.config, ctx.model, stage.lr, ctx.device, stage.warmup_steps)

    def step_fn(step: int) -> dict[str, float]:
        started = time.perf_counter()
        batch = sft_batch(ctx.tokenizer, stream.take(stage.batch_size), stage.max_length)
        tokens = float(batch.loss_mask.sum())
        metrics = learner.train_step(batch, sft_loss(tokens))
        elapsed = time.perf_counter() - started
        return {**metrics, "time/step": elapsed, "tokens_per_s": float(batch.attention_mask.sum()) / elapsed}

    run_steps(ctx, stage, learner, stream, step_fn, {"loss": "loss"})
