"""Slow: the tiny Phi-4-Mini-Reasoning twin (recipes/tiny/tiny_phi4.yaml) end to end. Mid-training, SFT and
DPO must each raise held-out accuracy over the stage before by more than two standard errors of the
difference (greedy decoding on 200 held-out problems), as in the paper's ablation. The RL stage did NOT in
the measured run (74.0% -> 65.5%, README): here it is checked only for its three stabilizers' records."""

import json
import math
import os
from pathlib import Path

import pytest

from rlkit.config import load_config
from rlkit.runner import run_recipe

ROOT = Path(__file__).resolve().parents[1]


def standard_error(p: float, n: int) -> float:
    return math.sqrt(p * (1 - p) / n)


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("RLKIT_PHI4_TINY"), reason="the whole tiny pipeline, ~30 min on 2 cores (over CI's budget); RLKIT_PHI4_TINY=1 runs it")
def test_phi4_distillation_stages_raise_held_out_accuracy(tmp_path):
    config = load_config(ROOT / "recipes" / "tiny" / "tiny_phi4.yaml")
    summary = run_recipe(config, tmp_path / "run")
    n = int(summary["final_eval"]["count"])
    accuracy = [0.0] + [summary["stages"][name]["eval"]["accuracy"] for name in ("midtrain", "sft", "dpo", "rl")]
    # the untrained tiny model never boxes an answer (measured: 0.0, every sample runs to max_new_tokens)
    for stage, before, after in zip(("midtrain", "sft", "dpo"), accuracy, accuracy[1:]):
        spread = math.hypot(standard_error(before, n), standard_error(after, n))
        assert after - before > 2 * spread, f"{stage}: {before:.3f} -> {after:.3f} (2 SE = {2 * spread:.3f}); all: {accuracy}"
    rl = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines() if '"stage": "rl"' in line]
    assert rl[0]["step"] == 0 and rl[0]["length_filter/kept"] > 0  # the prompt filter ran once, first
    assert rl[-1]["rollout/temperature"] == pytest.approx(0.6) and rl[1]["rollout/temperature"] == pytest.approx(1.0)
    assert all("rebalance/kept_fraction" in m and "sampling/above_band" in m for m in rl[1:])
