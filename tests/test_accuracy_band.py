"""algorithm.accuracy_band: the group filter against hand-computed groups, and in a tiny run (refill rounds,
below/above counts in metrics.jsonl, a bad band named at load)."""

import json

import pytest
import torch

from rlkit.algos.sampling import band_counts, group_accuracy, groups_in_band
from rlkit.config import load_config
from rlkit.errors import ConfigError
from rlkit.runner import run_recipe

# four groups of 4 samples: accuracy 0.5, 0.25, 0, 1
SCORES = torch.tensor([1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1], dtype=torch.float)


def test_band_keeps_groups_within_low_and_high_inclusive():
    assert group_accuracy(SCORES, 4).tolist() == [0.5, 0.25, 0.0, 1.0]
    assert groups_in_band(SCORES, 4, 0.1, 0.9).tolist() == [True, True, False, False]  # SwS: 10-90%
    assert groups_in_band(SCORES, 4, 0.0, 0.5).tolist() == [True, True, True, False]  # Phi-4: drop above 50%
    assert groups_in_band(SCORES, 4, 0.25, 0.25).tolist() == [False, True, False, False]
    assert band_counts(SCORES, 4, 0.1, 0.9) == (1, 1)
    assert band_counts(SCORES, 4, 0.3, 0.6) == (2, 1)
    with pytest.raises(ValueError, match="do not split into groups of 3"):
        group_accuracy(SCORES, 3)


def _run(tmp_path, band, rounds):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "threads: 1\nrollout: {n: 2, max_new_tokens: 16}\neval: {limit: 2}\n"
        "stages:\n  - {type: sft, steps: 1, batch_size: 2}\n"
        f"  - {{type: rl, steps: 2, batch_size: 3, algorithm: {{accuracy_band: {band}, max_sampling_rounds: {rounds}}}}}\n"
    )
    run_dir = tmp_path / f"run-{band[0]}-{band[1]}"
    run_recipe(load_config(recipe), run_dir)
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if '"stage": "rl"' in line]


def test_band_in_a_run_refills_and_logs_groups_below_and_above(tmp_path):
    # the policy after one SFT step answers nothing right: every group has accuracy 0
    outside = _run(tmp_path, [0.1, 0.9], rounds=2)
    for m in outside:
        assert m["accuracy"] == 0.0
        assert m["sampling/rounds"] == 2.0  # nothing kept: a refill round ran
        assert m["sampling/below_band"] == 6.0 and m["sampling/above_band"] == 0.0  # 3 prompts x 2 rounds
        assert m["sampling/kept_groups"] == 0.0
    inside = _run(tmp_path, [0.0, 0.5], rounds=2)
    for m in inside:
        assert m["sampling/rounds"] == 1.0 and m["sampling/kept_groups"] == 3.0
        assert m["sampling/below_band"] == 0.0 and m["sampling/above_band"] == 0.0


def test_a_bad_band_is_named_at_load(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("stages:\n  - {type: rl, algorithm: {accuracy_band: [0.9, 0.1]}}\n")
    with pytest.raises(ConfigError, match=r"key 'rl.algorithm.accuracy_band': expected \[low, high\] with 0 <= low <= high <= 1, got \[0.9, 0.1\]"):
        load_config(recipe)
