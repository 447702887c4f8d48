"""The README's promise: the tiny-world quickstart gains >= 20 points of held-out accuracy, CPU, minutes."""

import json
from pathlib import Path

import pytest

from tests.conftest import run_from_quickstart_sft

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_quickstart_gains_20_points_of_held_out_accuracy(quickstart_sft, tmp_path):
    # its sft stage is trained once a session (conftest.py), shared with test_tiny_algos.py's twins; the rl stage
    # runs as `make quickstart` runs it after that sft (its steps are seeded by step, not by what ran before)
    summary = run_from_quickstart_sft(REPO / "recipes/quickstart.yaml", quickstart_sft, tmp_path / "run")
    before, after = summary["initial_eval"]["accuracy"], summary["final_eval"]["accuracy"]
    print(json.dumps({"quickstart": {"before": before, "after": after, "wall_s": round(summary["wall_time_s"])}}))
    assert after - before >= 0.20, (before, after)
    # the accuracy ledger: per step, correct over samples of its rows is the step's accuracy in metrics.jsonl
    from rlkit.ledger import read_ledger

    run_dir = tmp_path / "run"
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    step_accuracy = {m["step"]: m["accuracy"] for m in metrics if m["stage"] == "rl"}
    by_step: dict[int, list[int]] = {}
    for row in read_ledger(run_dir, "rl"):
        by_step.setdefault(row["step"], [0, 0])
        by_step[row["step"]][0] += row["correct"]
        by_step[row["step"]][1] += row["samples"]
    assert sorted(by_step) == sorted(step_accuracy) == list(range(1, 61))
    assert all(total == 16 * 8 for _, total in by_step.values())  # 16 prompts x 8 samples a step
    assert all(abs(correct / total - step_accuracy[step]) < 1e-12 for step, (correct, total) in by_step.items())
