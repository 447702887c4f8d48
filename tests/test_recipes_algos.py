"""The paper recipes and tiny twins resolve; algorithm combinations that cannot work are errors."""

from pathlib import Path

import pytest

from rlkit.cli import main as cli_main
from rlkit.config import load_config
from rlkit.data import load_samples
from rlkit.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
TWINS = sorted((ROOT / "recipes" / "tiny").glob("tiny_*.yaml"))


@pytest.mark.shared_data
def test_one_shot_rlvr_has_the_papers_hyperparameters():
    config = load_config(ROOT / "recipes" / "one_shot_rlvr.yaml")
    stage = config.stages[0]
    alg = stage.algorithm
    assert config.model.path == "Qwen/Qwen2.5-Math-1.5B"
    assert (config.rollout.n, config.rollout.temperature, config.rollout.max_new_tokens) == (8, 0.6, 3072)
    assert (stage.batch_size, stage.lr) == (128, 1e-6)
    assert (alg.advantage, alg.kl_coef, alg.entropy_coef, alg.entropy_only) == ("grpo", 0.001, 0.001, False)
    assert config.eval.benchmarks == ["math500", "aime24", "amc23", "minerva_math", "olympiadbench", "aime25"]
    # one example, replicated: the 128 rows are 128 copies of pi_1 and its gold answer comes from reward_model
    samples = load_samples(stage.data)
    assert len(samples) == 128 and len({s["prompt"][0]["content"] for s in samples}) == 1
    assert samples[0]["answer"] == "12.8"


@pytest.mark.shared_data
@pytest.mark.parametrize("recipe", ["recipes/one_shot_rlvr.yaml", "recipes/entropy_only.yaml"])
def test_paper_recipes_dry_run(recipe, capsys):
    assert cli_main(["run", str(ROOT / recipe), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "pi1_r128.parquet" in out and "entropy_coef: 0.001" in out


@pytest.mark.shared_data
def test_entropy_only_recipe_ignores_reward():
    alg = load_config(ROOT / "recipes" / "entropy_only.yaml").stages[0].algorithm
    assert alg.entropy_only and alg.entropy_coef > 0


@pytest.mark.parametrize("recipe", TWINS, ids=lambda p: p.stem)
def test_tiny_twins_resolve(recipe):
    config = load_config(recipe)
    assert config.model.path == "tiny" and config.stages[0].type in ("sft", "distill")  # the teacher first, as data or as SFT


def test_tiny_one_shot_replicates_one_problem():
    stage = load_config(ROOT / "recipes" / "tiny" / "tiny_one_shot.yaml").stages[-1]
    samples = load_samples(stage.data)
    assert len(samples) == stage.batch_size and {s["problem"] for s in samples} == {"Compute 31+56+17."}


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["rl.algorithm.entropy_only=true"], r"key 'rl\.algorithm\.entropy_only': needs a non-zero rl\.algorithm\.entropy_coef"),
        (["rl.algorithm.advantage=rloo", "rollout.n=1"], r"key 'rollout\.n': rl\.algorithm\.advantage 'rloo' compares .* expected n >= 2, got 1"),
        (["rollout.n=1"], r"key 'rollout\.n': rl\.algorithm\.advantage 'grpo'"),
        (["rl.algorithm.kl_in_reward=true"], r"key 'rl\.algorithm\.kl_in_reward': needs rl\.algorithm\.kl_coef > 0"),
    ],
)
def test_impossible_algorithm_combinations_fail_when_the_recipe_loads(overrides, message):
    # the quickstart's SFT stage comes first: these used to fail only once it had trained
    with pytest.raises(ConfigError, match=message):
        load_config(ROOT / "recipes" / "quickstart.yaml", overrides)


def test_verl_rows_get_their_gold_answer(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"prompt": [{"role": "user", "content": "1+1?"}], "reward_model": {"ground_truth": "2", "style": "rule"}}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "d.parquet")
    from rlkit.config import DataConfig

    sample = load_samples(DataConfig(source=str(tmp_path / "d.parquet"), repeat=3))
    assert [s["answer"] for s in sample] == ["2", "2", "2"]


def test_data_ids_pick_examples_in_order_and_name_a_missing_one():
    from rlkit.config import DataConfig
    from rlkit.errors import DataError

    picked = load_samples(DataConfig(size=50, ids=["arith-train-7", "arith-train-1"], repeat=2))
    assert [s["id"] for s in picked] == ["arith-train-7", "arith-train-1"] * 2
    with pytest.raises(DataError, match=r"data.ids \['arith-train-99'\] not found .*'arith-train-0'"):
        load_samples(DataConfig(size=50, ids=["arith-train-99"]))
