"""Slow: the tiny Phi-4-Mini-Reasoning twin (recipes/tiny/tiny_phi4.yaml) end to end, in CI's time.

Mid-training, SFT and DPO must each raise held-out accuracy over the stage before by more than two standard
errors of the difference (greedy decoding), as in the paper's ablation. The RL stage did NOT raise it in the
measured runs (README), so here it is checked only for its three stabilizers' records: it runs 4 steps on
256 prompts instead of the recipe's 60 steps on all 4,000 (the records, not a gain, are what is asserted).
The distillation stages run the recipe's own values; the held-out set is 1,000 problems instead of 200 so
that mid-training's small gain (3.5% on 200, only +2.7 SE, README) is measured with a standard error of ~0.5
points. Measured 2026-12-02 with this test on the project's shared 2-core machine (threads=2, the recipe's),
and the same numbers from scripts/tiny_phi4_ablation.py --eval-size 1000 at threads=1 (the runs are
deterministic): untrained 0.0% -> midtrain 2.9% (+5.5 SE) -> sft 49.2% (+27.8 SE) -> dpo 75.5% (+12.6 SE).
Mid-training has the least room: 29 of 1,000 correct, where the assertion needs 4 or more.
"""

import json
import math
from pathlib import Path

import pytest

from rlkit.config import load_config
from rlkit.runner import run_recipe

ROOT = Path(__file__).resolve().parents[1]
OVERRIDES = ["eval.data.size=1000", "rl.steps=4", "rl.data.limit=256"]


def standard_error(p: float, n: int) -> float:
    return math.sqrt(p * (1 - p) / n)


@pytest.fixture(scope="module")
def phi4_run(tmp_path_factory) -> tuple[Path, dict]:
    """One run of the whole tiny pipeline, shared by the tests below."""
    run_dir = tmp_path_factory.mktemp("phi4") / "run"
    config = load_config(ROOT / "recipes" / "tiny" / "tiny_phi4.yaml", OVERRIDES)
    return run_dir, run_recipe(config, run_dir)


@pytest.mark.slow
def test_phi4_distillation_stages_raise_held_out_accuracy(phi4_run):
    _, summary = phi4_run
    n = int(summary["final_eval"]["count"])
    assert n == 1000
    accuracy = [0.0] + [summary["stages"][name]["eval"]["accuracy"] for name in ("midtrain", "sft", "dpo")]
    # the untrained tiny model never boxes an answer (measured: 0.0 of 200, every sample runs to max_new_tokens)
    for stage, before, after in zip(("midtrain", "sft", "dpo"), accuracy, accuracy[1:]):
        spread = math.hypot(standard_error(before, n), standard_error(after, n))
        assert after - before > 2 * spread, f"{stage}: {before:.3f} -> {after:.3f} (2 SE = {2 * spread:.3f}); all: {accuracy}"


@pytest.mark.slow
def test_phi4_rl_stage_records_its_three_stabilizers(phi4_run):
    run_dir, _ = phi4_run
    rl = [m for line in (run_dir / "metrics.jsonl").read_text().splitlines() if (m := json.loads(line)).get("stage") == "rl"]
    assert rl[0]["step"] == 0 and rl[0]["length_filter/kept"] > 0  # the prompt filter ran once, first
    assert rl[0]["length_filter/kept"] + rl[0]["length_filter/dropped"] == 256
    steps = [m for m in rl if m["step"] >= 1]
    # 4 steps, temperature 1.0 -> 0.6 over the first half: 1.0, 0.8, then 0.6
    assert [m["rollout/temperature"] for m in steps] == pytest.approx([1.0, 0.8, 0.6, 0.6])
    assert all("rebalance/kept_fraction" in m and "sampling/above_band" in m for m in steps)
