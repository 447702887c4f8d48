"""The `synthesize` stage (SwS): the previous rl stage's ledger and model in, new problems out.

It reads the accuracy history of every problem the rl stage sampled (rlkit/ledger.py), runs the
synth/ pipeline with the generation backends the recipe names, and uses the policy as it stands now
(the rl stage's output) for the difficulty filter. The new problems land in
`stages/<name>/synth/synthetic.jsonl`; a later rl stage adds them to its own rows with
`data.synthetic_from: <name>`. With no weaknesses the file is empty and that stage trains on the
original data alone. The stage's model output is the policy unchanged, so the next stage continues
from it. Work is written as it finishes: a rerun of an interrupted stage asks again only what was
not done (synth/pipeline.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rlkit.config import DataConfig, RLStage, SynthesizeStage
from rlkit.data import load_samples
from rlkit.errors import DataError
from rlkit.generation import build_generator
from rlkit.generation.local import LocalEngineGenerator
from rlkit.ledger import accuracy_history
from rlkit.stages.context import StageContext
from rlkit.stages.registry import STAGES
from rlkit.synth.pipeline import Backends, Result, run_pipeline
from rlkit.synth.report import StepBars, print_report
from rlkit.templates import render_prompt, resolve_template

SYNTH_DIR = "synth"


def synthetic_path(run_dir: Path, stage_name: str) -> Path:
    return Path(run_dir) / "stages" / stage_name / SYNTH_DIR / "synthetic.jsonl"


def epoch_histories(run_dir: Path, stage_name: str) -> dict[str, list[float]]:
    """Each problem's training accuracy per epoch in one rl stage, from the run's ledger."""
    return {pid: history.accuracy for pid, history in accuracy_history(run_dir, stage_name).items()}


def original_rows(source: RLStage) -> list[dict[str, Any]]:
    """The rl stage's rows, once each (data.repeat replicates them)."""
    unique: dict[str, dict[str, Any]] = {}
    for row in load_samples(source.data):
        unique.setdefault(row["id"], row)
    return list(unique.values())


def policy_prompter(data: DataConfig):  # noqa: ANN201 - row -> chat messages
    """Render a new problem the way the rl stage prompts its rows."""
    template = resolve_template(data.template, data.source)
    return lambda row: render_prompt(row["problem"], template)


def build_backends(stage: SynthesizeStage, policy: Any, data: DataConfig, temperature: float, max_tokens: int) -> Backends:
    embed = None
    if stage.synth.embedding_model:
        from rlkit.synth.embeddings import hf_embedder

        embed = hf_embedder(stage.synth.embedding_model)
    return Backends(
        concepts=build_generator(stage.concepts), writer=build_generator(stage.writer),
        raters=[build_generator(rater) for rater in stage.raters], solver=build_generator(stage.solver),
        policy=policy, policy_prompt=policy_prompter(data), policy_temperature=temperature,
        policy_max_tokens=max_tokens, embed=embed,
    )


def synthesize(
    run_dir: Path, stage: SynthesizeStage, source: RLStage, policy: Any, temperature: float, max_tokens: int,
    seed: int, out: Path | None = None,
) -> Result:
    """The pipeline on a run's rl stage: what the stage runs, and what `rlkit synth` runs on a finished run."""
    histories = epoch_histories(run_dir, str(source.name))
    backends = build_backends(stage, policy, source.data, temperature, max_tokens)
    bars = StepBars(str(stage.name))
    try:
        result = run_pipeline(
            original_rows(source), histories, backends, stage.synth,
            out or Path(run_dir) / "stages" / str(stage.name) / SYNTH_DIR,
            seed=stage.synth.seed if stage.synth.seed is not None else seed, progress=bars,
        )
    finally:
        bars.close()
        for backend in (backends.concepts, backends.writer, *backends.raters, backends.solver):
            backend.close()
    print_report(result)
    return result


@STAGES.register("synthesize")
def run_synthesize(ctx: StageContext, stage: SynthesizeStage) -> None:
    source = ctx.config.stage(str(stage.source))
    policy = LocalEngineGenerator(ctx.engine, ctx.tokenizer)
    rollout = ctx.config.rollout
    result = synthesize(ctx.run_dir, stage, source, policy, rollout.temperature, rollout.max_new_tokens, ctx.config.seed)  # type: ignore[arg-type]
    ctx.summary.setdefault("synthesis", {})[str(stage.name)] = {
        "funnel": result.funnel, "failure_rates": result.failure_rates, "budgets": result.budgets, "message": result.message,
    }
    ctx.save_summary()


def synthetic_samples(run_dir: Path, data: DataConfig) -> list[dict[str, Any]]:
    """The new problems of `data.synthetic_from`, prompted with the data's template; [] when not set."""
    if data.synthetic_from is None:
        return []
    path = synthetic_path(run_dir, data.synthetic_from)
    if not path.exists():
        raise DataError(f"{path}: the synthesize stage '{data.synthetic_from}' has not written its problems")
    template = resolve_template(data.template, data.source)
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [{**row, "prompt": render_prompt(row["problem"], template)} for row in rows]
