"""What every stage shares: the run directory, the policy, metrics, evaluation, and the step loop
with checkpoints, resume and a clean stop on SIGINT or SIGTERM."""

from __future__ import annotations

import json
import shutil
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from rlkit.checkpoint import atomic_dir, atomic_write_text, load_newest_intact, save_checkpoint
from rlkit.config import RunConfig, StageBase
from rlkit.data import PromptStream
from rlkit.eval.evaluate import evaluate_accuracy
from rlkit.ledger import Ledger
from rlkit.metrics_log import MetricsLog
from rlkit.progress import ProgressBar
from rlkit.rollout.base import RolloutEngine
from rlkit.scoring.pool import RewardPool

if TYPE_CHECKING:
    from rlkit.eval.periodic import BenchmarkEvaluator
    from rlkit.learner.base import Learner
    from rlkit.runtime.groups import RemoteRewardPool
    from rlkit.runtime.ray_runtime import RayRuntime


STEP_SEED_STRIDE = 100003  # a prime larger than any stage's step count: runs with different seeds never share a step's seed


def step_seed(run_seed: int, step: int) -> int:
    """The sampling seed of a stage's step `step` (1-based) in a run seeded `run_seed`."""
    return run_seed * STEP_SEED_STRIDE + step


class Interrupted(Exception):
    """Raised after a SIGINT or SIGTERM once the current step's checkpoint is saved."""

    def __init__(self, stage: str, step: int, checkpoint: Path, signum: int = signal.SIGINT):
        super().__init__(f"interrupted in stage '{stage}' after step {step}; checkpoint saved to {checkpoint}")
        self.checkpoint, self.signum = checkpoint, signum


class Aborted(BaseException):
    """A second stop signal: the run stops at once, without a checkpoint (a BaseException, like
    KeyboardInterrupt, so no `except Exception` on the way swallows it)."""

    def __init__(self, signum: int):
        super().__init__(f"stopped at once by a second {signal.Signals(signum).name}; the last checkpoint saved is kept")
        self.signum = signum


@dataclass
class StageContext:
    config: RunConfig
    run_dir: Path
    model: torch.nn.Module
    tokenizer: Any
    device: torch.device
    resume: bool = False
    metrics: MetricsLog = field(init=False)
    summary: dict[str, Any] = field(init=False)
    stop_signal: int = 0  # the signal (SIGINT, SIGTERM) that asked the stage loop to stop; 0: none
    eval_samples: list[dict[str, Any]] = field(default_factory=list)
    eval_scorer: RewardPool | None = None
    engine: RolloutEngine | None = None
    benchmark_evaluator: BenchmarkEvaluator | None = None  # built on the first evaluate()
    runtime: RayRuntime | None = None  # under `runtime: ray`; None = everything in this process

    def __post_init__(self) -> None:
        self.metrics = MetricsLog(self.run_dir / "metrics.jsonl")
        path = self.run_dir / "summary.json"
        self.summary = json.loads(path.read_text()) if (self.resume and path.exists()) else {"stages": {}}

    def stage_dir(self, stage: StageBase) -> Path:
        path = self.run_dir / "stages" / str(stage.name)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def save_summary(self) -> None:
        atomic_write_text(self.run_dir / "summary.json", json.dumps(self.summary, indent=1))

    def evaluate(self) -> dict[str, float]:
        """Held-out accuracy, plus `<benchmark>/accuracy` for each of `eval.benchmarks`."""
        max_new = self.config.eval.max_new_tokens or self.config.rollout.max_new_tokens
        result = evaluate_accuracy(
            self.engine, self.tokenizer, self.eval_samples, self.eval_scorer, max_new, self.config.eval.batch_size
        )
        if self.config.eval.benchmarks:
            if self.benchmark_evaluator is None:  # loaded on first use: runs without benchmarks never read them
                from rlkit.eval.periodic import BenchmarkEvaluator

                self.benchmark_evaluator = BenchmarkEvaluator(self.config.eval, max_new, self.config.seed)
            result.update(self.benchmark_evaluator(self.engine, self.tokenizer, self.eval_scorer))
        return result

    # Where the parts of a stage live: in this process, or (runtime: ray) behind the same seams on Ray actors.
    def build_learner(self, stage: StageBase) -> Learner:
        if self.runtime is not None:
            return self.runtime.build_learner(self, stage)
        from rlkit.learner import build_learner
        from rlkit.learner.lora import learner_for_stage

        config = self.config.model_copy(update={"learner": learner_for_stage(self.config.learner, str(stage.name))})
        return build_learner(config, self.model, stage.lr, self.device, stage.warmup_steps)

    def build_engine(self) -> RolloutEngine:
        if self.runtime is not None:
            return self.runtime.build_engine(self)
        from rlkit.rollout import build_engine

        return build_engine(self.config, self.model, self.tokenizer)

    def build_scorer(self) -> RewardPool | RemoteRewardPool:
        if self.runtime is not None:
            return self.runtime.build_scorer(self)
        return RewardPool(self.config.rewards, self.config.reward.workers, self.config.reward.timeout)

    def publish_policy(self, learner: Learner) -> None:
        """Copy the learner's weights into the stage's model (saved as the stage output) and the engine.

        Free when they share tensors (local runtime, full fine-tuning); needed when the learner
        trains a copy: LoRA (merged weights), DeepSpeed, Ray actors, an engine with its own weights.
        """
        params = dict(self.model.named_parameters())
        with torch.no_grad():
            for name, tensor in learner.named_weights():
                if params[name].data_ptr() != tensor.data_ptr():
                    params[name].copy_(tensor.to(params[name].device, params[name].dtype))
        if self.engine is not None:
            self.engine.update_weights(learner.named_weights())

    def save_stage_output(self, stage: StageBase) -> Path:
        def write(tmp: Path) -> None:
            self.model.save_pretrained(tmp)
            self.tokenizer.save_pretrained(tmp)

        out = atomic_dir(self.stage_dir(stage) / "output", write)
        shutil.rmtree(self.stage_dir(stage) / "checkpoints", ignore_errors=True)  # the output supersedes them
        return out


def run_steps(
    ctx: StageContext,
    stage: StageBase,
    learner,  # noqa: ANN001
    stream: PromptStream,
    step_fn: Callable[[int], dict[str, float]],
    status_keys: dict[str, str],
    eval_every: int = 0,
) -> None:
    """The stage loop: resume, step, log, evaluate, checkpoint, stop cleanly when asked."""
    stage_dir = ctx.stage_dir(stage)
    start = 0
    loaded = load_newest_intact(stage_dir, learner) if ctx.resume else None
    if loaded is not None:
        checkpoint, state = loaded
        start, stream.position = state["step"], state["data_position"]
        ctx.metrics.truncate_after(str(stage.name), start)
        Ledger(ctx.run_dir).truncate_after(str(stage.name), start)  # the rl stage's per-problem rows, by the same rule
        ctx.publish_policy(learner)  # the engine generates the next step from the checkpoint's weights
        print(f"[{stage.name}] resumed from {checkpoint} (step {start}/{stage.steps})", flush=True)
    elif ctx.resume:
        ctx.metrics.truncate_after(str(stage.name), 0)
        Ledger(ctx.run_dir).truncate_after(str(stage.name), 0)
    progress = ProgressBar(str(stage.name), stage.steps, start=start, unit="steps", every=10)
    try:
        for step in range(start + 1, stage.steps + 1):
            record = {"stage": stage.name, "step": step, **step_fn(step)}
            if eval_every and step % eval_every == 0 and step != stage.steps:
                record.update({f"eval/{k}": v for k, v in ctx.evaluate().items()})
            ctx.metrics.write(record)
            progress.update(step, {label: record[key] for label, key in status_keys.items() if key in record})
            if step % ctx.config.checkpoint.every == 0 or ctx.stop_signal:
                saved = save_checkpoint(stage_dir, step, learner, {"data_position": stream.position}, ctx.config.checkpoint.keep)
                if ctx.stop_signal:
                    raise Interrupted(str(stage.name), step, saved, ctx.stop_signal)
        ctx.publish_policy(learner)  # the stage's output and its final eval see the trained weights
    finally:
        progress.close()
