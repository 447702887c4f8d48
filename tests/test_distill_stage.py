"""The `distill` data stage end to end in the tiny world: the fallible teacher plays the large model."""

import json

import pytest

from rlkit.config import load_config
from rlkit.errors import ConfigError
from rlkit.rewards.math import math_reward
from rlkit.runner import run_recipe

RECIPE = """
name: tiny-distill
threads: 1
rollout: {n: 4, max_new_tokens: 56}
eval: {limit: 8}
stages:
  - type: distill
    data: {size: 40}
    generator: {backend: tiny_teacher, slip_rate: 0.1}
    n: 4
    pairs_per_prompt: 2
  - type: sft
    steps: 2
    batch_size: 4
    data: {source: "stage:distill/sft", where: ["pass_rate <= 0.75"]}
  - type: dpo
    steps: 2
    batch_size: 4
    data: {source: "stage:distill/dpo"}
"""


def rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_distill_writes_verified_sets_that_later_stages_read_by_name(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE)
    run_dir = tmp_path / "run"
    summary = run_recipe(load_config(recipe), run_dir)
    out = run_dir / "stages" / "distill" / "output"
    samples, sft, dpo, problems = (rows(out / f"{name}.jsonl") for name in ("samples", "sft", "dpo", "problems"))
    assert len(problems) == 40 and len(samples) == 160
    # every SFT row is a correct teacher solution, every pair correct vs incorrect of one problem
    assert sft and all(math_reward(r["response"], r).score == 1.0 for r in sft)
    assert dpo and all(math_reward(p["chosen"], p).score == 1.0 and math_reward(p["rejected"], p).score == 0.0 for p in dpo)
    # tags: the teacher's pass rate over its 4 samples, per problem, on every row
    correct = {}
    for s in samples:
        correct.setdefault(s["id"], []).append(s["correct"])
    assert all(p["pass_rate"] == sum(correct[p["id"]]) / 4 and p["category"] in ("add2", "add3") for p in problems)
    assert 0 < sum(p["pass_rate"] < 1 for p in problems) < 40  # the fallible teacher errs, not always
    assert summary["stages"]["distill"]["data"] == {
        "problems": 40, "samples": 160, "correct": len(sft),
        "problems_with_a_correct_sample": sum(p["correct"] > 0 for p in problems), "pairs": len(dpo),
    }
    # later stages trained on them (sft on the hard subset data.where picked), and the model stayed the policy
    assert "eval" in summary["stages"]["sft"] and "eval" in summary["stages"]["dpo"]
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [(m["stage"], m["step"]) for m in metrics] == [("distill", 1), ("sft", 1), ("sft", 2), ("dpo", 1), ("dpo", 2)]

    # resuming a finished run asks the teacher nothing again
    capsys.readouterr()
    run_recipe(load_config(recipe), run_dir, resume=True)
    assert "[distill] done in an earlier run; skipping" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("stage:nope/sft", r"key 'sft.data.source': 'stage:nope/sft' names no earlier data stage 'nope' \(earlier data stages: distill\)"),
        ("stage:distill/best", r"unknown set 'best'; expected stage:distill/ one of sft, dpo, problems, samples"),
    ],
)
def test_bad_stage_reference_is_a_load_error(tmp_path, source, message):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE.replace('"stage:distill/sft"', f'"{source}"'))
    with pytest.raises(ConfigError, match=message):
        load_config(recipe)


def test_stage_sources_keep_the_data_stages_template(tmp_path):
    """A tiny-world problem read back from a distill set is still a bare tiny prompt (not qwen_boxed, the
    default for files), so SFT on it trains the prompts held-out evaluation asks."""
    from rlkit.runner import with_stage_data

    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE)
    config = load_config(recipe)
    sft = with_stage_data(config.stage("sft"), config, tmp_path)
    assert (sft.data.source, sft.data.template) == (str(tmp_path / "stages" / "distill" / "output" / "sft.jsonl"), "tiny")
    assert with_stage_data(config.stage("distill"), config, tmp_path) is config.stage("distill")  # not a reference
