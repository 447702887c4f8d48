"""Recipes validate before anything heavy starts; every user error is one line naming the key or file."""

import subprocess
import sys
from pathlib import Path

import pytest

from rlkit.config import load_config, parse_override
from rlkit.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return path


def test_quickstart_resolves_with_defaults_from_schema():
    config = load_config(REPO / "recipes/quickstart.yaml")
    assert [s.name for s in config.stages] == ["sft", "rl"]
    assert config.stage("rl").algorithm.advantage == "grpo"  # default, not in the recipe
    assert config.learner.backend == "torch"


def test_overrides_address_sections_and_stages_by_name():
    config = load_config(REPO / "recipes/quickstart.yaml", ["rl.lr=1e-5", "rollout.n=4", "rl.algorithm.kl_coef=0.01"])
    assert config.stage("rl").lr == 1e-5
    assert config.rollout.n == 4
    assert config.stage("rl").algorithm.kl_coef == 0.01


@pytest.mark.parametrize(
    "text, expected",
    [
        ("stages: [{type: sft, stepz: 3}]", "unknown key 'sft.stepz'"),
        ("rollout: {n: many}\nstages: [{type: sft}]", "key 'rollout.n'"),
        ("stages: [{type: sft, data: {source: /nope/train.jsonl}}]", "file not found: /nope/train.jsonl"),
        ("stages: [{type: warp}]", "stages"),
        ("rollout: {n: 4}", "missing required key 'stages'"),
        ("stages: [{type: sft}, {type: sft}]", "two stages are named 'sft'"),
        ("- just\n- a list", "expected a mapping"),
        ("stages: [{type: sft}\n  bad: [", "not valid YAML"),
    ],
)
def test_malformed_recipes_name_the_problem(tmp_path, text, expected):
    with pytest.raises(ConfigError, match=None) as err:
        load_config(write(tmp_path, text))
    assert expected in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "override, expected",
    [
        ("rl.lrr=1", "unknown key 'rl.lrr'"),
        ("rollout.n=abc", "key 'rollout.n'"),
        ("nosuch.x=1", "'nosuch' is neither a config section nor a stage name"),
        ("rl.lr", "expected KEY=VALUE"),
        ("rl=3", "cannot replace a whole stage"),
    ],
)
def test_bad_overrides(override, expected):
    with pytest.raises(ConfigError) as err:
        load_config(REPO / "recipes/quickstart.yaml", [override])
    assert expected in str(err.value)


def test_override_values_are_typed():
    assert parse_override("rl.lr=1e-5") == (["rl", "lr"], 1e-5)
    assert parse_override("rollout.n=16") == (["rollout", "n"], 16)
    assert parse_override("model.path=Qwen/Qwen2.5-Math-1.5B") == (["model", "path"], "Qwen/Qwen2.5-Math-1.5B")
    assert parse_override("learner.gradient_checkpointing=true") == (["learner", "gradient_checkpointing"], True)


@pytest.mark.parametrize(
    "args, expected",
    [
        (["run", "recipes/nope.yaml"], "recipe not found: recipes/nope.yaml"),
        (["run", "recipes/quickstart.yaml", "rl.lrr=1"], "unknown key 'rl.lrr'"),
        (["run", "recipes/quickstart.yaml", "--resume"], "--resume needs --output-dir"),
        (["run", "recipes/quickstart.yaml", "--bogus-flag"], "unrecognized arguments"),
    ],
)
def test_cli_user_errors_exit_2_with_one_line_and_no_traceback(args, expected):
    proc = subprocess.run([sys.executable, "-m", "rlkit.cli", *args], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert expected in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_dry_run_prints_resolved_config():
    proc = subprocess.run(
        [sys.executable, "-m", "rlkit.cli", "run", "recipes/quickstart.yaml", "rollout.n=3", "--dry-run"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "n: 3" in proc.stdout and "advantage: grpo" in proc.stdout


def test_a_missing_backend_names_the_extra_to_install():
    from rlkit.errors import MissingExtraError, import_backend

    with pytest.raises(MissingExtraError, match=r"^runtime: ray needs 'no_such_backend_mod', which is not installed: pip install 'rlkit\[ray\]'$"):
        import_backend("no_such_backend_mod", "runtime: ray", "ray")
    assert import_backend("json", "x", "y").dumps([]) == "[]"


def test_a_broken_backend_is_not_reported_as_missing(tmp_path, monkeypatch):
    from rlkit.errors import import_backend

    (tmp_path / "broken_backend_mod.py").write_text("import no_such_dependency_of_it\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError, match="no_such_dependency_of_it"):
        import_backend("broken_backend_mod", "runtime: ray", "ray")


def test_empty_data_ids_is_an_error_not_every_row(tmp_path):
    with pytest.raises(ConfigError, match=r"rl\.data\.ids"):
        load_config(write(tmp_path, "stages:\n  - type: rl\n    data: {ids: []}\n"))


# Everything that needs no model is checked when the recipe loads (and so by --dry-run), each error naming its key.
REWARD_FILE = "def closeness(completion, sample, tolerance=0.1):\n    return 1.0\n"


@pytest.mark.parametrize(
    "rewards, message",
    [
        ("[{name: maths}]", r"key 'rewards\[0\]': unknown reward 'maths': expected a built-in name \(code_quality, format, length, math, unit_tests\)"),
        ("[{name: math}, {name: REWARD_PY:closeness, args: {tolerence: 0.2}}]", r"key 'rewards\[1\]': reward '.*:closeness': bad args \['tolerence'\]"),
        ("[{name: REWARD_PY:closenes}]", r"key 'rewards\[0\]': reward '.*:closenes': .* has no function 'closenes'"),
        ("[{name: missing_dir/r.py:fn}]", r"key 'rewards\[0\]': reward file not found: missing_dir/r\.py"),
        ("[{name: length, args: {max_len: 10, cache_len: 20}}]", r"key 'rewards\[0\]': reward 'length': expected integers 0 < cache_len <= max_len"),
    ],
    ids=["unknown-name", "unknown-arg", "missing-function", "missing-file", "arg-value"],
)
def test_reward_specs_are_resolved_and_bound_when_the_recipe_loads(tmp_path, rewards, message):
    (tmp_path / "reward.py").write_text(REWARD_FILE)
    text = f"rewards: {rewards.replace('REWARD_PY', str(tmp_path / 'reward.py'))}\nstages: [{{type: sft}}]\n"
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text))


def test_a_bad_eval_reward_fails_when_the_recipe_loads():  # benchmark names: tests/test_benchmarks.py
    with pytest.raises(ConfigError, match=r"key 'eval\.reward': unknown reward 'accuracy'"):
        load_config(REPO / "recipes/quickstart.yaml", ["eval.reward=accuracy"])


def test_an_unknown_estimator_names_the_key_and_the_registered_ones():
    with pytest.raises(ConfigError, match=r"key 'rl\.algorithm\.advantage': .*unknown advantage estimator 'ppo' .*grpo, dr_grpo, rloo, reinforce_pp, gae"):
        load_config(REPO / "recipes/quickstart.yaml", ["rl.algorithm.advantage=ppo"])


def test_dry_run_stops_at_a_bad_reward_before_any_training():
    proc = subprocess.run([sys.executable, "-m", "rlkit.cli", "run", "recipes/quickstart.yaml", "rewards=[{name: maths}]", "--dry-run"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "key 'rewards[0]': unknown reward 'maths'" in proc.stderr
