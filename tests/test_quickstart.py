"""The README's promise: the tiny-world quickstart gains >= 20 points of held-out accuracy, CPU, minutes."""

import json
from pathlib import Path

import pytest

from rlkit.config import load_config
from rlkit.runner import run_recipe

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_quickstart_gains_20_points_of_held_out_accuracy(tmp_path):
    summary = run_recipe(load_config(REPO / "recipes/quickstart.yaml"), tmp_path / "run")
    before, after = summary["initial_eval"]["accuracy"], summary["final_eval"]["accuracy"]
    print(json.dumps({"quickstart": {"before": before, "after": after, "wall_s": round(summary["wall_time_s"])}}))
    assert after - before >= 0.20, (before, after)
