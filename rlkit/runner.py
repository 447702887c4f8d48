"""Run a recipe: its stages in order, each stage's output model the next one's input.

A finished stage (its `output/` exists) is skipped on resume; an unfinished one continues
from its last checkpoint.
"""

from __future__ import annotations

import json
import shutil
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from rlkit.algos.registry import Entry
from rlkit.checkpoint import atomic_dir, atomic_write_text
from rlkit.config import RewardSpec, RunConfig, StageBase, dump_config, stage_reference
from rlkit.data import load_samples
from rlkit.errors import ConfigError
from rlkit.models import load_model, load_tokenizer, resolve_device
from rlkit.scoring.pool import RewardPool
from rlkit.stages import distill, dpo, rl, sft, synthesize  # noqa: F401  (importing a stage module registers its type)
from rlkit.stages.context import Aborted, StageContext
from rlkit.stages.registry import STAGES
from rlkit.templates import resolve_template

if TYPE_CHECKING:
    from rlkit.runtime.ray_runtime import RayRuntime

def stage_entry(kind: str) -> Entry:
    """The registration of a stage type: its run function `fn(ctx, stage)` and its traits (rlkit/stages/registry.py)."""
    entry = STAGES.get(kind)
    return Entry(entry.name, entry.fn, {"rl_like": False, "data_stage": False, **entry.traits})


def with_stage_data(stage: StageBase, config: RunConfig, run_dir: Path) -> StageBase:
    """The stage with a `stage:<name>/<set>` data source replaced by that data stage's file in this run.
    Its `template: auto` is the one the data stage rendered its problems with (tiny-world rows stay bare)."""
    data = getattr(stage, "data", None)  # a synthesize stage has none
    reference = stage_reference(data.source) if data is not None else None
    if reference is None:
        return stage
    name, data_set = reference
    update: dict = {"source": str(run_dir / "stages" / name / "output" / f"{data_set}.jsonl")}
    if stage.data.template == "auto":
        update["template"] = resolve_template("auto", config.stage(name).data.source)
    return stage.model_copy(update={"data": stage.data.model_copy(update=update)})


def _run_data_stage(ctx: StageContext, stage: StageBase) -> None:
    """A data stage writes its own output (datasets) and trains nothing: no model saved, no eval."""
    started = time.time()
    funnel = stage_entry(stage.type).fn(ctx, stage)
    ctx.summary["stages"][str(stage.name)] = {"data": funnel, "time_s": time.time() - started}
    ctx.save_summary()


RUN_FILES = ("config.yaml", "summary.json", "metrics.jsonl", "stages")  # what a run writes before its first step


def progress_of(run_dir: Path) -> str | None:
    """What a run directory's earlier run got done ('stage rl, step 13'), or None when it stopped before
    its first step (no metrics line, no checkpoint, no stage output)."""
    metrics = run_dir / "metrics.jsonl"
    lines = [line for line in metrics.read_text(errors="replace").splitlines() if line.strip()] if metrics.is_file() else []
    if lines:
        try:
            last = json.loads(lines[-1])
            return f"stage {last.get('stage')}, step {last.get('step')}"
        except ValueError:
            return f"{len(lines)} lines in metrics.jsonl"
    stages = run_dir / "stages"
    if (run_dir / "final").exists() or any(stages.glob("*/output")) or any(stages.glob("*/checkpoints/step-*")):
        return "a checkpoint or a finished stage"
    return None


def prepare_run_dir(config: RunConfig, run_dir: Path, resume: bool) -> None:
    config_path = run_dir / "config.yaml"
    if resume:
        if not config_path.exists():
            raise ConfigError(f"--resume: {run_dir} holds no run (no config.yaml); pass the --output-dir of the run to resume")
        return
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"--output-dir {run_dir} is a file, not a directory; choose a directory")
    if run_dir.is_dir() and any(run_dir.iterdir()):
        others = [p.name for p in run_dir.iterdir() if p.name not in RUN_FILES]
        if others or not config_path.exists():
            raise ConfigError(f"output directory {run_dir} is not empty (it holds {sorted(p.name for p in run_dir.iterdir())[:3]}); "
                              "choose another --output-dir")
        if (done := progress_of(run_dir)) is not None:
            raise ConfigError(f"output directory {run_dir} holds a run that got to {done}; pass --resume to continue it "
                              "(its saved config plus any overrides given now) or choose another --output-dir")
        # a run that failed before its first step left only its config: start it over, with this config
        print(f"rlkit: {run_dir} holds a run that stopped before its first step; starting it over", flush=True)
        for name in RUN_FILES:
            path = run_dir / name
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(config_path, dump_config(config))


def run_recipe(config: RunConfig, run_dir: Path, resume: bool = False) -> dict[str, Any]:
    run_dir = Path(run_dir)
    prepare_run_dir(config, run_dir, resume)
    started = time.time()
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # no "Writing model shards" bar at every checkpoint
    torch.manual_seed(config.seed)
    if config.threads:
        torch.set_num_threads(config.threads)
    if config.runtime == "ray":
        from rlkit.runtime.ray_runtime import run_recipe_on_ray

        return run_recipe_on_ray(config, run_dir, resume, run_stages_here)
    return run_stages_here(config, run_dir, resume, started)


# Ctrl-C, and SIGTERM as Slurm, Kubernetes and `timeout` send it: finish the step, checkpoint, stop.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _stop_handler(ctx: StageContext):  # noqa: ANN202
    """The first signal asks the stage loop to stop after the current step; a second one stops at once."""

    def request_stop(signum, frame):  # noqa: ANN001, ARG001
        if ctx.stop_signal:
            raise Aborted(signum)
        ctx.stop_signal = signum
        name = signal.Signals(signum).name
        again = "press Ctrl-C again" if signum == signal.SIGINT else f"send {name} again"
        print(f"\n{name}: stopping after this step and saving a checkpoint ({again} to stop at once)", flush=True)

    return request_stop


def run_stages_here(config: RunConfig, run_dir: Path, resume: bool, started: float, runtime: RayRuntime | None = None) -> dict[str, Any]:
    """Run the stages from this process. `runtime` (the Ray runtime) puts engine, learner and rewards
    on actors behind the same seams; the driver's model then only carries each stage's weights."""
    device = torch.device("cpu") if runtime is not None else resolve_device(config.device)
    tokenizer = load_tokenizer(config.model)
    model = load_model(config.model, seed=config.seed).to(device)
    ctx = StageContext(config, run_dir, model, tokenizer, device, resume=resume, runtime=runtime)
    ctx.eval_samples = load_samples(config.eval.data.model_copy(update={"limit": config.eval.limit or config.eval.data.limit}))
    ctx.eval_scorer = RewardPool([RewardSpec(name=config.eval.reward)])

    if config.logging.backends:
        from rlkit.tracking import build_trackers

        ctx.metrics.trackers = build_trackers(config, run_dir, resume)
    previous = {signum: signal.signal(signum, _stop_handler(ctx)) for signum in STOP_SIGNALS}
    try:
        _run_stages(ctx)
        ctx.summary["wall_time_s"] = ctx.summary.get("wall_time_s", 0.0) + (time.time() - started)
        ctx.save_summary()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        ctx.metrics.close(ctx.summary)  # trackers flush what they have, also when the run stops early
    return ctx.summary


def _run_stages(ctx: StageContext) -> None:
    config = ctx.config
    first_rl = next((i for i, s in enumerate(config.stages) if stage_entry(s.type).rl_like), 0)
    previous_output: Path | None = None
    for index, stage in enumerate(config.stages):
        output = ctx.run_dir / "stages" / str(stage.name) / "output"
        if stage_entry(stage.type).data_stage:
            if output.is_dir():
                print(f"[{stage.name}] done in an earlier run; skipping", flush=True)
            else:
                _run_data_stage(ctx, stage)
            continue
        stage = with_stage_data(stage, config, ctx.run_dir)
        if output.is_dir():
            print(f"[{stage.name}] done in an earlier run; skipping", flush=True)
            previous_output = output
            continue
        if previous_output is not None:  # continue from the last finished stage's model
            ctx.model.load_state_dict(type(ctx.model).from_pretrained(previous_output).state_dict())
            previous_output = None
        _replace_engine(ctx)
        if index == first_rl and "initial_eval" not in ctx.summary:
            ctx.summary["initial_eval"] = ctx.evaluate()
            ctx.save_summary()
            print(f"[{stage.name}] initial held-out accuracy {ctx.summary['initial_eval']['accuracy']:.3f}", flush=True)
        stage_started = time.time()
        stage_entry(stage.type).fn(ctx, stage)
        ctx.save_stage_output(stage)
        before = config.stages[index - 1].name if index else None
        if stage.type == "synthesize" and str(before) in ctx.summary["stages"]:
            result = ctx.summary["stages"][str(before)]["eval"]  # the policy is unchanged: its eval stands
        else:
            result = ctx.evaluate()
        ctx.summary["stages"][str(stage.name)] = {"eval": result, "time_s": time.time() - stage_started}
        ctx.save_summary()
        print(f"[{stage.name}] done: held-out accuracy {result['accuracy']:.3f}", flush=True)
    if previous_output is not None:
        ctx.model.load_state_dict(type(ctx.model).from_pretrained(previous_output).state_dict())
        _replace_engine(ctx)
    if "final_eval" not in ctx.summary:
        last = config.stages[-1].name
        ctx.summary["final_eval"] = ctx.summary["stages"].get(str(last), {}).get("eval") or ctx.evaluate()
    _save_final(ctx)


def _replace_engine(ctx: StageContext) -> None:
    """A fresh engine for the next stage; the previous one gives its memory back first (vLLM holds
    its `gpu_memory_utilization` share until closed)."""
    if ctx.engine is not None:
        ctx.engine.close()
    ctx.engine = ctx.build_engine()


def _save_final(ctx: StageContext) -> None:
    def write(tmp: Path) -> None:
        ctx.model.save_pretrained(tmp)
        ctx.tokenizer.save_pretrained(tmp)

    atomic_dir(ctx.run_dir / "final", write)


def format_summary(summary: dict[str, Any]) -> str:
    lines = []
    for name, info in summary.get("stages", {}).items():
        if "data" in info:  # a data stage: its funnel, no accuracy
            lines.append(f"  {name:<14} " + ", ".join(f"{k} {v}" for k, v in info["data"].items()) + f"   ({info['time_s']:.0f} s)")
            continue
        lines.append(f"  {name:<14} accuracy {info['eval']['accuracy']:.3f}   ({info['time_s']:.0f} s)")
    if "initial_eval" in summary and "final_eval" in summary:
        a, b = summary["initial_eval"]["accuracy"], summary["final_eval"]["accuracy"]
        lines.append(f"held-out accuracy: {a:.3f} -> {b:.3f} ({b - a:+.3f}) in {summary.get('wall_time_s', 0):.0f} s")
    return "\n".join(lines)

