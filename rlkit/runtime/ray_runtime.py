"""`runtime: ray`: the same stages and RL step, with the engine, learner and rewards on Ray actors.

The driver runs the stage loop (rlkit/stages/) unchanged. `RayRuntime` hands it objects that
implement the loop's seams and forward to actors (rlkit/runtime/groups.py):

    RolloutGroup  -> PolicyWorker engines (colocated) or RolloutWorker engines (split)
    LearnerGroup  -> PolicyWorker learner ranks, data parallel over one torch.distributed group
    RemoteRewardPool -> RewardWorker

Weight sync after each step goes actor to actor: in-process in each colocated PolicyWorker, or a
broadcast from learner rank 0 over the weight-update group (NCCL between GPUs, gloo on CPU) under
split placement. A local Ray instance is started when no address is given; a dead actor stops the
run with its name, and the last checkpoint stays for `--resume`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from rlkit.checkpoint import latest_checkpoint
from rlkit.config import RewardSpec, RunConfig, StageBase
from rlkit.errors import ConfigError, import_backend
from rlkit.runtime.groups import LearnerGroup, RemoteRewardPool, RolloutGroup, WorkerDied, gather
from rlkit.runtime.placement import Layout, plan_layout

PLACEMENT_TIMEOUT_S = 120.0
REWARD_ACTOR = "rlkit-reward-pool"


def import_ray():  # noqa: ANN201
    return import_backend("ray", "runtime: ray", "ray")


def absolute_reward_paths(specs: list[RewardSpec]) -> list[RewardSpec]:
    """'path/file.py:fn' relative to the driver's directory, made absolute for actors that start elsewhere."""
    out = []
    for spec in specs:
        if ".py:" in spec.name and not os.path.isabs(spec.name):
            path, fn = spec.name.rsplit(":", 1)
            spec = spec.model_copy(update={"name": f"{os.path.abspath(path)}:{fn}"})
        out.append(spec)
    return out


def plain_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The driver model's parameters (tied weights once), as the engines and learners name them."""
    return {name: p.detach().to("cpu", copy=True) for name, p in model.named_parameters()}


class RayRuntime:
    def __init__(self, config: RunConfig):
        ray = import_ray()
        self.config = config
        self.started_ray = False
        address = config.ray.address or os.environ.get("RAY_ADDRESS")
        if not ray.is_initialized():
            if address:
                ray.init(address=address, namespace="rlkit", log_to_driver=True)
            else:
                ray.init(address="local", num_cpus=self._local_cpus(), include_dashboard=False, namespace="rlkit",
                         log_to_driver=True, configure_logging=False)
                self.started_ray = True
        gpus = float(ray.cluster_resources().get("GPU", 0))
        self.layout: Layout = plan_layout(config.ray, config.rollout, gpus, config.device)
        self.actors: list[Any] = []
        self.placement_group = None
        self.weight_meta: tuple | None = None
        self.weight_group_open = False
        try:
            self._start_actors()
        except BaseException:
            self.shutdown()
            raise
        print(f"rlkit: Ray runtime, {self.layout.describe()}", flush=True)

    def _local_cpus(self) -> int:
        # Logical CPUs of the local instance: the recipe's, else this machine's, at least what the actors ask for.
        plan = plan_layout(self.config.ray, self.config.rollout, 0, "cpu")
        return self.config.ray.num_cpus or max(os.cpu_count() or 1, plan.cpus)

    # ------------------------------------------------------------------ actors
    def _start_actors(self) -> None:
        ray = import_ray()
        from ray.util.placement_group import placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        from rlkit.runtime.actors import PolicyWorker, RewardWorker, RolloutWorker

        layout, config_json = self.layout, self.config.model_dump(mode="json")
        config_json["rewards"] = [s.model_dump(mode="json") for s in absolute_reward_paths(self.config.rewards)]
        bundles = layout.bundles()
        self.placement_group = placement_group(bundles, strategy="PACK")
        ready, _ = ray.wait([self.placement_group.ready()], timeout=PLACEMENT_TIMEOUT_S)
        if not ready:
            raise ConfigError(
                f"the Ray cluster cannot place {layout.describe()} ({len(bundles)} bundles of {bundles[0]}) within "
                f"{PLACEMENT_TIMEOUT_S:.0f} s; available: {ray.available_resources()}. Lower ray.train_gpus/ray.rollout_gpus "
                f"or add nodes"
            )

        def options(name: str, bundle: int, resources: dict[str, float]) -> dict[str, Any]:
            return dict(
                name=name, num_cpus=resources.get("CPU", 1.0), num_gpus=resources.get("GPU", 0.0), max_restarts=0,
                scheduling_strategy=PlacementGroupSchedulingStrategy(self.placement_group, placement_group_bundle_index=bundle),
            )

        ranks = layout.learner_ranks
        self.learners = []
        for rank in range(ranks):
            name = f"rlkit-learner-{rank}"
            handle = ray.remote(PolicyWorker).options(**options(name, rank, bundles[rank])).remote(
                config_json, rank, ranks, layout.colocate, layout.use_gpu
            )
            self.learners.append((name, handle))
        if layout.colocate:
            self.engines = self.learners
        else:
            self.engines = []
            for index in range(layout.rollout_workers):
                bundle = layout.rollout_bundle(index)
                name = f"rlkit-rollout-{index}"
                handle = ray.remote(RolloutWorker).options(**options(name, bundle, bundles[bundle])).remote(
                    config_json, index, layout.use_gpu
                )
                self.engines.append((name, handle))
        self.reward = ray.remote(RewardWorker).options(name=REWARD_ACTOR, num_cpus=1, max_restarts=0).remote(config_json)
        self.actors = [h for _, h in self.learners] + ([] if layout.colocate else [h for _, h in self.engines]) + [self.reward]
        gather([(name, h.ping.remote()) for name, h in self.learners + ([] if layout.colocate else self.engines)]
               + [(REWARD_ACTOR, self.reward.ping.remote())])

        # the learner group's data-parallel process group
        address, port = gather([(self.learners[0][0], self.learners[0][1].rendezvous_address.remote())])[0]
        backend = "nccl" if layout.use_gpu else "gloo"
        gather([(name, h.init_process_group.remote(address, port, backend)) for name, h in self.learners])
        self.learner_group = LearnerGroup(self.learners)
        self.rollout_group = RolloutGroup(self.engines, self._sync_from_learner)

    # ------------------------------------------------------------------ the stage context's factories
    def build_learner(self, ctx: Any, stage: StageBase) -> LearnerGroup:
        ray = import_ray()
        from rlkit.learner.lora import learner_for_stage

        state = ray.put(plain_weights(ctx.model))
        learner = learner_for_stage(self.config.learner, str(stage.name)).model_dump(mode="json")
        gather([(name, h.build_learner.remote(state, stage.lr, stage.warmup_steps, learner)) for name, h in self.learners])
        self.weight_meta = None  # a new learner (LoRA or not, dtype) may name or type its weights differently
        return self.learner_group

    def build_engine(self, ctx: Any) -> RolloutGroup:
        self.rollout_group.update_weights(ctx.model.named_parameters())
        return self.rollout_group

    def build_scorer(self, ctx: Any) -> RemoteRewardPool:  # noqa: ARG002
        return RemoteRewardPool(REWARD_ACTOR, self.reward)

    # ------------------------------------------------------------------ weight sync
    def _sync_from_learner(self) -> None:
        if self.layout.colocate:
            gather([(name, h.sync_engine.remote()) for name, h in self.learners])
            return
        if not self.weight_group_open:
            self._open_weight_group()
        if self.weight_meta is None:
            self.weight_meta = gather([(name, h.weight_metadata.remote()) for name, h in self.learners])[0]
        names, dtypes, shapes = self.weight_meta
        gather([(name, h.send_weights.remote()) for name, h in self.learners]
               + [(name, h.receive_weights.remote(names, dtypes, shapes)) for name, h in self.engines])

    def _open_weight_group(self) -> None:
        """Learner rank 0 (rank 0 of the group) plus every engine's ranks (one per tensor-parallel shard for vLLM)."""
        per_engine = self.layout.tensor_parallel_size if self.config.rollout.engine == "vllm" else 1
        world = 1 + per_engine * len(self.engines)
        address, port = gather([(self.learners[0][0], self.learners[0][1].rendezvous_address.remote())])[0]
        backend = "nccl" if self.layout.use_gpu else "gloo"
        calls = [(name, h.open_weight_group.remote(address, port, world, backend)) for name, h in self.learners]
        calls += [(name, h.join_weight_group.remote(address, port, 1 + per_engine * i, world, backend))
                  for i, (name, h) in enumerate(self.engines)]
        gather(calls)
        self.weight_group_open = True

    # ------------------------------------------------------------------ shutdown
    def shutdown(self) -> None:
        ray = import_ray()
        if not ray.is_initialized():
            return
        for actor in self.actors:
            try:
                ray.kill(actor)
            except Exception:  # noqa: BLE001 - already dead
                pass
        self.actors = []
        if self.placement_group is not None:
            from ray.util.placement_group import remove_placement_group

            try:
                remove_placement_group(self.placement_group)
            except Exception:  # noqa: BLE001
                pass
            self.placement_group = None
        if self.started_ray:
            ray.shutdown()


def last_checkpoint(run_dir: Path) -> Path | None:
    """The newest step checkpoint of any stage (by modification time)."""
    found = [c for stage in (Path(run_dir) / "stages").glob("*") if (c := latest_checkpoint(stage)) is not None]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def run_recipe_on_ray(config: RunConfig, run_dir: Path, resume: bool, run_stages_here: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    """What `rlkit.runner.run_recipe` calls for `runtime: ray`; it passes its `run_stages_here`, which
    runs the stages with this runtime's actors behind the seams (passed, so this module never imports the runner)."""
    started = time.time()
    runtime = RayRuntime(config)
    try:
        return run_stages_here(config, run_dir, resume, started, runtime=runtime)
    except WorkerDied as err:
        checkpoint = last_checkpoint(run_dir)
        kept = f"the last checkpoint is kept: {checkpoint}" if checkpoint else "no checkpoint had been saved yet"
        raise WorkerDied(err.actor, f"{str(err).split(': ', 1)[1]}; the run stopped and {kept}; "
                         f"continue with --resume --output-dir {run_dir}") from None
    finally:
        runtime.shutdown()
