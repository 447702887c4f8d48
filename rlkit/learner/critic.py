"""PPO's critic: a value head on a copy of the policy's transformer, and its own optimizer step.

Values are aligned with the tokens like log-probabilities are: `values[:, t]` is the value of the
state before token t (read from the hidden state at t - 1), so a response token's value and its
advantage sit in the same column as its log-probability.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import torch

from rlkit.algos.value_loss import clipped_value_loss
from rlkit.learner.base import Learner, TokenBatch


class ValueModel(torch.nn.Module):
    """The policy's transformer body (copied, so it trains separately) plus a linear head to one scalar."""

    def __init__(self, policy: torch.nn.Module):
        super().__init__()
        self.body = copy.deepcopy(policy.model)  # HF causal LMs keep the transformer in `.model`
        hidden = policy.config.hidden_size
        self.head = torch.nn.Linear(hidden, 1)
        torch.nn.init.zeros_(self.head.weight)  # start at V = 0: the first advantages are the returns
        torch.nn.init.zeros_(self.head.bias)
        self.to(next(policy.parameters()).dtype)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.body(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state[:, :-1]
        values = self.head(hidden).squeeze(-1).float()
        return torch.cat([values.new_zeros((values.shape[0], 1)), values], dim=1)


class Critic:
    """Trains a ValueModel on (returns, old_values) with the clipped value loss, in micro-batches."""

    def __init__(self, policy: torch.nn.Module, lr: float, micro_batch_size: int, max_grad_norm: float, device: torch.device):
        self.model = ValueModel(policy).to(device)
        self.device, self.micro_batch_size, self.max_grad_norm = device, micro_batch_size, max_grad_norm
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=lr, betas=(0.9, 0.99))

    def _micro_batches(self, batch: TokenBatch):
        for start in range(0, len(batch), self.micro_batch_size):
            yield batch.select(slice(start, start + self.micro_batch_size)).to(self.device)

    @torch.no_grad()
    def values(self, batch: TokenBatch) -> torch.Tensor:
        self.model.eval()
        out = [self.model(m.input_ids, m.attention_mask).cpu() for m in self._micro_batches(batch)]
        return torch.cat(out) * batch.loss_mask

    def train_step(self, batch: TokenBatch, clip: float | None) -> dict[str, float]:
        """One optimizer step. Reads the batch's `returns` and `old_values`; token-mean loss."""
        self.model.train()
        num_tokens = float(batch.loss_mask.sum().clamp(min=1.0))
        total, clipped_tokens = 0.0, 0.0
        for micro in self._micro_batches(batch):
            values = self.model(micro.input_ids, micro.attention_mask)
            per_token, clipped = clipped_value_loss(values, micro.old_values, micro.returns, clip)
            loss = (per_token * micro.loss_mask).sum() / num_tokens
            loss.backward()
            total += float(loss.detach())
            clipped_tokens += float((clipped * micro.loss_mask).sum())
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.max_grad_norm)
        if not math.isfinite(float(grad_norm)):
            self.optimizer.zero_grad(set_to_none=True)
            raise FloatingPointError("non-finite critic gradient norm")
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return {"critic/value_loss": total, "critic/clip_fraction": clipped_tokens / num_tokens, "critic/grad_norm": float(grad_norm)}

    def save(self, path: str | Path) -> None:
        torch.save({"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}, path)

    def load(self, path: str | Path) -> None:
        state = torch.load(path, map_location=self.device, weights_only=False)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])


class LearnerWithCritic:
    """The policy learner as the stage loop sees it, with the critic saved and restored in its checkpoints,
    so a resumed PPO stage continues with the critic it had. Everything else goes to the learner."""

    CRITIC_FILE = "critic.pt"

    def __init__(self, learner: Learner, critic: Critic):
        self.learner, self.critic = learner, critic

    def save(self, directory: str | Path) -> None:
        self.learner.save(directory)
        self.critic.save(Path(directory) / self.CRITIC_FILE)

    def load(self, directory: str | Path) -> None:
        self.learner.load(directory)
        self.critic.load(Path(directory) / self.CRITIC_FILE)

    def __getattr__(self, name: str):  # noqa: ANN204
        return getattr(self.learner, name)
