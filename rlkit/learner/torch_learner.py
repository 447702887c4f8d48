"""The plain PyTorch learner: AdamW, micro-batches, gradient clipping, linear warm-up.

With `learner.lora` it trains a LoRA adapter on a private copy of the policy and hands the engine
merged weights. Inside a torch.distributed group (the Ray learner group) each rank takes its
shard of the batch and gradients are summed across ranks before clipping: the loss function is
normalized for the whole batch, so the sum is the whole batch's gradient.
"""

from __future__ import annotations

import copy
import logging
import math
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

import torch

from rlkit.config import LearnerConfig
from rlkit.learner import varlen_attention
from rlkit.learner.base import LossFn, TokenBatch, read_metrics
from rlkit.learner.logprobs import attention_backend, sequence_logprobs
from rlkit.learner.memory import out_of_memory
from rlkit.learner.packing import PackedMicroBatch, attention_boundaries, packed_micro_batches
from rlkit.learner.reference import ReferencePolicy

T = TypeVar("T")


FROM_FED = object()  # `_backward`'s default: the boundaries read from the micro-batch it is given


class TorchLearner:
    def __init__(self, model: torch.nn.Module, config: LearnerConfig, lr: float, device: torch.device, warmup_steps: int = 0):
        self.config, self.device = config, device
        self.peft = None  # the peft wrapper under LoRA
        if config.lora is not None:
            from rlkit.learner.lora import apply_lora

            # A private copy: `model` (shared with the local engine) keeps plain HF weights and receives merged ones.
            self.peft = apply_lora(copy.deepcopy(model), config.lora)
            model = self.peft.get_base_model()  # the HF module with adapters injected; its forward uses them
        self.model = model
        self.model.to(device)
        # packed micro-batches by the sequences' boundaries (learner.packed_attention: auto or varlen) where it can serve
        self.varlen = config.packed_attention in ("auto", "varlen") and varlen_attention.available(
            device, next(model.parameters()).dtype)
        if self.varlen:
            varlen_attention.install(self.model)
        elif config.packed_attention == "varlen":
            logging.getLogger("rlkit.learner").warning(
                "learner.packed_attention: varlen needs CUDA, bf16/fp16 weights and torch's varlen_attn; packed "
                "micro-batches use the block-diagonal mask here (%s, %s)", device, next(model.parameters()).dtype)
        if config.gradient_checkpointing:
            self.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(
            params, lr=lr, weight_decay=config.weight_decay, betas=(0.9, 0.99), fused=device.type == "cuda"
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: min(1.0, (step + 1) / warmup_steps) if warmup_steps else 1.0
        )
        self.steps = 0

    def _micro_batches(self, batch: TokenBatch) -> Iterable[PackedMicroBatch | tuple[torch.Tensor, TokenBatch]]:
        """Packed micro-batches by a token budget (`learner.micro_batch_tokens`), else (rows, padded micro-batch)
        of `micro_batch_size` rows. Batches packed already (SFT packing) keep their rows."""
        if self.config.micro_batch_tokens and batch.position_ids is None:
            yield from packed_micro_batches(batch, self.config.micro_batch_tokens)
            return
        size = -(-self.config.micro_batch_size // batch.row_group) * batch.row_group  # whole row groups
        for start in range(0, len(batch), size):
            micro = batch.select(slice(start, start + size))
            width = int(micro.attention_mask.sum(1).max())  # trim right padding shared by the micro-batch
            yield torch.arange(start, start + len(micro)), micro.select((slice(None), slice(0, width))) if width < micro.input_ids.shape[1] else micro

    def _boundaries(self, micro: PackedMicroBatch | TokenBatch) -> torch.Tensor | None:
        """The sequences' boundaries the attention gets (`packing.attention_boundaries`) where varlen serves, else None."""
        return attention_boundaries(micro) if self.varlen else None

    def _forward(self, micro: PackedMicroBatch | TokenBatch, with_entropy: bool, scored: torch.Tensor | None = None,
                 cu_seqlens: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Per-token logprobs (and entropy) in the padded layout of the micro-batch's rows. `scored` (in the layout
        the model reads, `_scored`): the positions the head runs on, 0 elsewhere; None = all. `cu_seqlens`: the
        sequences' boundaries (`_boundaries`, on the model's device), None for the mask path."""
        if isinstance(micro, PackedMicroBatch):
            lp, ent = sequence_logprobs(
                self.model, micro.input_ids, torch.ones_like(micro.input_ids), with_entropy, self.config.logprob_chunk_size,
                position_ids=micro.position_ids, scored=scored, cu_seqlens=cu_seqlens, **self._logprob_options(),
            )
            return micro.unpack(lp), (micro.unpack(ent) if ent is not None else None)
        return sequence_logprobs(
            self.model, micro.input_ids, micro.attention_mask, with_entropy, self.config.logprob_chunk_size,
            position_ids=micro.position_ids,  # packed sequences (SFT packing)
            scored=scored, cu_seqlens=cu_seqlens, **self._logprob_options(),
        )

    def _scored(self, fed: PackedMicroBatch | TokenBatch, padded: TokenBatch) -> torch.Tensor | None:
        """The positions a train step's loss reads (loss_mask > 0), in the layout the model reads; None = all
        (`learner.head_loss_mask_only` off). Built where the batch is: on the host, no device sync."""
        if not self.config.head_loss_mask_only:
            return None
        scored = padded.loss_mask > 0
        return fed.pack(scored) if isinstance(fed, PackedMicroBatch) else scored

    def _logprob_options(self) -> dict:
        c = self.config
        return {"compile_body": c.compile, "compile_scope": c.compile_scope, "head_kernels": c.head_kernels,
                "keep_head_logits_gib": c.keep_head_logits_gib, "attention": c.attention_backend}

    def _guarded(self, micro: PackedMicroBatch | TokenBatch, run: Callable[[], T]) -> T:
        """`run()`, with a CUDA out-of-memory turned into an error naming the knobs to turn."""
        try:
            return run()
        except torch.OutOfMemoryError:
            pass  # raised below, outside the handler, so the frames holding the activations are freed first
        self.optimizer.zero_grad(set_to_none=True)
        ids = micro.input_ids
        useful = micro.useful_tokens if isinstance(micro, PackedMicroBatch) else int(micro.attention_mask.sum())
        raise out_of_memory(self.config, ids.shape[0], ids.shape[1], useful, self.device)

    @staticmethod
    def _split(item: PackedMicroBatch | tuple[torch.Tensor, TokenBatch]) -> tuple[torch.Tensor, TokenBatch, PackedMicroBatch | TokenBatch]:
        """(rows, the padded micro-batch the loss reads, what the model reads)."""
        if isinstance(item, PackedMicroBatch):
            return item.rows, item.padded, item
        rows, micro = item
        return rows, micro, micro

    @torch.no_grad()
    def logprobs(self, batch: TokenBatch, with_entropy: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        was_training = self.model.training
        self.model.eval()
        out_lp = torch.zeros(batch.input_ids.shape, dtype=torch.float)
        out_ent = torch.zeros(batch.input_ids.shape, dtype=torch.float) if with_entropy else None
        for item in self._micro_batches(batch):
            rows, _, fed = self._split(item)
            cu_seqlens = self._boundaries(fed)  # from the host copy: no device sync
            fed = fed.to(self.device)
            cu_seqlens = None if cu_seqlens is None else cu_seqlens.to(self.device)
            lp, ent = self._guarded(fed, lambda fed=fed, cu=cu_seqlens: self._forward(fed, with_entropy, cu_seqlens=cu))
            width = lp.shape[1]
            out_lp[rows, :width] = lp.cpu()
            if out_ent is not None:
                out_ent[rows, :width] = ent.cpu()
        self.model.train(was_training)
        return out_lp, out_ent

    def train_step(self, batch: TokenBatch, loss_fn: LossFn) -> dict[str, float]:
        self.model.train()
        totals: dict[str, float | torch.Tensor] = {}
        useful = computed = 0
        for item in self._micro_batches(batch):
            _, padded, fed = self._split(item)
            scored = self._scored(fed, padded)  # from the host copies: no device sync
            cu_seqlens = self._boundaries(fed)
            if isinstance(fed, PackedMicroBatch):
                fed = fed.to(self.device)
                padded = fed.padded
            else:
                fed = padded = padded.to(self.device)
            cu_seqlens = None if cu_seqlens is None else cu_seqlens.to(self.device)
            metrics = self._guarded(fed, lambda fed=fed, padded=padded, scored=scored, cu=cu_seqlens:
                                    self._backward(fed, padded, loss_fn, scored, cu))
            for key, value in metrics.items():
                totals[key] = totals.get(key, 0.0) + value  # loss_fn returns batch-normalized parts
            useful += int(padded.attention_mask.sum())
            computed += fed.input_ids.numel()
        params = [p for p in self.model.parameters() if p.requires_grad]
        sum_gradients_across_ranks(params)
        grad_norm = torch.nn.utils.clip_grad_norm_(params, self.config.max_grad_norm)
        if not math.isfinite(float(grad_norm)):
            self.optimizer.zero_grad(set_to_none=True)
            raise FloatingPointError(f"non-finite gradient norm at learner step {self.steps}")
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.steps += 1
        totals = read_metrics(totals)
        totals["grad_norm"] = float(grad_norm)
        totals["lr"] = self.scheduler.get_last_lr()[0]
        totals["tokens/train_useful"] = float(useful)  # real tokens the forward/backward saw
        totals["tokens/train_computed"] = float(computed)  # tokens it computed, padding included
        return totals

    def _backward(self, fed: PackedMicroBatch | TokenBatch, padded: TokenBatch, loss_fn: LossFn,
                  scored: torch.Tensor | None = None,
                  cu_seqlens: torch.Tensor | object | None = FROM_FED) -> dict[str, float | torch.Tensor]:
        """Forward and backward of one micro-batch; with learner.head_loss_mask_only the head runs on the loss mask's
        positions only (`_scored`, unless `scored` is given): every loss reads logprobs and entropy under the mask.
        `cu_seqlens`: the boundaries the attention gets (`_boundaries` of the host copy, as `train_step` passes them;
        by default read from `fed` here, which for an SFT-packed batch on a GPU costs a device sync)."""
        if scored is None:
            scored = self._scored(fed, padded)
        if cu_seqlens is FROM_FED:
            cu_seqlens = self._boundaries(fed)
        logprobs, entropy = self._forward(fed, with_entropy=True, scored=scored, cu_seqlens=cu_seqlens)
        loss, metrics = loss_fn(padded, logprobs, entropy)
        with attention_backend(self.config.attention_backend):  # a checkpointed layer's recomputed forward
            loss.backward()
        return metrics

    def named_weights(self) -> Iterable[tuple[str, torch.Tensor]]:
        """HF-named full weights; under LoRA each adapted Linear merged (W + scale * B @ A)."""
        if self.peft is not None:
            from rlkit.learner.lora import merged_named_weights

            return merged_named_weights(self.peft)
        return self.model.named_parameters()

    def reference_policy(self) -> ReferencePolicy:
        """The KL reference. Call before the first train_step: it is the policy as it is now."""
        if self.peft is not None:  # the same module with the adapter switched off: no second copy
            peft = self.peft

            def base_logprobs(batch: TokenBatch) -> torch.Tensor:
                with peft.disable_adapter():
                    return self.logprobs(batch)[0]

            return ReferencePolicy(base_logprobs, "adapter_disabled")
        frozen = copy.deepcopy(self.model).eval().requires_grad_(False)
        return ReferencePolicy(lambda batch: self._logprobs_of(frozen, batch), "frozen_copy")

    def _logprobs_of(self, module: torch.nn.Module, batch: TokenBatch) -> torch.Tensor:
        current, self.model = self.model, module
        try:
            return self.logprobs(batch)[0]
        finally:
            self.model = current

    def save(self, directory: str | os.PathLike) -> None:
        directory = Path(directory)
        if self.peft is not None:  # only the adapter trains, so only the adapter is saved
            from rlkit.learner.lora import save_adapter

            save_adapter(self.peft, directory)
        else:
            self.model.save_pretrained(directory / "model")
        torch.save(
            {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(), "steps": self.steps},
            directory / "optimizer.pt",
        )

    def load(self, directory: str | os.PathLike) -> None:
        from safetensors.torch import load_file

        directory = Path(directory)
        if self.peft is not None:
            from rlkit.learner.lora import load_adapter

            load_adapter(self.peft, directory, self.device)
        else:
            state = load_file(directory / "model" / "model.safetensors", device=str(self.device))
            missing, unexpected = self.model.load_state_dict(state, strict=False)
            unexpected = [k for k in unexpected if k != "lm_head.weight"]
            missing = [k for k in missing if k != "lm_head.weight"]
            if missing or unexpected:
                raise RuntimeError(f"checkpoint {directory} does not match the model: missing {missing[:3]}, unexpected {unexpected[:3]}")
        blob = torch.load(directory / "optimizer.pt", map_location=self.device, weights_only=False)
        self.optimizer.load_state_dict(blob["optimizer"])
        self.scheduler.load_state_dict(blob["scheduler"])
        self.steps = blob["steps"]


def sum_gradients_across_ranks(params: list[torch.nn.Parameter]) -> None:
    """Data parallelism: sum each rank's gradient of its shard (one flat all-reduce). No-op in one process."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    offset = 0
    for param, grad in zip(params, grads):
        param.grad = flat[offset : offset + grad.numel()].view_as(grad).to(grad.dtype)
        offset += grad.numel()
