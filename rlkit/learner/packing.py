"""Token-budget micro-batches: the learner's forward/backward costs what the batch's real tokens cost.

A right-padded RL batch of long-tailed completions is mostly padding when every row is as wide as the
longest. Here the rows (whole row groups: DPO's pairs stay together) are sorted longest first, cut into
micro-batches of at most `budget` real tokens, and each micro-batch's sequences are packed first-fit
into rows as wide as its longest sequence, with `position_ids` restarting at 0 for every sequence: the
model then attends within each sequence only (as SFT packing does), so a packed row computes what its
sequences computed apart, and the rows number about the real tokens over the width.

The loss still sees the padded layout: `unpack` scatters the packed per-token outputs back to
[rows, width] of the original rows, so every loss (token or sequence aggregation, DPO, critic targets)
is unchanged. The scatter is differentiable.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rlkit.learner.base import TokenBatch

WIDTH_MULTIPLE = 64  # packed widths are rounded up to this, so the compiled body sees few distinct shapes


@dataclass
class PackedMicroBatch:
    """Rows `rows` of the batch, as the padded micro-batch the loss reads and as packed rows the model reads."""

    rows: torch.Tensor  # [n] indices into the full batch
    padded: TokenBatch  # the n rows, trimmed to their longest sequence
    input_ids: torch.Tensor  # [R, W] packed
    position_ids: torch.Tensor  # [R, W] restarting at 0 for every sequence (and for the tail padding)
    source: torch.Tensor  # flat indices into [R * W] of every scored token ...
    target: torch.Tensor  # ... and where it lands in the flat [n * width] padded layout
    useful_tokens: int
    # int32 [N + 1]: where each of the N sequences (the tail paddings among them) starts in the flat [R * W] rows,
    # then R * W: the boundaries variable-length attention reads (rlkit/learner/varlen_attention.py)
    cu_seqlens: torch.Tensor | None = None

    @property
    def computed_tokens(self) -> int:
        return self.input_ids.numel()

    def to(self, device: torch.device | str) -> PackedMicroBatch:
        return PackedMicroBatch(self.rows, self.padded.to(device), self.input_ids.to(device), self.position_ids.to(device),
                                self.source.to(device), self.target.to(device), self.useful_tokens,
                                None if self.cu_seqlens is None else self.cu_seqlens.to(device))

    def unpack(self, packed: torch.Tensor) -> torch.Tensor:
        """Per-token values [R, W] of the packed rows -> [n, width] of the padded rows (0 where nothing is scored)."""
        n, width = self.padded.input_ids.shape
        flat = packed.reshape(-1).gather(0, self.source)
        return packed.new_zeros(n * width).scatter(0, self.target, flat).view(n, width)

    def pack(self, padded: torch.Tensor) -> torch.Tensor:
        """Per-token values [n, width] of the padded rows -> [R, W] of the packed rows (0 / False where no scored
        token lands): `unpack`'s inverse on the scored tokens, e.g. the loss mask in the layout the model reads."""
        flat = padded.reshape(-1).gather(0, self.target)
        return padded.new_zeros(self.input_ids.numel()).scatter(0, self.source, flat).view(self.input_ids.shape)


def boundaries(position_ids: torch.Tensor) -> torch.Tensor:
    """int32 [N + 1]: where each of the N sequences of packed rows [R, W] starts in the flat R * W tokens, then R * W,
    read from position ids that restart at 0 for every sequence (and for a row's tail padding), as SFT packing
    (rlkit/stages/sft.py) writes them. Call it on the host copy: it reads the values."""
    flat = position_ids.reshape(-1)
    starts = (flat == 0).nonzero().squeeze(1)
    return torch.cat([starts, torch.tensor([flat.numel()], device=flat.device)]).to(torch.int32)


def attention_boundaries(micro: PackedMicroBatch | TokenBatch) -> torch.Tensor | None:
    """The boundaries a micro-batch's attention gets under `varlen_attention` (from its host copy), or None where the
    mask path runs: rows not packed, or rows that hold one sequence each (`long`: transformers hands those to SDPA
    causally with no mask, which beat the varlen kernel on one H200, a train step of 8.10 vs 8.72 s)."""
    if isinstance(micro, PackedMicroBatch):
        cu_seqlens = micro.cu_seqlens
    elif micro.position_ids is not None:  # packed already (SFT packing): read from its restarting positions
        cu_seqlens = boundaries(micro.position_ids)
    else:
        return None
    return None if cu_seqlens is None or len(cu_seqlens) - 1 == len(micro.input_ids) else cu_seqlens


def _lengths(batch: TokenBatch) -> list[int]:
    return batch.attention_mask.sum(1).tolist()  # right padding: a row's tokens are its prefix


def plan_micro_batches(lengths: list[int], row_group: int, budget: int) -> list[list[int]]:
    """Row indices of each micro-batch: groups longest first, each micro-batch up to `budget` real tokens
    (a group longer than the budget is a micro-batch of its own)."""
    groups = [list(range(start, start + row_group)) for start in range(0, len(lengths), row_group)]
    groups.sort(key=lambda g: -sum(lengths[i] for i in g))
    plan: list[list[int]] = []
    used = budget  # forces a new micro-batch for the first group
    for group in groups:
        size = sum(lengths[i] for i in group)
        if used + size > budget:
            plan.append([])
            used = 0
        plan[-1].extend(group)
        used += size
    return plan


def pack_rows(batch: TokenBatch, rows: list[int], lengths: list[int]) -> PackedMicroBatch:
    """Pack the sequences of `rows` first-fit (longest first) into rows of their longest length."""
    longest = max(lengths[i] for i in rows)
    width = -(-longest // WIDTH_MULTIPLE) * WIDTH_MULTIPLE
    bins: list[list[int]] = []  # positions in `rows` of the sequences in each packed row
    room: list[int] = []
    for position in sorted(range(len(rows)), key=lambda p: -lengths[rows[p]]):
        size = lengths[rows[position]]
        slot = next((b for b, free in enumerate(room) if free >= size), None)
        if slot is None:
            bins.append([])
            room.append(width)
            slot = len(bins) - 1
        bins[slot].append(position)
        room[slot] -= size
    ids = torch.zeros((len(bins), width), dtype=torch.long)  # the tail padding is never scored: any id will do
    positions = torch.zeros((len(bins), width), dtype=torch.long)
    source, target, starts = [], [], []
    for r, members in enumerate(bins):
        at = 0
        for position in members:
            starts.append(r * width + at)
            row, size = rows[position], lengths[rows[position]]
            ids[r, at : at + size] = batch.input_ids[row, :size]
            positions[r, at : at + size] = torch.arange(size)
            # column t > 0 scores token t given tokens < t; column 0 of each sequence scores nothing
            source.append(torch.arange(r * width + at + 1, r * width + at + size))
            target.append(torch.arange(position * longest + 1, position * longest + size))
            at += size
        positions[r, at:] = torch.arange(width - at)  # the tail padding: a sequence of its own
        if at < width:
            starts.append(r * width + at)
    index = torch.tensor(rows)
    padded = batch.select(index).select((slice(None), slice(0, longest)))
    cu_seqlens = torch.tensor([*starts, len(bins) * width], dtype=torch.int32)
    return PackedMicroBatch(index, padded, ids, positions, torch.cat(source), torch.cat(target),
                            sum(lengths[i] for i in rows), cu_seqlens)


def packed_micro_batches(batch: TokenBatch, budget: int) -> list[PackedMicroBatch]:
    """The batch as micro-batches of at most `budget` real tokens each, packed (see the module docstring)."""
    if len(batch) % batch.row_group:
        raise ValueError(f"a batch of {len(batch)} rows does not divide into groups of {batch.row_group}")
    lengths = _lengths(batch)
    return [pack_rows(batch, rows, lengths) for rows in plan_micro_batches(lengths, batch.row_group, budget)]
