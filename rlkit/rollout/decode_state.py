"""The static buffers of the fast HF engine's decode loop, and the views that compaction decodes on."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from rlkit.rollout.base import SamplingParams


@dataclass
class DecodeState:
    """Static buffers one captured decode graph reads and writes in place."""

    keys: list[torch.Tensor]  # per layer [B, KVH, Lmax, D]
    values: list[torch.Tensor]
    valid: torch.Tensor  # [B, Lmax] bool: key positions a query may attend to
    token: torch.Tensor  # [B] long: the last sampled token, input of the next step
    position: torch.Tensor  # [B] long: rotary position of `token`
    slot: torch.Tensor  # [1] long: cache slot `token` is written to
    step: torch.Tensor  # [1] long: output column of the next sampled token
    done: torch.Tensor  # [B] bool
    out_tokens: torch.Tensor  # [B, T] long
    out_logprobs: torch.Tensor  # [B, T] float
    noise: torch.Tensor | None  # [B, V] float, refilled with Exp(1) draws every step
    graph: torch.cuda.CUDAGraph | None = None
    seed: torch.Tensor | None = None  # [1] long: the key of the fused sampling kernel's noise (with `step`)
    # [S] long: the stop token ids. Held here, not made per call: a captured graph reads it at the address it was
    # captured with (a per-call tensor left replays comparing tokens with freed memory: no row ever stopped)
    stop: torch.Tensor | None = None
    halves: dict[int, DecodeState] = field(default_factory=dict)  # compacted batches: views of the first rows
    # the prefill's inputs [B, width] long, static so that its captured graph (from the state's second call) reads them
    prompt_ids: torch.Tensor | None = None
    prompt_mask: torch.Tensor | None = None
    prefill_graph: torch.cuda.CUDAGraph | None = None

    def rows(self, size: int) -> DecodeState:
        """The state of the first `size` rows: views of these buffers (one step counter and slot), own graph."""
        if size == len(self.token):
            return self
        if size not in self.halves:
            first = slice(0, size)
            self.halves[size] = DecodeState(
                [k[first] for k in self.keys],
                [v[first] for v in self.values],
                self.valid[first],
                self.token[first],
                self.position[first],
                self.slot,
                self.step,
                self.done[first],
                self.out_tokens[first],
                self.out_logprobs[first],
                None if self.noise is None else self.noise[first],
                seed=self.seed,
                stop=self.stop,
            )
        return self.halves[size]

    def keep(self, live: torch.Tensor, size: int) -> DecodeState:
        """Move rows `live` to the front of every per-row buffer and go on with the first `size` rows (the rows
        past the live ones only fill the batch and count as stopped)."""
        for buffer in (
            *self.keys,
            *self.values,
            self.valid,
            self.token,
            self.position,
            self.done,
            self.out_tokens,
            self.out_logprobs,
        ):
            buffer[: len(live)] = buffer[live]  # index_select copies first, so overlapping rows are safe
        self.done[len(live) : size] = True
        return self.rows(size)

    @classmethod
    def allocate(
        cls, model: torch.nn.Module, batch: int, length: int, sampling: SamplingParams, device: torch.device,
        stop_ids: Sequence[int] = (),
    ) -> DecodeState:
        """Zeroed buffers for `batch` rows of a cache `length` tokens long (prompt width + max_new_tokens), and the
        stop ids (none: rows never stop)."""
        config = model.config
        dtype = next(model.parameters()).dtype
        cache_shape = (batch, config.num_key_value_heads, length, model.model.layers[0].self_attn.head_dim)
        long = dict(dtype=torch.long, device=device)
        return cls(
            keys=[torch.zeros(cache_shape, dtype=dtype, device=device) for _ in range(config.num_hidden_layers)],
            values=[torch.zeros(cache_shape, dtype=dtype, device=device) for _ in range(config.num_hidden_layers)],
            valid=torch.zeros((batch, length), dtype=torch.bool, device=device),
            token=torch.zeros(batch, **long),
            position=torch.zeros(batch, **long),
            slot=torch.zeros(1, **long),
            step=torch.zeros(1, **long),
            done=torch.zeros(batch, dtype=torch.bool, device=device),
            out_tokens=torch.zeros((batch, sampling.max_new_tokens), **long),
            out_logprobs=torch.zeros((batch, sampling.max_new_tokens), dtype=torch.float, device=device),
            noise=None
            if sampling.greedy
            else torch.empty((batch, config.vocab_size), dtype=torch.float, device=device),
            seed=torch.zeros(1, **long),
            stop=torch.tensor(sorted(stop_ids), **long) if stop_ids else None,
        )
