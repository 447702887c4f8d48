import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("RLKIT_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"shared data not found at {SHARED_DATA} (set RLKIT_SHARED_DATA)")
    return SHARED_DATA


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
