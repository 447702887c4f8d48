"""Where the Ray runtime's actors go: learner ranks, rollout engines, one bundle each.

Colocated placement: one actor per learner rank that also holds that GPU's rollout engine
(the engine sleeps while the learner trains). Split placement: learner ranks on `ray.train_gpus`
GPUs, engines on `ray.rollout_gpus` GPUs, `rollout.tensor_parallel_size` GPUs per engine.
On a cluster without GPUs the same counts are CPU processes (CI, laptops).
"""

from __future__ import annotations

from dataclasses import dataclass

from rlkit.config import RayConfig, RolloutConfig
from rlkit.errors import ConfigError


@dataclass(frozen=True)
class Layout:
    colocate: bool
    use_gpu: bool
    learner_ranks: int
    rollout_workers: int  # engines; under colocation the learner ranks' own
    tensor_parallel_size: int

    def bundles(self) -> list[dict[str, float]]:
        """Placement-group bundles: learner ranks first, then (split placement) one per engine."""
        learner = {"CPU": 1.0, **({"GPU": 1.0} if self.use_gpu else {})}
        engine = {"CPU": 1.0, **({"GPU": float(self.tensor_parallel_size)} if self.use_gpu else {})}
        return [learner] * self.learner_ranks + ([] if self.colocate else [engine] * self.rollout_workers)

    def rollout_bundle(self, worker: int) -> int:
        return worker if self.colocate else self.learner_ranks + worker

    @property
    def gpus(self) -> int:
        return int(sum(b.get("GPU", 0) for b in self.bundles()))

    @property
    def cpus(self) -> int:
        """Logical CPUs the layout asks for, the reward pool actor included."""
        return len(self.bundles()) + 1

    def describe(self) -> str:
        kind = "GPU" if self.use_gpu else "CPU"
        if self.colocate:
            return f"colocated: {self.learner_ranks} {kind} actor(s), each a learner rank with its rollout engine"
        return (f"split: {self.learner_ranks} learner rank(s) and {self.rollout_workers} rollout engine(s) "
                f"x {self.tensor_parallel_size} {kind}(s)")


def plan_layout(ray: RayConfig, rollout: RolloutConfig, cluster_gpus: float, device: str) -> Layout:
    """The layout a recipe asks for, checked against the cluster; errors name the key to change."""
    if device == "cuda" and cluster_gpus < 1:
        raise ConfigError("key 'device': 'cuda' was asked for but the Ray cluster has no GPUs")
    use_gpu = device != "cpu" and cluster_gpus >= 1
    tp = rollout.tensor_parallel_size
    if ray.train_gpus < 1:
        raise ConfigError(f"key 'ray.train_gpus': the learner group needs at least one rank, got {ray.train_gpus}")
    if tp > 1 and rollout.engine != "vllm":
        raise ConfigError(f"key 'rollout.tensor_parallel_size': {tp} needs rollout.engine: vllm (the HF engine has no tensor parallelism)")
    if ray.colocate:
        if tp > 1:
            raise ConfigError(
                f"key 'rollout.tensor_parallel_size': colocated placement runs one engine per learner rank; "
                f"set ray.colocate: false to run engines of {tp} GPUs"
            )
        workers = ray.train_gpus
    else:
        if ray.rollout_gpus < 1:
            raise ConfigError(f"key 'ray.rollout_gpus': split placement needs at least one rollout GPU, got {ray.rollout_gpus}")
        if ray.rollout_gpus % tp:
            raise ConfigError(
                f"key 'ray.rollout_gpus': {ray.rollout_gpus} is not a multiple of rollout.tensor_parallel_size={tp}"
            )
        workers = ray.rollout_gpus // tp
    layout = Layout(ray.colocate, use_gpu, ray.train_gpus, workers, tp)
    if use_gpu and layout.gpus > cluster_gpus:
        raise ConfigError(
            f"keys 'ray.train_gpus'/'ray.rollout_gpus': the layout ({layout.describe()}) needs {layout.gpus} GPUs, "
            f"the Ray cluster has {cluster_gpus:g}"
        )
    return layout
