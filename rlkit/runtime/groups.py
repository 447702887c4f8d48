"""Driver-side stand-ins that implement the loop's seams by forwarding to Ray actors.

`LearnerGroup` is a Learner (data parallel: each rank gets a shard of the batch), `RolloutGroup`
a RolloutEngine (prompts split over the engines), `RemoteRewardPool` a RewardPool. The RL step
calls them exactly as it calls the local objects.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import torch

from rlkit.errors import RlkitError
from rlkit.learner.base import LossFn, TokenBatch
from rlkit.learner.reference import ReferencePolicy
from rlkit.rollout.base import Completion, SamplingParams

# Metrics every rank reports identically (taken from rank 0); the rest are batch-normalized parts, summed.
REPLICATED_METRICS = ("grad_norm", "lr")
ENGINE_SEED_STRIDE = 7919  # a prime: engine i samples with seed + i * stride, so engines draw different samples


class WorkerDied(RlkitError):
    """A Ray actor of the run died (crash, OOM kill, lost node)."""

    def __init__(self, actor: str, detail: str):
        super().__init__(f"Ray actor '{actor}' died: {detail}")
        self.actor = actor


def gather(calls: list[tuple[str, Any]]) -> list[Any]:
    """Results of remote calls, in order. Waits on all of them together so that the first failure is
    reported at once, naming its actor, instead of hanging on ranks blocked in a collective with it."""
    import ray
    from ray.exceptions import RayActorError

    pending = {ref: name for name, ref in calls}
    results: dict[Any, Any] = {}
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        for ref in ready:
            name = pending.pop(ref)
            try:
                results[ref] = ray.get(ref)
            except RayActorError as err:
                raise WorkerDied(name, str(err).strip().splitlines()[0]) from None
    return [results[ref] for _, ref in calls]


def row_shards(batch: TokenBatch, parts: int) -> list[TokenBatch]:
    """Contiguous, near-equal row shards, one per rank (row groups such as DPO pairs stay whole)."""
    if len(batch) // batch.row_group < parts:
        raise ValueError(f"a batch of {len(batch)} sequences cannot be split over {parts} learner ranks; raise the batch size")
    return [batch.select(rows) for rows in batch.row_splits(parts)]


def pad_cat(parts: list[torch.Tensor], width: int) -> torch.Tensor:
    return torch.cat([torch.nn.functional.pad(p, (0, width - p.shape[1])) for p in parts])


class GroupWeights:
    """`LearnerGroup.named_weights()`: iterating pulls the full weights to the driver; the rollout
    group recognizes it and syncs actor to actor instead (in-process or over the weight group)."""

    def __init__(self, group: LearnerGroup):
        self.group = group

    def __iter__(self) -> Iterator[tuple[str, torch.Tensor]]:
        state = gather([(name, w.full_weights.remote()) for name, w in self.group.workers])[0]
        return iter(state.items())


class LearnerGroup:
    def __init__(self, workers: list[tuple[str, Any]]):
        self.workers = workers  # (actor name, handle), rank order

    def logprobs(self, batch: TokenBatch, with_entropy: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        shards = row_shards(batch, len(self.workers))
        out = gather([(name, w.logprobs.remote(shard, with_entropy)) for (name, w), shard in zip(self.workers, shards)])
        width = batch.input_ids.shape[1]
        logprobs = pad_cat([lp for lp, _ in out], width)
        entropy = pad_cat([ent for _, ent in out], width) if with_entropy else None
        return logprobs, entropy

    def train_step(self, batch: TokenBatch, loss_fn: LossFn) -> dict[str, float]:
        import ray

        loss_ref = ray.put(loss_fn)  # cloudpickled once, shared by every rank
        shards = row_shards(batch, len(self.workers))
        results = gather([(name, w.train_step.remote(shard, loss_ref)) for (name, w), shard in zip(self.workers, shards)])
        merged: dict[str, float] = {}
        for metrics in results:
            for key, value in metrics.items():
                if key not in REPLICATED_METRICS:
                    merged[key] = merged.get(key, 0.0) + value
        merged.update({k: results[0][k] for k in REPLICATED_METRICS if k in results[0]})
        return merged

    def named_weights(self) -> GroupWeights:
        return GroupWeights(self)

    def reference_policy(self) -> ReferencePolicy:
        kinds = gather([(name, w.make_reference.remote()) for name, w in self.workers])

        def remote_logprobs(batch: TokenBatch) -> torch.Tensor:
            shards = row_shards(batch, len(self.workers))
            out = gather([(name, w.reference_logprobs.remote(s)) for (name, w), s in zip(self.workers, shards)])
            return pad_cat(out, batch.input_ids.shape[1])

        return ReferencePolicy(remote_logprobs, kinds[0])

    def save(self, directory: str) -> None:
        gather([(name, w.save.remote(str(directory))) for name, w in self.workers])

    def load(self, directory: str) -> None:
        gather([(name, w.load.remote(str(directory))) for name, w in self.workers])


class RolloutGroup:
    """Prompts are split into contiguous chunks, one per engine; completions come back in prompt order."""

    def __init__(self, workers: list[tuple[str, Any]], sync_from_learner: Callable[[], None]):
        self.workers = workers
        self._sync_from_learner = sync_from_learner

    def generate(self, prompts: list[list[int]], sampling: SamplingParams) -> list[Completion]:
        chunks = [c.tolist() for c in torch.arange(len(prompts)).tensor_split(len(self.workers)) if len(c)]
        calls = []
        for index, rows in enumerate(chunks):
            name, worker = self.workers[index]
            seed = None if sampling.seed is None else sampling.seed + ENGINE_SEED_STRIDE * index  # engines draw different samples
            calls.append((name, worker.generate.remote([prompts[i] for i in rows], dataclasses.replace(sampling, seed=seed))))
        out: list[Completion] = []
        for rows, completions in zip(chunks, gather(calls)):
            for completion in completions:
                completion.prompt_index += rows[0]
            out += completions
        return out

    def update_weights(self, named_tensors: Any) -> None:
        if isinstance(named_tensors, GroupWeights):
            self._sync_from_learner()  # actor to actor; the weights never pass the driver
            return
        import ray

        state = ray.put({name: t.detach().to("cpu", copy=True) for name, t in named_tensors})
        gather([(name, w.load_engine_weights.remote(state)) for name, w in self.workers])

    def engine_logprobs(self, prompts: list[list[int]], responses: list[list[int]]) -> list[list[float]]:
        """Each engine's log-probabilities of the same responses (to check that all hold the same weights)."""
        return gather([(name, w.engine_logprobs.remote(prompts, responses)) for name, w in self.workers])

    def sleep(self) -> None:
        gather([(name, w.sleep.remote()) for name, w in self.workers])

    def wake(self) -> None:
        gather([(name, w.wake.remote()) for name, w in self.workers])

    def close(self) -> None:
        pass  # the engine actors serve every stage; the runtime stops them at shutdown


class RemoteRewardPool:
    def __init__(self, name: str, actor: Any):
        self.name, self.actor = name, actor

    def score(self, completions: list[str], samples: list[dict[str, Any]]) -> Any:
        return gather([(self.name, self.actor.score.remote(completions, samples))])[0]

    def close(self) -> None:
        pass  # the actor serves every stage; the runtime stops it at shutdown
