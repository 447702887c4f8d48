"""Drive rlkit from Python instead of the CLI: build a config, run a recipe, or write your own loop.

    python examples/train_from_python.py runs/from-python

1. `run_recipe` is what `rlkit run` calls: every stage, checkpoints, evaluation, `final/`.
2. `build_rl_parts` + `rl_step` are the RL stage's own pieces: use them to own the loop (your
   stopping rule, your logging) while keeping rlkit's step.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from rlkit.config import RunConfig
from rlkit.data import PromptStream, load_samples
from rlkit.models import load_model, load_tokenizer
from rlkit.runner import format_summary, run_recipe
from rlkit.stages.rl import build_rl_parts, rl_step

# The tiny world's quickstart, small: an SFT stage teaches the format, a GRPO stage improves it.
RECIPE = {
    "threads": 1,
    "rollout": {"n": 4, "max_new_tokens": 24},
    "eval": {"limit": 8},
    "stages": [
        {"type": "sft", "steps": 4, "lr": 1e-3, "batch_size": 8},
        {"type": "rl", "steps": 2, "lr": 1e-4, "batch_size": 4},
    ],
}


def run_whole_recipe(run_dir: Path, recipe: dict = RECIPE) -> dict:
    """Validate like `rlkit run` does (defaults from the schema), then run every stage."""
    config = RunConfig.model_validate(recipe)
    summary = run_recipe(config, run_dir)
    print(format_summary(summary))
    return summary


def own_rl_loop(steps: int = 3, recipe: dict = RECIPE) -> list[float]:
    """The RL stage's parts, driven by your own loop: here, stop early once the reward reaches 0.9."""
    config = RunConfig.model_validate(recipe)
    stage = config.stages[-1]
    torch.manual_seed(config.seed)
    model, tokenizer = load_model(config.model, seed=config.seed), load_tokenizer(config.model)
    parts = build_rl_parts(config, stage, model, tokenizer, torch.device("cpu"))
    stream = PromptStream(load_samples(stage.data), config.seed)
    rewards = []
    try:
        for step in range(1, steps + 1):
            metrics = rl_step(parts, stage, config.rollout, stream.take(stage.batch_size), seed=step, step=step)
            rewards.append(metrics["reward/mean"])
            print(f"step {step}: reward {metrics['reward/mean']:.3f}  entropy {metrics['entropy']:.3f}")
            if metrics["reward/mean"] >= 0.9:
                break
    finally:
        parts.scorer.close()
    return rewards


if __name__ == "__main__":
    run_whole_recipe(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/from-python"))
    own_rl_loop()
