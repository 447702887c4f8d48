"""Out of GPU memory in the learner: a one-line error that names the knob to turn, not a CUDA trace."""

from __future__ import annotations

import torch

from rlkit.config import LearnerConfig
from rlkit.errors import RlkitError


class LearnerOutOfMemory(RlkitError):
    """The learner's forward/backward did not fit on the device."""


def knobs_to_turn(config: LearnerConfig, rows: int, width: int) -> list[str]:
    """The settings that lower the learner's peak memory, in the order worth trying."""
    knobs = []
    if config.micro_batch_tokens:
        if rows > 1:
            knobs.append(f"lower learner.micro_batch_tokens (now {config.micro_batch_tokens})")
    elif rows > 1:
        knobs.append(f"set learner.micro_batch_tokens (a token budget per micro-batch, e.g. {max(width, 4096)}) "
                     f"or lower learner.micro_batch_size (now {config.micro_batch_size})")
    if not config.logprob_chunk_size:
        knobs.append("set learner.logprob_chunk_size: 4096 (no fp32 logits kept for backward)")
    if config.logprob_chunk_size and config.keep_head_logits_gib:
        knobs.append(f"lower learner.keep_head_logits_gib (now {config.keep_head_logits_gib:g}; 0 = the LM head's logits "
                     "recomputed in backward, not held)")
    if not config.gradient_checkpointing:
        knobs.append("set learner.gradient_checkpointing: true")
    knobs.append("lower rollout.max_new_tokens (the longest sequence sets the least a micro-batch holds)")
    return knobs


def out_of_memory(config: LearnerConfig, rows: int, width: int, useful: int, device: torch.device) -> LearnerOutOfMemory:
    where = f"a micro-batch of {rows} rows x {width} tokens ({useful} real tokens)"
    if device.type == "cuda":
        total = torch.cuda.get_device_properties(device).total_memory
        where += f"; peak {torch.cuda.max_memory_allocated(device) / 2**30:.1f} of {total / 2**30:.1f} GiB"
    return LearnerOutOfMemory(f"the learner ran out of GPU memory on {where}: " + "; or ".join(knobs_to_turn(config, rows, width)))
