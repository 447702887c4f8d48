"""`distill`: a data stage. The teacher (any generation backend: a local model, an OpenAI-compatible
server, the tiny world's fallible teacher) solves each problem `n` times; the stage's reward verifies
every solution; the stage writes, in `stages/<name>/output/`:

    sft.jsonl       the correct solutions (`response`), one row each
    dpo.jsonl       (chosen correct, rejected incorrect) solutions of the same problem, as rollout_dpo pairs them
    problems.jsonl  one row per problem with its tags: pass_rate (the teacher's), mean_length, samples, correct
    samples.jsonl   every scored sample (what `rlkit generate` writes)

Later stages read them by name (`data.source: stage:distill/sft`) and pick subsets with `data.where`
(`pass_rate <= 0.5`). Sampling and scoring is `rlkit generate`'s core: written as it goes, so a stage
interrupted mid-way resumes without asking the teacher again for the problems already done.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from rlkit.checkpoint import atomic_dir
from rlkit.config import DistillStage, RewardSpec
from rlkit.data import iter_jsonl, load_samples
from rlkit.distill_sets import build_distill_sets
from rlkit.errors import DataError
from rlkit.scoring.pool import RewardPool
from rlkit.scoring.registry import check_samples, reward_labels
from rlkit.stages.context import StageContext
from rlkit.stages.registry import STAGES


def verifying_reward(ctx: StageContext, stage: DistillStage) -> RewardSpec:
    """The stage's reward (default eval.reward), with the recipe's args when the recipe lists it."""
    name = stage.reward or ctx.config.eval.reward
    return next((spec for spec in ctx.config.rewards if spec.name == name), RewardSpec(name=name))


@STAGES.register("distill", data_stage=True)
def run_distill(ctx: StageContext, stage: DistillStage) -> dict[str, int]:
    """Sample, verify and split into the stage's sets; returns the funnel (also in metrics.jsonl)."""
    from rlkit.generation import build_generator
    from rlkit.generation.sample_and_score import failures_path, sample_and_score

    problems = load_samples(stage.data)
    spec = verifying_reward(ctx, stage)
    check_samples([spec], problems, stage.data.source)  # a problem without a gold answer, before any request
    samples_path = ctx.stage_dir(stage) / "samples.jsonl"
    generator = build_generator(stage.generator)
    scorer = RewardPool([spec], ctx.config.reward.workers, ctx.config.reward.timeout)
    try:
        result = sample_and_score(
            generator, problems, samples_path, scorer, stage.n, reward_labels([spec.name])[0],
            temperature=stage.temperature, top_p=stage.top_p, max_tokens=stage.max_tokens, seed=ctx.config.seed, chunk=stage.chunk,
        )
    finally:
        scorer.close()
        generator.close()
    if result.failures:  # an incomplete set would silently shrink later stages' data
        raise DataError(
            f"[{stage.name}] {len(result.failures)} teacher requests failed (first: {result.failures[0]['id']}: {result.failures[0]['error']}; "
            f"all in {failures_path(samples_path)}); rerun with --resume to retry them"
        )
    wanted = {str(p["id"]) for p in problems}
    rows = [row for _, row in iter_jsonl(samples_path) if str(row["id"]) in wanted]
    sets = build_distill_sets(rows, stage.pair_selection, stage.pairs_per_prompt, ctx.config.seed)

    def write(tmp: Path) -> None:
        sets.write(tmp)
        shutil.copy(samples_path, tmp / "samples.jsonl")

    atomic_dir(ctx.stage_dir(stage) / "output", write)
    funnel = sets.funnel()
    ctx.metrics.write({"stage": stage.name, "step": 1, **{f"distill/{k}": v for k, v in funnel.items()}})
    print(f"[{stage.name}] {json.dumps(funnel)}", flush=True)
    return funnel
