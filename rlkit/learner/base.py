"""The learner seam and the batch it consumes."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Protocol

import torch

if TYPE_CHECKING:
    from rlkit.learner.reference import ReferencePolicy


# The per-token tensors a batch may carry besides ids and masks, all [B, L] and aligned with input_ids.
OPTIONAL_TENSORS = ("position_ids", "advantages", "old_logprobs", "ref_logprobs", "old_values", "returns")


@dataclass
class TokenBatch:
    """Right-padded sequences (prompt + response). Per-token tensors are aligned with `input_ids`:
    `loss_mask[b, t] = 1` when token t is a response token that the loss sees, and
    per-token logprobs at t are log p(input_ids[t] | input_ids[:t]).

    The optional tensors are filled by the stage that needs them: the RL step writes advantages,
    old_logprobs (when the update is off-policy), ref_logprobs (KL), old_values and returns (critic);
    DPO writes ref_logprobs; SFT packing writes position_ids."""

    input_ids: torch.Tensor  # [B, L] long
    attention_mask: torch.Tensor  # [B, L]
    loss_mask: torch.Tensor  # [B, L] float
    position_ids: torch.Tensor | None = None  # [B, L] restarting per packed sample; None = 0..L-1
    advantages: torch.Tensor | None = None  # [B, L] zero outside loss_mask
    old_logprobs: torch.Tensor | None = None  # [B, L] the policy's before the update (the ratio's denominator)
    ref_logprobs: torch.Tensor | None = None  # [B, L] the KL / DPO reference's
    old_values: torch.Tensor | None = None  # [B, L] the critic's values the advantages were computed with
    returns: torch.Tensor | None = None  # [B, L] the critic's regression target
    # consecutive rows that must stay in one micro-batch and on one rank: 2 for DPO's (chosen, rejected)
    row_group: int = 1

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def _map(self, fn) -> TokenBatch:  # noqa: ANN001 - fn: Tensor -> Tensor, applied to every tensor present
        tensors = {name: getattr(self, name) for name in ("input_ids", "attention_mask", "loss_mask", *OPTIONAL_TENSORS)}
        return replace(self, **{name: fn(t) for name, t in tensors.items() if t is not None})

    def select(self, index: slice | torch.Tensor | tuple) -> TokenBatch:
        return self._map(lambda t: t[index])

    def row_splits(self, parts: int) -> list[torch.Tensor]:
        """Row indices of `parts` contiguous, near-equal pieces that never cut a row group (some may be empty)."""
        if len(self) % self.row_group:
            raise ValueError(f"a batch of {len(self)} rows does not divide into groups of {self.row_group}")
        groups = torch.arange(len(self)).view(-1, self.row_group)
        return [chunk.flatten() for chunk in groups.tensor_split(parts)]

    def to(self, device: torch.device | str) -> TokenBatch:
        return self._map(lambda t: t.to(device))


def pad_sequences(sequences: list[list[int]], loss_starts: list[int], pad_id: int) -> TokenBatch:
    """Right-pad token lists; the loss covers tokens from `loss_starts[i]` to the end of sequence i."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(sequences), width), dtype=torch.long)
    loss_mask = torch.zeros((len(sequences), width), dtype=torch.float)
    for row, (seq, start) in enumerate(zip(sequences, loss_starts)):
        ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        attention[row, : len(seq)] = 1
        loss_mask[row, start : len(seq)] = 1.0
    return TokenBatch(ids, attention, loss_mask)


# loss_fn(micro_batch, logprobs, entropy) -> (loss already normalized for the whole batch, metrics); a metric may be
# a float or a 0-dim tensor: tensors are summed on the device and read once after the step, not once a micro-batch.
# A loss reads logprobs and entropy only where micro_batch.loss_mask > 0: with learner.head_loss_mask_only the learners
# compute them only there and pass 0 elsewhere.
LossFn = Callable[[TokenBatch, torch.Tensor, torch.Tensor], tuple[torch.Tensor, dict[str, float | torch.Tensor]]]


def read_metrics(totals: dict[str, float | torch.Tensor]) -> dict[str, float]:
    """Summed metrics as floats, the device tensors among them read in one transfer (one sync a step)."""
    on_device = [key for key, value in totals.items() if isinstance(value, torch.Tensor)]
    values = torch.stack([totals[key].detach().float() for key in on_device]).tolist() if on_device else []
    return {**{k: float(v) for k, v in totals.items()}, **dict(zip(on_device, values))}


class Learner(Protocol):
    def logprobs(self, batch: TokenBatch, with_entropy: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Per-token logprobs [B, L] (and entropy) without gradients."""

    def train_step(self, batch: TokenBatch, loss_fn: LossFn) -> dict[str, float]:
        """One optimizer step over the batch, in micro-batches."""

    def named_weights(self) -> Iterable[tuple[str, torch.Tensor]]:
        """Full weights for the rollout engine (merged when training adapters)."""

    def reference_policy(self) -> ReferencePolicy:
        """The frozen starting policy for KL and DPO; taken before the first train_step."""

    def save(self, directory: str) -> None: ...

    def load(self, directory: str) -> None: ...
