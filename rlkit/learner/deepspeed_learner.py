"""The DeepSpeed learner: ZeRO-2 or ZeRO-3, bf16 where the hardware has it, gradient accumulation
over micro-batches, gradient checkpointing, LoRA, and ZeRO-3 shards gathered for the weight sync.

DeepSpeed is imported here only, when a recipe says `learner.backend: deepspeed`. The learner
joins the torch.distributed group it finds (the Ray learner group sets one up) or starts a
one-rank group of its own (gloo on CPU, where DeepSpeed's CPU accelerator runs, NCCL on GPU).

Every rank runs the same number of forward/backward passes per call: ZeRO-2 reduces gradients
in each backward and ZeRO-3 gathers parameters in each forward, both collectively. A rank whose
shard has fewer rows than the agreed micro-batch count runs a zero-weighted pass on one row.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import socket
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch

from rlkit.config import LearnerConfig
from rlkit.errors import import_backend
from rlkit.learner import varlen_attention
from rlkit.learner.base import LossFn, TokenBatch, read_metrics
from rlkit.learner.logprobs import attention_backend, sequence_logprobs
from rlkit.learner.packing import attention_boundaries
from rlkit.learner.reference import ReferencePolicy

CHECKPOINT_TAG = "deepspeed"


def import_deepspeed():  # noqa: ANN201
    return import_backend("deepspeed", "learner.backend: deepspeed", "deepspeed")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ensure_distributed(device: torch.device) -> None:
    """Join the existing process group, or start a one-rank one (a local run with no launcher)."""
    deepspeed = import_deepspeed()
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        deepspeed.init_distributed(dist_backend=torch.distributed.get_backend(), auto_mpi_discovery=False, verbose=False)
        return
    port = free_port()
    for key, value in {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}.items():
        os.environ.setdefault(key, value)
    deepspeed.init_distributed(
        dist_backend="nccl" if device.type == "cuda" else "gloo",
        auto_mpi_discovery=False,
        verbose=False,
        init_method=f"tcp://127.0.0.1:{port}",
        rank=0,
        world_size=1,
    )


def use_bf16(device: torch.device) -> bool:
    return device.type == "cuda" and torch.cuda.is_bf16_supported()


def deepspeed_config(config: LearnerConfig, world_size: int, bf16: bool) -> dict:
    """The DeepSpeed JSON config. Accumulation boundaries are set by the learner per step
    (`set_gradient_accumulation_boundary`), so gradient_accumulation_steps stays 1 and the batch
    size keys are only DeepSpeed's bookkeeping."""
    zero: dict = {"stage": config.zero_stage, "overlap_comm": False, "contiguous_gradients": True}
    if config.zero_stage == 3:
        # parameters smaller than this stay whole on every rank: fewer tiny gathers
        zero.update({"stage3_param_persistence_threshold": 10_000, "stage3_gather_16bit_weights_on_model_save": False})
    return {
        "train_micro_batch_size_per_gpu": config.micro_batch_size,
        "gradient_accumulation_steps": 1,
        "train_batch_size": config.micro_batch_size * world_size,
        "gradient_clipping": config.max_grad_norm,
        "zero_optimization": zero,
        "bf16": {"enabled": bf16},
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 2**31 - 1,
        "wall_clock_breakdown": False,
    }


class PolicyLogprobs(torch.nn.Module):
    """The module DeepSpeed wraps: forward returns per-token (logprobs, entropy), not logits,
    so the engine's forward/backward hooks see the tensors the loss is built from."""

    def __init__(self, policy: torch.nn.Module, chunk_size: int, head_kernels: str = "triton", keep_head_logits_gib: float = 0.0,
                 attention: str = "auto"):
        super().__init__()
        self.policy, self.chunk_size = policy, chunk_size
        self.head_options = {"head_kernels": head_kernels, "keep_head_logits_gib": keep_head_logits_gib, "attention": attention}

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, with_entropy: bool = False,
                position_ids: torch.Tensor | None = None, scored: torch.Tensor | None = None,
                cu_seqlens: torch.Tensor | None = None):  # noqa: ANN201
        return sequence_logprobs(self.policy, input_ids, attention_mask, with_entropy, self.chunk_size, position_ids=position_ids,
                                 scored=scored, cu_seqlens=cu_seqlens, **self.head_options)


class DeepSpeedLearner:
    def __init__(self, model: torch.nn.Module, config: LearnerConfig, lr: float, device: torch.device, warmup_steps: int = 0):
        deepspeed = import_deepspeed()
        ensure_distributed(device)
        self.config, self.device = config, device
        self.source = model  # untouched until the first step: the frozen reference is copied from it
        self.world_size = torch.distributed.get_world_size()
        # DeepSpeed flattens (ZeRO-2) or partitions (ZeRO-3) the module it wraps, so it gets a private copy;
        # the engine's module receives the weights through `named_weights`.
        policy = copy.deepcopy(model).to(device)
        self.peft = None
        if config.lora is not None:
            from rlkit.learner.lora import apply_lora

            self.peft = apply_lora(policy, config.lora)
            policy = self.peft.get_base_model()
        if config.gradient_checkpointing:
            policy.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.bf16 = use_bf16(device)
        # SFT-packed rows by their sequences' boundaries (learner.packed_attention: auto or varlen) where it can serve
        self.varlen = config.packed_attention in ("auto", "varlen") and varlen_attention.available(
            device, torch.bfloat16 if self.bf16 else next(policy.parameters()).dtype)
        if self.varlen:
            varlen_attention.install(policy)
        elif config.packed_attention == "varlen":
            logging.getLogger("rlkit.learner").warning(
                "learner.packed_attention: varlen needs CUDA, bf16/fp16 weights and torch's varlen_attn; packed rows use "
                "the block-diagonal mask here (%s)", device)
        wrapper = PolicyLogprobs(policy, config.logprob_chunk_size, config.head_kernels, config.keep_head_logits_gib,
                                 config.attention_backend)
        params = [p for p in wrapper.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=config.weight_decay, betas=(0.9, 0.99))
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: min(1.0, (step + 1) / warmup_steps) if warmup_steps else 1.0
        )
        self.engine, self.optimizer, _, self.scheduler = deepspeed.initialize(
            model=wrapper, optimizer=optimizer, lr_scheduler=scheduler,
            config=deepspeed_config(config, self.world_size, self.bf16),
        )
        self.steps = 0

    @property
    def policy(self) -> torch.nn.Module:
        return self.engine.module.policy

    # ------------------------------------------------------------------ micro-batches
    def _agreed_count(self, rows: int) -> int:
        """Micro-batches per call, the same on every rank (the largest shard decides)."""
        count = torch.tensor([max(1, math.ceil(rows / self.config.micro_batch_size))], dtype=torch.long)
        if self.world_size > 1:
            backend_device = self.device if torch.distributed.get_backend() == "nccl" else torch.device("cpu")
            count = count.to(backend_device)
            torch.distributed.all_reduce(count, op=torch.distributed.ReduceOp.MAX)
        return int(count.item())

    def _micro_batches(self, batch: TokenBatch) -> Iterator[tuple[TokenBatch, bool]]:
        """(micro-batch, is_real); a placeholder micro-batch (one row group, weight 0) keeps ranks in step."""
        count = self._agreed_count(len(batch))
        for rows in batch.row_splits(count):
            real = len(rows) > 0
            micro = batch.select(rows if real else slice(0, batch.row_group))
            width = int(micro.attention_mask.sum(1).max())  # trim right padding shared by the micro-batch
            yield micro.select((slice(None), slice(0, width))), real

    def _boundaries(self, micro: TokenBatch) -> torch.Tensor | None:
        """SFT-packed rows' boundaries for the attention (`packing.attention_boundaries`, on the device) where varlen
        serves; None for the mask path."""
        cu_seqlens = attention_boundaries(micro) if self.varlen else None
        return None if cu_seqlens is None else cu_seqlens.to(self.device)

    # ------------------------------------------------------------------ the learner seam
    @torch.no_grad()
    def logprobs(self, batch: TokenBatch, with_entropy: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        self.engine.eval()
        out_lp = torch.zeros(batch.input_ids.shape, dtype=torch.float)
        out_ent = torch.zeros(batch.input_ids.shape, dtype=torch.float) if with_entropy else None
        row = 0
        for micro, real in self._micro_batches(batch):
            cu_seqlens = self._boundaries(micro)  # from the host copy: no device sync
            micro = micro.to(self.device)
            lp, ent = self.engine(micro.input_ids, micro.attention_mask, with_entropy, micro.position_ids, None, cu_seqlens)
            if not real:
                continue
            rows, width = lp.shape
            out_lp[row : row + rows, :width] = lp.float().cpu()
            if out_ent is not None:
                out_ent[row : row + rows, :width] = ent.float().cpu()
            row += rows
        self.engine.train()
        return out_lp, out_ent

    def train_step(self, batch: TokenBatch, loss_fn: LossFn) -> dict[str, float]:
        self.engine.train()
        totals: dict[str, float | torch.Tensor] = {}
        micro_batches = list(self._micro_batches(batch))
        for index, (micro, real) in enumerate(micro_batches):
            # the head on the loss mask's positions only (a placeholder's too: its loss is zeroed anyway); from the host copy
            scored = micro.loss_mask > 0 if self.config.head_loss_mask_only else None
            cu_seqlens = self._boundaries(micro)
            micro = micro.to(self.device)
            self.engine.set_gradient_accumulation_boundary(index == len(micro_batches) - 1)
            logprobs, entropy = self.engine(micro.input_ids, micro.attention_mask, True, micro.position_ids, scored, cu_seqlens)
            loss, metrics = loss_fn(micro, logprobs.float(), entropy.float())
            if not real:
                loss = loss * 0.0  # a placeholder pass: no gradient, only the collectives
            # loss_fn is normalized for the whole batch and ranks hold disjoint shards, so the batch's
            # gradient is the SUM over ranks; DeepSpeed averages, hence the factor world_size.
            with attention_backend(self.config.attention_backend):  # a checkpointed layer's recomputed forward
                self.engine.backward(loss * self.world_size, scale_wrt_gas=False)
            if real:
                for key, value in metrics.items():
                    totals[key] = totals.get(key, 0.0) + value
        self.engine.step()  # clips to max_grad_norm, steps the optimizer and the scheduler
        grad_norm = self.engine.get_global_grad_norm()
        grad_norm = float(grad_norm) if grad_norm is not None else float("nan")
        if self.engine.was_step_applied() is False or not math.isfinite(grad_norm):
            raise FloatingPointError(f"non-finite gradient norm at learner step {self.steps} (DeepSpeed skipped the step)")
        self.steps += 1
        totals = read_metrics(totals)
        totals["grad_norm"] = grad_norm
        totals["lr"] = self.scheduler.get_last_lr()[0]
        return totals

    def _gather(self, params: list[torch.nn.Parameter]):  # noqa: ANN202
        """A context in which ZeRO-3 shards of `params` are whole on every rank (collective)."""
        import deepspeed

        return deepspeed.zero.GatheredParameters(params, modifier_rank=None, enabled=self.config.zero_stage == 3)

    def named_weights(self) -> Iterable[tuple[str, torch.Tensor]]:
        """HF-named full weights (merged under LoRA). Under ZeRO-3 every rank must iterate this
        together: each tensor is gathered from the shards, yielded, and released."""
        if self.peft is not None:
            from rlkit.learner.lora import merged_named_weights

            return merged_named_weights(self.peft, gather=self._gather)
        return self._plain_named_weights()

    def _plain_named_weights(self) -> Iterator[tuple[str, torch.Tensor]]:
        for name, param in self.policy.named_parameters():
            with self._gather([param]):
                yield name, param.detach()

    def reference_policy(self) -> ReferencePolicy:
        """The KL reference. Under LoRA: this module with the adapter disabled. Otherwise a frozen copy
        of the policy the learner started from (call before the first train_step)."""
        if self.peft is not None:
            peft = self.peft

            def base_logprobs(batch: TokenBatch) -> torch.Tensor:
                with peft.disable_adapter():
                    return self.logprobs(batch)[0]

            return ReferencePolicy(base_logprobs, "adapter_disabled")
        if self.steps:
            raise RuntimeError("reference_policy() must be taken before the first train_step (it copies the starting policy)")
        dtype = torch.bfloat16 if self.bf16 else None
        frozen = copy.deepcopy(self.source).to(self.device, dtype).eval().requires_grad_(False)
        size = self.config.micro_batch_size

        def frozen_logprobs(batch: TokenBatch) -> torch.Tensor:
            out = torch.zeros(batch.input_ids.shape, dtype=torch.float)
            for start in range(0, len(batch), size):
                micro = batch.select(slice(start, start + size)).to(self.device)
                lp, _ = sequence_logprobs(frozen, micro.input_ids, micro.attention_mask, False, self.config.logprob_chunk_size,
                                          attention=self.config.attention_backend)
                out[start : start + len(micro)] = lp.float().cpu()
            return out

        return ReferencePolicy(frozen_logprobs, "frozen_copy")

    # ------------------------------------------------------------------ checkpoints
    def save(self, directory: str | os.PathLike) -> None:
        """DeepSpeed's checkpoint: module and (per-rank) optimizer partitions; under LoRA the frozen
        base is left out, so only the adapter is saved. Every rank calls this with the same directory."""
        self.engine.save_checkpoint(
            str(directory), tag=CHECKPOINT_TAG, client_state={"steps": self.steps},
            save_latest=False, exclude_frozen_parameters=self.peft is not None,
        )

    def load(self, directory: str | os.PathLike) -> None:
        path = Path(directory) / CHECKPOINT_TAG
        if not path.is_dir():
            raise RuntimeError(f"checkpoint {directory} holds no DeepSpeed state ({path} is missing); was it saved by another learner.backend?")
        _, client = self.engine.load_checkpoint(
            str(directory), tag=CHECKPOINT_TAG, load_module_strict=self.peft is None,
            load_optimizer_states=True, load_lr_scheduler_states=True,
        )
        if client is None:
            raise RuntimeError(f"DeepSpeed could not load the checkpoint in {path}")
        self.steps = int(client.get("steps", 0))
