"""The `synthesize` stage between two rl stages, `rlkit synth` on a finished run, and the SwS recipes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from rlkit.cli import main as cli_main
from rlkit.config import DataConfig, load_config
from rlkit.errors import ConfigError, DataError
from rlkit.runner import run_recipe
from rlkit.stages.synthesize import synthetic_path, synthetic_samples

REPO = Path(__file__).resolve().parents[1]

# No SFT: the untrained policy fails everything, so every sampled problem is a weakness (flat at 0, which
# the authors' rule counts), and the test does not depend on what a few training steps learn.
E2E = """
name: sws-e2e
threads: 1
rollout: {n: 4, max_new_tokens: 40}
eval: {limit: 8}
stages:
  - type: rl
    name: initial_rl
    steps: 6
    batch_size: 8
    data: {size: 24, mix: {add2: 1, sub: 1}}
  - type: synthesize
    synth: {budget: 20, combination_size: 2, decontaminate_dir: null, chunk_size: 8, difficulty_band: [0.0, 1.0]}
  - type: rl
    name: augmented_rl
    steps: 2
    batch_size: 8
    data: {size: 24, mix: {add2: 1, sub: 1}, synthetic_from: synthesize}
"""


def _recipe(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return path


def test_synthesize_needs_an_rl_stage_before_it(tmp_path):
    text = "stages:\n  - {type: synthesize}\n  - {type: rl}\n"
    with pytest.raises(ConfigError, match="stage 'synthesize': a synthesize stage needs an rl stage before it"):
        load_config(_recipe(tmp_path, text))
    text = "stages:\n  - {type: sft}\n  - {type: synthesize, source: sft}\n"
    with pytest.raises(ConfigError, match=re.escape("key 'synthesize.source': 'sft' is not an rl stage before it")):
        load_config(_recipe(tmp_path, text))


def test_synthetic_from_must_name_an_earlier_synthesize_stage(tmp_path):
    text = "stages:\n  - {type: rl, data: {synthetic_from: synth}}\n"
    with pytest.raises(ConfigError, match=re.escape("key 'rl.data.synthetic_from': 'synth' is not a synthesize stage before it")):
        load_config(_recipe(tmp_path, text))


def test_an_empty_synthesis_passes_the_original_data_through(tmp_path):
    data = DataConfig(synthetic_from="synthesize")
    with pytest.raises(DataError, match="synthesize stage 'synthesize' has not written its problems"):
        synthetic_samples(tmp_path, data)
    path = synthetic_path(tmp_path, "synthesize")
    path.parent.mkdir(parents=True)
    path.write_text("")
    assert synthetic_samples(tmp_path, data) == []
    path.write_text(json.dumps({"id": "sws-sub-0", "problem": "Compute 74-38.", "answer": "36", "category": "sub"}) + "\n")
    [row] = synthetic_samples(tmp_path, data)
    assert row["prompt"][-1]["content"].endswith("Compute 74-38.") and row["answer"] == "36"  # the tiny template


@pytest.mark.parametrize("recipe", [pytest.param("recipes/sws.yaml", marks=pytest.mark.shared_data), "recipes/tiny/tiny_sws.yaml"])
def test_sws_recipes_load_and_dry_run(recipe, capsys):
    recipe = str(REPO / recipe)  # shared: paths and the data folder do not depend on where rlkit runs
    config = load_config(recipe)
    assert [s.type for s in config.stages][-3:] == ["rl", "synthesize", "rl"]
    assert config.stages[-1].data.synthetic_from == config.stages[-2].name
    assert cli_main(["run", recipe, "--dry-run"]) == 0
    assert "synthetic_from: synthesize" in capsys.readouterr().out


def test_sws_stages_end_to_end_then_rlkit_synth_on_the_finished_run(tmp_path, capsys):
    run_dir = tmp_path / "run"
    summary = run_recipe(load_config(_recipe(tmp_path, E2E)), run_dir)
    funnel = summary["synthesis"]["synthesize"]["funnel"]
    assert funnel["original"] == 24 and funnel["weaknesses"] == 24 and funnel["combinations"] == 20
    new = [json.loads(line) for line in synthetic_path(run_dir, "synthesize").read_text().splitlines()]
    assert len(new) == funnel["difficulty"] > 0 and all(r["id"].startswith("sws-") for r in new)
    ledger = [json.loads(line) for line in (run_dir / "ledger.jsonl").read_text().splitlines()]
    trained = {r["id"] for r in ledger if r["stage"] == "augmented_rl"}
    assert trained & {r["id"] for r in new}  # the augmented stage samples the new problems ...
    assert trained - {r["id"] for r in new}  # ... together with the original ones

    out_dir = tmp_path / "try"
    capsys.readouterr()
    args = ["synth", str(run_dir), "synthesize.synth.budget=12", "-o", str(out_dir)]
    assert cli_main(args) == 0
    printed = capsys.readouterr().out
    for heading in ("SwS funnel", "concept combinations", "failure rate", "budget"):
        assert heading in printed
    assert json.loads((out_dir / "funnel.json").read_text())["funnel"]["combinations"] == 12
    logs = {p.name: p.read_text() for p in (out_dir / "steps").iterdir()}
    assert cli_main(args) == 0
    assert {p.name: p.read_text() for p in (out_dir / "steps").iterdir()} == logs  # resumed: nothing redone


def test_rlkit_synth_on_a_directory_without_a_run_is_one_line(tmp_path, capsys):
    assert cli_main(["synth", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == f"rlkit: error: {tmp_path} holds no run (no config.yaml); pass the --output-dir of a finished run"
