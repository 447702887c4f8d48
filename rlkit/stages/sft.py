"""`sft`: supervised fine-tuning on (prompt, response) pairs, loss on the assistant's tokens only."""

from __future__ import annotations

import time
from typing import Any

import torch

from rlkit.config import SFTStage
from rlkit.data import PromptStream, load_samples
from rlkit.errors import DataError
from rlkit.learner.base import TokenBatch, pad_sequences
from rlkit.models import encode_prompt
from rlkit.stages.context import StageContext, run_steps
from rlkit.stages.registry import STAGES

# `completion` before `solution`: an `rlkit generate` row keeps its problem's reference `solution` beside the
# sampled `completion`, and SFT on such rows (rejection-sampled distillation) must learn the sample
RESPONSE_FIELDS = ("response", "completion", "solution", "output")


def response_text(sample: dict[str, Any]) -> str:
    for field in RESPONSE_FIELDS:
        if isinstance(sample.get(field), str) and sample[field]:
            return sample[field]
    raise DataError(f"sample {sample.get('id')}: an sft stage needs a response field (one of {', '.join(RESPONSE_FIELDS)})")


def sft_sequences(tokenizer, samples: list[dict[str, Any]], max_length: int) -> tuple[list[list[int]], list[int]]:  # noqa: ANN001
    """Prompt (chat template) + response + eos, cut at max_length; and where each response starts."""
    sequences, starts = [], []
    for sample in samples:
        prompt = encode_prompt(tokenizer, sample["prompt"])
        response = tokenizer(response_text(sample), add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        sequences.append((prompt + response)[:max_length])
        starts.append(len(prompt))
    return sequences, starts


def pack_sequences(sequences: list[list[int]], starts: list[int], max_length: int, pad_id: int) -> TokenBatch:
    """Several sequences per row, up to max_length tokens, so little compute goes to padding.

    Rows are filled first-fit in the given order. `position_ids` restart at 0 for every sequence
    (and for the padding at a row's end): the learner then attends within each sequence only.
    The loss mask covers each sequence's response, as without packing.
    """
    rows: list[list[int]] = []  # indices of the sequences in each row
    room: list[int] = []
    for index, seq in enumerate(sequences):
        row = next((r for r, free in enumerate(room) if free >= len(seq)), None)
        if row is None:
            rows.append([])
            room.append(max_length)
            row = len(rows) - 1
        rows[row].append(index)
        room[row] -= len(seq)
    width = max(max_length - free for free in room)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    loss_mask = torch.zeros((len(rows), width), dtype=torch.float)
    positions = torch.zeros((len(rows), width), dtype=torch.long)
    for r, members in enumerate(rows):
        at = 0
        for index in members:
            seq = sequences[index]
            ids[r, at : at + len(seq)] = torch.tensor(seq, dtype=torch.long)
            attention[r, at : at + len(seq)] = 1
            loss_mask[r, at + starts[index] : at + len(seq)] = 1.0
            positions[r, at : at + len(seq)] = torch.arange(len(seq))
            at += len(seq)
        positions[r, at:] = torch.arange(width - at)  # padding: a sequence of its own
    return TokenBatch(ids, attention, loss_mask, position_ids=positions)


def sft_loss(num_tokens: float):  # noqa: ANN201
    def loss_fn(batch: TokenBatch, logprobs: torch.Tensor, entropy: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        nll = -(logprobs * batch.loss_mask).sum() / num_tokens
        return nll, {"loss": nll.detach()}  # read by the learner once a step (no sync a micro-batch)

    return loss_fn


@STAGES.register("sft")
def run_sft(ctx: StageContext, stage: SFTStage) -> None:
    samples = load_samples(stage.data)
    response_text(samples[0])  # fail before training when the data has no responses
    stream = PromptStream(samples, ctx.config.seed, stage.data.shuffle)
    learner = ctx.build_learner(stage)

    def step_fn(step: int) -> dict[str, float]:
        started = time.perf_counter()
        sequences, starts = sft_sequences(ctx.tokenizer, stream.take(stage.batch_size), stage.max_length)
        if stage.packing:
            batch = pack_sequences(sequences, starts, stage.max_length, ctx.tokenizer.pad_token_id)
        else:
            batch = pad_sequences(sequences, starts, ctx.tokenizer.pad_token_id)
        tokens = float(batch.loss_mask.sum())
        metrics = learner.train_step(batch, sft_loss(tokens))
        elapsed = time.perf_counter() - started
        return {**metrics, "time/step": elapsed, "tokens_per_s": float(batch.attention_mask.sum()) / elapsed}

    run_steps(ctx, stage, learner, stream, step_fn, {"loss": "loss"})
