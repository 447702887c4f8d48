"""The plain PyTorch learner: AdamW, micro-batches, gradient clipping, linear warm-up."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Iterable

import torch

from rlkit.config import LearnerConfig
from rlkit.learner.base import LossFn, TokenBatch
from rlkit.learner.logprobs import sequence_logprobs


class TorchLearner:
    def __init__(self, model: torch.nn.Module, config: LearnerConfig, lr: float, device: torch.device, warmup_steps: int = 0):
        self.model, self.config, self.device = model, config, device
        self.model.to(device)
        if config.gradient_checkpointing:
            self.model.gradient_checkpointing_enable()
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(
            params, lr=lr, weight_decay=config.weight_decay, betas=(0.9, 0.99), fused=device.type == "cuda"
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: min(1.0, (step + 1) / warmup_steps) if warmup_steps else 1.0
        )
        self.steps = 0

    def _micro_batches(self, batch: TokenBatch) -> Iterable[TokenBatch]:
        size = self.config.micro_batch_size
        for start in range(0, len(batch), size):
            micro = batch.select(slice(start, start + size))
            width = int(micro.attention_mask.sum(1).max())  # trim right padding shared by the micro-batch
            yield micro.select((slice(None), slice(0, width))) if width < micro.input_ids.shape[1] else micro

    def _forward(self, micro: TokenBatch, with_entropy: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        return sequence_logprobs(
            self.model, micro.input_ids, micro.attention_mask, with_entropy, self.config.logprob_chunk_size,
            position_ids=micro.extras.get("position_ids"),  # packed sequences (SFT packing)
        )

    @torch.no_grad()
    def logprobs(self, batch: TokenBatch, with_entropy: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        was_training = self.model.training
        self.model.eval()
        out_lp = torch.zeros(batch.input_ids.shape, dtype=torch.float)
        out_ent = torch.zeros(batch.input_ids.shape, dtype=torch.float) if with_entropy else None
        row = 0
        for micro in self._micro_batches(batch):
            lp, ent = self._forward(micro.to(self.device), with_entropy)
            rows, width = lp.shape
            out_lp[row : row + rows, :width] = lp.cpu()
            if out_ent is not None:
                out_ent[row : row + rows, :width] = ent.cpu()
            row += rows
        self.model.train(was_training)
        return out_lp, out_ent

    def train_step(self, batch: TokenBatch, loss_fn: LossFn) -> dict[str, float]:
        self.model.train()
        totals: dict[str, float] = {}
        for micro in self._micro_batches(batch):
            micro = micro.to(self.device)
            logprobs, entropy = self._forward(micro, with_entropy=True)
            loss, metrics = loss_fn(micro, logprobs, entropy)
            loss.backward()
            for key, value in metrics.items():
                totals[key] = totals.get(key, 0.0) + value  # loss_fn returns batch-normalized parts
        params = [p for p in self.model.parameters() if p.requires_grad]
        grad_norm = torch.nn.utils.clip_grad_norm_(params, self.config.max_grad_norm)
        if not math.isfinite(float(grad_norm)):
            self.optimizer.zero_grad(set_to_none=True)
            raise FloatingPointError(f"non-finite gradient norm at learner step {self.steps}")
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.steps += 1
        totals["grad_norm"] = float(grad_norm)
        totals["lr"] = self.scheduler.get_last_lr()[0]
        return totals

    def named_weights(self) -> Iterable[tuple[str, torch.Tensor]]:
        return self.model.named_parameters()

    def save(self, directory: str | os.PathLike) -> None:
        directory = Path(directory)
        self.model.save_pretrained(directory / "model")
        torch.save(
            {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(), "steps": self.steps},
            directory / "optimizer.pt",
        )

    def load(self, directory: str | os.PathLike) -> None:
        from safetensors.torch import load_file

        directory = Path(directory)
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
