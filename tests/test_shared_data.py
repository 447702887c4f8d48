"""One setting says where the shared data lives (rlkit/shared_data.py): the recipe key, RLKIT_SHARED_DATA, else
a shared/data folder beside the current folder, the recipe's folder or the checkout, or beside a folder above them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rlkit import shared_data
from rlkit.config import load_config
from rlkit.errors import ConfigError
from rlkit.shared_data import ENV, resolve_shared, shared_data_root

RECIPE = "eval: {data: {source: shared:math/tiny.jsonl}}\nstages: [{type: rl, data: {source: shared:math/tiny.jsonl}}]\n"


@pytest.fixture
def world(tmp_path: Path, monkeypatch) -> Path:
    """tmp/shared/data/math/tiny.jsonl beside a checkout tmp/repo with recipes/; no variable; the real checkout
    (whose ../shared may exist on this machine) replaced by a folder with nothing beside it."""
    math = tmp_path / "shared" / "data" / "math"
    math.mkdir(parents=True)
    (math / "tiny.jsonl").write_text(json.dumps({"problem": "1+1", "answer": "2"}) + "\n")
    (tmp_path / "repo" / "recipes" / "sub").mkdir(parents=True)
    (tmp_path / "repo" / "recipes" / "r.yaml").write_text(RECIPE)
    monkeypatch.delenv(ENV, raising=False)
    monkeypatch.setattr(shared_data, "CHECKOUT", Path("/"))
    monkeypatch.chdir("/")
    return tmp_path


def test_found_beside_the_current_folder_or_a_folder_above_it(world: Path, monkeypatch):
    monkeypatch.chdir(world / "repo")
    assert shared_data_root() == world / "shared" / "data"
    monkeypatch.chdir(world / "repo" / "recipes" / "sub")  # from a subfolder of the checkout too
    assert shared_data_root() == world / "shared" / "data"


def test_a_recipe_finds_it_from_its_own_folder_wherever_rlkit_runs(world: Path):
    config = load_config(world / "repo" / "recipes" / "r.yaml")  # the current folder is /
    expected = str(world / "shared" / "data" / "math" / "tiny.jsonl")
    assert config.stages[0].data.source == expected and config.eval.data.source == expected


def test_the_variable_and_the_key_win_and_must_name_a_folder(world: Path, monkeypatch):
    other = world / "other"
    (other / "math").mkdir(parents=True)
    (other / "math" / "tiny.jsonl").write_text(json.dumps({"problem": "2+2", "answer": "4"}) + "\n")
    monkeypatch.setenv(ENV, str(other))
    assert load_config(world / "repo" / "recipes" / "r.yaml").stages[0].data.source == str(other / "math" / "tiny.jsonl")
    monkeypatch.setenv(ENV, str(world / "nope"))
    with pytest.raises(ConfigError, match=f"{ENV}={world / 'nope'}: no such folder"):
        shared_data_root()
    config = load_config(world / "repo" / "recipes" / "r.yaml", [f"shared_data={world / 'shared' / 'data'}"])  # key beats variable
    assert config.stages[0].data.source == str(world / "shared" / "data" / "math" / "tiny.jsonl")


def test_not_found_is_an_error_naming_the_settings(world: Path, tmp_path_factory: pytest.TempPathFactory):
    recipe = tmp_path_factory.mktemp("lonely") / "r.yaml"  # no shared/data beside it or above it
    recipe.write_text(RECIPE)
    with pytest.raises(ConfigError, match=rf"key 'rl\.data\.source': 'shared:math/tiny.jsonl': the shared data folder was not found.*{ENV}=DIR"):
        load_config(recipe)
    assert shared_data_root(required=False) is None
    assert resolve_shared("data/own.jsonl") == "data/own.jsonl"  # a plain path is left as it is


def test_named_benchmarks_read_math_in_it(world: Path):
    recipe = world / "repo" / "recipes" / "b.yaml"
    recipe.write_text("eval: {benchmarks: [math500]}\nstages: [{type: rl}]\n")
    with pytest.raises(ConfigError, match=r"benchmark 'math500': file not found: .*shared/data/math/math500.jsonl"):
        load_config(recipe)
    (world / "shared" / "data" / "math" / "math500.jsonl").write_text(json.dumps({"problem": "p", "answer": "1"}) + "\n")
    assert load_config(recipe).eval.data_dir == str(world / "shared" / "data" / "math")


def test_synthesis_without_the_folder_says_how_to_skip_decontamination(world: Path, tmp_path_factory: pytest.TempPathFactory):
    recipe = tmp_path_factory.mktemp("lonely") / "sws.yaml"
    recipe.write_text("stages: [{type: rl}, {type: synthesize}, {type: rl, name: again, data: {synthetic_from: synthesize}}]\n")
    with pytest.raises(ConfigError, match=r"key 'synthesize\.synth\.decontaminate_dir': 'shared:math': .*set it to null"):
        load_config(recipe)
    assert load_config(recipe, ["synthesize.synth.decontaminate_dir=null"]).stages[1].synth.decontaminate_dir is None
