"""Every config field carries its help text, and `rlkit run RECIPE --explain KEY` prints it."""

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import BaseModel

import rlkit.config as config_module
from rlkit.config import explain, load_config
from rlkit.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def schema_sections() -> list[type[BaseModel]]:
    return [obj for obj in vars(config_module).values()
            if isinstance(obj, type) and issubclass(obj, config_module.Section) and obj is not config_module.Section]


def test_every_config_field_has_a_description():
    missing = [f"{section.__name__}.{name}" for section in schema_sections()
               for name, info in section.model_fields.items() if not (info.description or "").strip()]
    assert len(schema_sections()) >= 15  # the walk sees the whole schema
    assert missing == []


def test_explain_prints_help_default_and_resolved_value():
    config = load_config(REPO / "recipes/quickstart.yaml", ["rl.algorithm.clip_high=0.28"])
    text = explain(config, "rl.algorithm.clip_high")
    assert text.splitlines() == [
        "rl.algorithm.clip_high: " + config_module.AlgorithmConfig.model_fields["clip_high"].description,
        "  default: 0.2",
        "  this recipe: 0.28",
    ]
    assert "  default: 8\n  this recipe: 8" in explain(config, "rollout.n")


@pytest.mark.parametrize("key, message", [("rl.algorithm.clip_hi", "no key 'clip_hi' in rl.algorithm"),
                                          ("nope.lr", "'nope' is neither a config section nor a stage name")])
def test_explain_names_an_unknown_key(key, message):
    with pytest.raises(ConfigError, match=message):
        explain(load_config(REPO / "recipes/quickstart.yaml"), key)


def test_explain_from_the_command_line():
    out = subprocess.run([sys.executable, "-m", "rlkit.cli", "run", "recipes/quickstart.yaml", "--explain", "rl.lr"],
                         cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.startswith("rl.lr: peak learning rate") and "default: 1.0e-05" in out and "this recipe: 0.0001" in out
