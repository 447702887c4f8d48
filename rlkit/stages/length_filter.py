"""Phi-4-Mini-Reasoning's prompt optimization, run once before an `rl` stage: sample each prompt
`length_filter.samples` times with the stage's starting policy and keep the prompts whose response
lengths are fairly uniform (coefficient of variation at most `length_filter.max_spread`).

The kept ids are saved in the stage directory, so a resumed stage trains on the same prompts without
sampling again; the counts go to metrics.jsonl once, as the stage's step-0 record.
"""

from __future__ import annotations

import json
import statistics
from typing import Any

from rlkit.algos.length_uniformity import length_spread
from rlkit.checkpoint import atomic_write_text
from rlkit.config import RLStage
from rlkit.errors import DataError
from rlkit.models import encode_prompt
from rlkit.rollout.base import SamplingParams
from rlkit.stages.context import StageContext

FILE = "length_filter.json"


def response_lengths(ctx: StageContext, samples: list[dict[str, Any]], n: int, temperature: float, seed: int) -> list[list[int]]:
    """Response lengths in tokens, `n` per sample, from the engine (the stage's starting policy)."""
    rollout = ctx.config.rollout
    lengths: list[list[int]] = []
    batch = max(1, ctx.config.eval.batch_size // n)
    for start in range(0, len(samples), batch):
        chunk = samples[start : start + batch]
        sampling = SamplingParams(n=n, temperature=temperature, top_p=rollout.top_p, max_new_tokens=rollout.max_new_tokens, seed=seed + start)
        completions = ctx.engine.generate([encode_prompt(ctx.tokenizer, s["prompt"]) for s in chunk], sampling)
        lengths.extend([len(c.response_ids) for c in completions[i * n : (i + 1) * n]] for i in range(len(chunk)))
    return lengths


def log_once(ctx: StageContext, record: dict[str, Any]) -> None:
    """Write the filter's record unless metrics.jsonl has it (a stage interrupted after it resumes)."""
    path = ctx.metrics.path
    lines = path.read_text().splitlines() if path.exists() else []
    if not any((r := json.loads(line)).get("stage") == record["stage"] and "length_filter/kept" in r for line in lines if line.strip()):
        ctx.metrics.write(record)


def filter_by_length_spread(ctx: StageContext, stage: RLStage, samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The samples whose sampled response lengths are uniform enough; logs kept/dropped once."""
    spec = stage.length_filter
    if spec is None:
        return samples
    path = ctx.stage_dir(stage) / FILE
    if path.exists():  # a resumed stage: the same prompts, no new sampling
        saved = json.loads(path.read_text())
        log_once(ctx, {k: v for k, v in saved.items() if k != "kept_ids"})
        kept_ids = set(saved["kept_ids"])
        return [s for s in samples if s["id"] in kept_ids]
    unique = list({s["id"]: s for s in samples}.values())  # a replicated set (data.repeat) is sampled once per row
    temperature = ctx.config.rollout.temperature_at(1, stage.steps)
    spreads = [length_spread(lengths) for lengths in response_lengths(ctx, unique, spec.samples, temperature, ctx.config.seed)]
    kept_ids = {s["id"] for s, spread in zip(unique, spreads) if spread <= spec.max_spread}
    if not kept_ids:
        raise DataError(
            f"key '{stage.name}.length_filter.max_spread': no prompt of {stage.data.source} has response lengths that uniform "
            f"(smallest spread {min(spreads):.3f}, threshold {spec.max_spread}); raise the threshold"
        )
    record = {
        "stage": stage.name,
        "step": 0,
        "length_filter/kept": len(kept_ids),
        "length_filter/dropped": len(unique) - len(kept_ids),
        "length_filter/spread_mean": statistics.fmean(spreads),
        "length_filter/spread_kept_mean": statistics.fmean(s for s in spreads if s <= spec.max_spread),
    }
    atomic_write_text(path, json.dumps({**record, "kept_ids": sorted(kept_ids)}))
    log_once(ctx, record)
    print(f"[{stage.name}] length filter: kept {len(kept_ids)} of {len(unique)} prompts (spread <= {spec.max_spread})", flush=True)
    return [s for s in samples if s["id"] in kept_ids]
