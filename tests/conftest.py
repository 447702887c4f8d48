import os
import sys
from pathlib import Path

import pytest

from rlkit.errors import ConfigError
from rlkit.shared_data import ENV, shared_data_root

REPO = Path(__file__).resolve().parents[1]
try:  # the folder rlkit itself would read (rlkit/shared_data.py), looked for from the checkout
    _FOUND, _PROBLEM = shared_data_root(near=[REPO], required=False), ""
except ConfigError as err:  # RLKIT_SHARED_DATA names no folder
    _FOUND, _PROBLEM = None, str(err)
SHARED_DATA = _FOUND or REPO.parent / "shared" / "data"  # a path even when missing, for module-level constants


def require_shared_data() -> Path:
    """The shared data folder. Without it: a failure under CI (env CI set), where the data must be there;
    elsewhere a skip that says how to point the tests at it."""
    if _FOUND is None:
        message = _PROBLEM or f"the shared data folder was not found beside {REPO} or a folder above it"
        message += f"; set {ENV}=DIR (the folder holding math/, code/, ...)"
        if os.environ.get("CI"):
            pytest.fail(f"CI needs the shared data: {message}", pytrace=False)
        pytest.skip(f"needs the shared data: {message}")
    return _FOUND


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("shared_data"):
        require_shared_data()


@pytest.fixture
def shared_data() -> Path:
    return require_shared_data()


@pytest.fixture
def rlkit_cmd() -> list[str]:
    """The `rlkit` console script of the interpreter running the tests."""
    return [sys.executable, "-m", "rlkit.cli"]


TINY_RECIPE = """
name: tiny-test
threads: 1
rollout: {n: 4, max_new_tokens: 40}
checkpoint: {every: 2}
eval: {limit: 16}
stages:
  - {type: sft, steps: 3, lr: 1.0e-3, batch_size: 8}
  - {type: rl, steps: 4, lr: 1.0e-4, batch_size: 4}
"""


@pytest.fixture
def tiny_recipe(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_RECIPE)
    return path
