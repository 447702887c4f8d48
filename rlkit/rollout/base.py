"""The rollout seam: `RolloutEngine.generate(prompts, sampling) -> list[Completion]`."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

import torch


@dataclass(frozen=True)
class SamplingParams:
    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 64
    seed: int | None = None

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


@dataclass
class Completion:
    """One sampled response. `logprobs[i]` is the sampling log-probability of `response_ids[i]`."""

    prompt_index: int
    prompt_ids: list[int]
    response_ids: list[int]
    logprobs: list[float]
    text: str
    finish_reason: str  # "stop" (eos) or "length" (hit max_new_tokens)
    info: dict = field(default_factory=dict)


class RolloutEngine(Protocol):
    def generate(self, prompts: list[list[int]], sampling: SamplingParams) -> list[Completion]:
        """Sample `sampling.n` completions per prompt (prompt token ids), grouped by prompt in order."""

    def update_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Load new policy weights (full names as in the HF state dict)."""

    def sleep(self) -> None:
        """Free accelerator memory while the learner trains (colocated placement)."""

    def wake(self) -> None:
        """Take memory back before the next generate."""

    def close(self) -> None:
        """Give back what the engine holds (vLLM keeps its `gpu_memory_utilization` share until closed)."""
