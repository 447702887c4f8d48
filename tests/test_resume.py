"""`--resume` keeps its word: the saved config plus the overrides given now; the recipe on disk is only
compared; overrides that would make the saved state meaningless are refused. And a run that failed before
its first step does not block a plain re-run."""

import json
import shutil
from pathlib import Path

import pytest
import yaml

from rlkit.cli import main as cli
from rlkit.config import load_config
from rlkit.runner import run_recipe

RECIPE = "threads: 1\ncheckpoint: {every: 2, keep: 2}\neval: {limit: 4}\nstages:\n  - {type: sft, steps: 6, batch_size: 4}\n"


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory) -> Path:
    """A run of 6 SFT steps that crashed after step 5 (its last checkpoint: step 4)."""
    from rlkit.metrics_log import MetricsLog

    root = tmp_path_factory.mktemp("stopped")
    (root / "r.yaml").write_text(RECIPE)
    real_write = MetricsLog.write

    def crash_after_5(self, record):
        real_write(self, record)
        if record["step"] == 5:
            raise RuntimeError("simulated crash")

    MetricsLog.write = crash_after_5
    try:
        with pytest.raises(RuntimeError):
            run_recipe(load_config(root / "r.yaml"), root / "run")
    finally:
        MetricsLog.write = real_write
    return root


@pytest.fixture
def run(stopped_run, tmp_path) -> tuple[Path, Path]:
    shutil.copytree(stopped_run, tmp_path, dirs_exist_ok=True)
    return tmp_path / "r.yaml", tmp_path / "run"


def test_resume_with_an_override_keeps_the_saved_steps_and_shows_the_recipe_drift(run, capsys):
    recipe, run_dir = run
    recipe.write_text(RECIPE.replace("steps: 6", "steps: 3"))  # the recipe changed since the run started
    assert cli(["run", str(recipe), "-o", str(run_dir), "--resume", "threads=1"]) == 0
    out, err = capsys.readouterr()
    assert f"differs from {recipe} in: sft.steps: run 6, recipe 3" in err
    assert "(step 4/6)" in out
    steps = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["stages"][0]["steps"] == 6


def test_an_override_given_now_is_applied_shown_and_saved(run, capsys):
    recipe, run_dir = run
    assert cli(["run", str(recipe), "-o", str(run_dir), "--resume", "--dry-run", "sft.steps=8", "sft.lr=2e-5"]) == 0
    out, err = capsys.readouterr()
    assert "resuming with changes to the saved config: sft.steps 6 -> 8, sft.lr 1e-05 -> 2e-05" in err
    assert yaml.safe_load(out)["stages"][0]["steps"] == 8
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["stages"][0]["steps"] == 6  # a dry run saves nothing


@pytest.mark.parametrize(("override", "reason"), [
    ("sft.steps=3", "sft.steps=3 is fewer than the 4 steps the stage has done"),
    ("model.tiny_size=small", "model.tiny_size would change from 'tiny' to 'small': the checkpoints hold another model"),
    ("learner.lora.r=8", "learner.lora would be switched on or off"),
])
def test_overrides_that_break_the_saved_state_are_refused_unless_forced(run, capsys, override, reason):
    recipe, run_dir = run
    assert cli(["run", str(recipe), "-o", str(run_dir), "--resume", "--dry-run", override]) == 2
    err = capsys.readouterr().err
    assert f"rlkit: error: --resume: refusing the overrides: {reason}" in err and "--force" in err
    assert len(err.strip().splitlines()) <= 2  # the recipe note, at most, and the one-line error
    assert cli(["run", str(recipe), "-o", str(run_dir), "--resume", "--dry-run", "--force", override]) == 0


def test_a_run_that_failed_before_its_first_step_does_not_block_a_plain_rerun(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    (tmp_path / "not_a_model").mkdir()
    recipe.write_text(RECIPE.replace("threads: 1", "threads: 1\nmodel: {path: " + str(tmp_path / "not_a_model") + "}"))
    run_dir = tmp_path / "run"
    with pytest.raises(Exception):  # noqa: B017 - whatever loading an empty directory as a model raises
        cli(["run", str(recipe), "-o", str(run_dir)])
    assert (run_dir / "config.yaml").exists()
    recipe.write_text(RECIPE.replace("steps: 6", "steps: 2"))  # fixed
    capsys.readouterr()
    assert cli(["run", str(recipe), "-o", str(run_dir)]) == 0
    assert "holds a run that stopped before its first step; starting it over" in capsys.readouterr().out
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["model"]["path"] == "tiny"


def test_a_plain_rerun_over_a_run_with_progress_says_to_resume(run, capsys):
    recipe, run_dir = run
    assert cli(["run", str(recipe), "-o", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert f"output directory {run_dir} holds a run that got to stage sft, step 5; pass --resume to continue it" in err
