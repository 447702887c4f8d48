"""The Ray runtime's actors. Plain classes; the runtime wraps them with `ray.remote` when it starts.

- `PolicyWorker`: one learner rank (torch or DeepSpeed learner) in the learner group's
  torch.distributed group; under colocated placement also the rollout engine of its device,
  whose weights are updated in-process after each step.
- `RolloutWorker`: one rollout engine (split placement); receives weights over the weight-update
  group (NCCL between GPUs, gloo on CPU) from learner rank 0.
- `RewardWorker`: the reward pool (the recipe's rewards, with their worker processes and timeouts).

Each actor reads the run's config and builds its own model copy; weights arrive from the driver
at each stage start and from the learner after each step.
"""

from __future__ import annotations

import os
import socket
from datetime import timedelta
from typing import Any

import torch

from rlkit.config import RunConfig

PROCESS_GROUP_TIMEOUT = timedelta(minutes=30)


def _setup_process(config: RunConfig, use_gpu: bool) -> torch.device:
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    # Ray limits CUDA_VISIBLE_DEVICES to this actor's GPUs, so its first GPU is cuda:0.
    return torch.device("cuda:0") if use_gpu else torch.device("cpu")


def node_address_and_port() -> tuple[str, int]:
    """An address other actors can reach this node at, and a free port on it."""
    import ray

    with socket.socket() as sock:
        sock.bind(("", 0))
        port = sock.getsockname()[1]
    return ray.util.get_node_ip_address(), port


def _fresh_model(config: RunConfig, state: dict[str, torch.Tensor], device: torch.device) -> torch.nn.Module:
    from rlkit.models import load_model

    model = load_model(config.model, seed=config.seed)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if k != "lm_head.weight"]  # tied to the embeddings
    if missing or unexpected:
        raise RuntimeError(f"weights sent to the actor do not match model.path={config.model.path!r}: missing {missing[:3]}, unexpected {unexpected[:3]}")
    return model.to(device)


class EngineHost:
    """The rollout engine part of an actor: its own model copy, generate, and weight updates."""

    config: RunConfig
    device: torch.device
    colocated: bool = False

    def _init_engine_host(self) -> None:
        self.engine: Any = None
        self.engine_asleep = False

    def load_engine_weights(self, state: dict[str, torch.Tensor]) -> bool:
        """Build the engine on first use, then load `state` (the stage's starting weights)."""
        if self.engine is None:
            from rlkit.models import load_tokenizer
            from rlkit.rollout import build_engine

            self.tokenizer = load_tokenizer(self.config.model)
            self.engine = build_engine(self.config, _fresh_model(self.config, state, self.device), self.tokenizer)
        self._wake()
        self.engine.update_weights(state.items())
        return True

    def _wake(self) -> None:
        if self.engine_asleep:
            self.engine.wake()
            self.engine_asleep = False

    def _sleep(self) -> None:
        if self.colocated and not self.engine_asleep:  # free memory for the learner sharing this device
            self.engine.sleep()
            self.engine_asleep = True

    def generate(self, prompts: list[list[int]], sampling: Any) -> list[Any]:
        self._wake()
        try:
            return self.engine.generate(prompts, sampling)
        finally:
            self._sleep()

    def engine_logprobs(self, prompts: list[list[int]], responses: list[list[int]]) -> list[list[float]]:
        """The engine's own log-probabilities of given responses (tests and diagnostics)."""
        self._wake()
        if hasattr(self.engine, "score"):  # vLLM scores with its own model
            return self.engine.score(prompts, responses)
        from rlkit.learner.base import pad_sequences
        from rlkit.learner.logprobs import sequence_logprobs

        batch = pad_sequences([p + r for p, r in zip(prompts, responses)], [len(p) for p in prompts], self.tokenizer.pad_token_id)
        with torch.no_grad():
            lp, _ = sequence_logprobs(self.engine.model, batch.input_ids.to(self.device), batch.attention_mask.to(self.device))
        return [lp[i, len(p) : len(p) + len(r)].tolist() for i, (p, r) in enumerate(zip(prompts, responses))]

    def sleep(self) -> bool:
        if not self.engine_asleep:
            self.engine.sleep()
            self.engine_asleep = True
        return True

    def wake(self) -> bool:
        self._wake()
        return True


class PolicyWorker(EngineHost):
    def __init__(self, config: dict, rank: int, world_size: int, colocated: bool, use_gpu: bool):
        self.config = RunConfig.model_validate(config)
        self.device = _setup_process(self.config, use_gpu)
        self.rank, self.world_size, self.colocated = rank, world_size, colocated
        self.learner: Any = None
        self.reference: Any = None
        self.weight_group: Any = None
        self._init_engine_host()

    def rendezvous_address(self) -> tuple[str, int]:
        return node_address_and_port()

    def init_process_group(self, address: str, port: int, backend: str) -> bool:
        """The learner group's data-parallel group (gradients are summed or averaged over it)."""
        torch.distributed.init_process_group(
            backend, init_method=f"tcp://{address}:{port}", rank=self.rank, world_size=self.world_size,
            timeout=PROCESS_GROUP_TIMEOUT,
        )
        os.environ.update({"RANK": str(self.rank), "WORLD_SIZE": str(self.world_size), "LOCAL_RANK": "0",
                           "MASTER_ADDR": address, "MASTER_PORT": str(port)})  # what DeepSpeed reads
        return True

    # ------------------------------------------------------------------ learner rank
    def build_learner(self, state: dict[str, torch.Tensor], lr: float, warmup_steps: int, learner: dict | None = None) -> bool:
        """A fresh learner for a stage, from the driver's weights; `learner` is the stage's learner config."""
        from rlkit.learner import build_learner

        self.learner = self.reference = None  # free the previous stage's learner first
        model = _fresh_model(self.config, state, self.device)
        config = self.config if learner is None else self.config.model_copy(update={"learner": type(self.config.learner).model_validate(learner)})
        self.learner = build_learner(config, model, lr, self.device, warmup_steps)
        return True

    def logprobs(self, shard: Any, with_entropy: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.learner.logprobs(shard, with_entropy)

    def train_step(self, shard: Any, loss_fn: Any) -> dict[str, float]:
        return self.learner.train_step(shard, loss_fn)

    def make_reference(self) -> str:
        self.reference = self.learner.reference_policy()
        return self.reference.kind

    def reference_logprobs(self, shard: Any) -> torch.Tensor:
        return self.reference.logprobs(shard)[0]

    def save(self, directory: str) -> bool:
        # DeepSpeed writes per-rank optimizer partitions; torch ranks hold identical states, rank 0 writes them
        if self.config.learner.backend == "deepspeed" or self.rank == 0:
            self.learner.save(directory)
        return True

    def load(self, directory: str) -> bool:
        self.learner.load(directory)
        return True

    def full_weights(self) -> dict[str, torch.Tensor] | None:
        """Rank 0 returns the learner's full (merged, gathered) weights on CPU; every rank must be called."""
        out = {}
        for name, tensor in self.learner.named_weights():
            if self.rank == 0:
                out[name] = tensor.detach().to("cpu", copy=True)
        return out if self.rank == 0 else None

    def weight_metadata(self) -> tuple[list[str], list[str], list[list[int]]] | None:
        from rlkit.rollout.weight_group import weight_metadata

        meta = weight_metadata(self.learner.named_weights())
        return meta if self.rank == 0 else None

    # ------------------------------------------------------------------ weight sync
    def sync_engine(self) -> bool:
        """Colocated: load the learner's weights into this actor's engine, in-process."""
        self._wake()
        self.engine.update_weights(self.learner.named_weights())
        return True

    def open_weight_group(self, address: str, port: int, world_size: int, backend: str) -> bool:
        """Split placement: rank 0 is the sender (rank 0) of the weight-update group."""
        from rlkit.rollout.weight_group import open_weight_update_group

        if self.rank == 0:
            self.weight_group = open_weight_update_group(address, port, 0, world_size, backend)
        return True

    def send_weights(self) -> bool:
        """Every rank iterates the weights (ZeRO-3 gathers are collective); rank 0 broadcasts them."""
        from rlkit.rollout.weight_group import broadcast_weights

        weights = self.learner.named_weights()
        if self.rank == 0:
            broadcast_weights(self.weight_group, weights)
        else:
            for _ in weights:
                pass
        return True

    def ping(self) -> int:
        return os.getpid()


class RolloutWorker(EngineHost):
    def __init__(self, config: dict, index: int, use_gpu: bool):
        self.config = RunConfig.model_validate(config)
        self.device = _setup_process(self.config, use_gpu)
        self.index = index
        self.weight_group: Any = None
        self._init_engine_host()

    def join_weight_group(self, address: str, port: int, rank_offset: int, world_size: int, backend: str) -> bool:
        if hasattr(self.engine, "init_weight_update_group"):  # vLLM: its own workers join, one rank per TP shard
            self.engine.init_weight_update_group(address, port, rank_offset, world_size, backend)
        else:
            from rlkit.rollout.weight_group import open_weight_update_group

            self.weight_group = open_weight_update_group(address, port, rank_offset, world_size, backend)
        return True

    def receive_weights(self, names: list[str], dtypes: list[str], shapes: list[list[int]]) -> bool:
        self._wake()
        if hasattr(self.engine, "receive_weights"):
            self.engine.receive_weights(names, dtypes, shapes)
        else:
            from rlkit.rollout.weight_group import receive_weights

            self.engine.update_weights(receive_weights(self.weight_group, names, dtypes, shapes, self.device))
        return True

    def ping(self) -> int:
        return os.getpid()


class RewardWorker:
    def __init__(self, config: dict):
        from rlkit.scoring.pool import RewardPool

        self.config = RunConfig.model_validate(config)
        self.pool = RewardPool(self.config.rewards, self.config.reward.workers, self.config.reward.timeout)

    def score(self, completions: list[str], samples: list[dict[str, Any]]) -> Any:
        return self.pool.score(completions, samples)

    def close(self) -> bool:
        self.pool.close()
        return True

    def ping(self) -> int:
        return os.getpid()
