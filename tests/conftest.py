import json
import os
import shutil
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


# --------------------------------------------------------------------------- the quickstart's SFT, once a session
QUICKSTART = REPO / "recipes" / "quickstart.yaml"


def _what_sft_depends_on(config) -> dict:  # noqa: ANN001
    """The parts of a config that decide its first (sft) stage's output model."""
    from rlkit.learner.lora import learner_for_stage

    stage = config.stages[0]
    return {"model": config.model.model_dump(), "seed": config.seed, "threads": config.threads, "device": config.device,
            "runtime": config.runtime, "sft stage": stage.model_dump(), "learner": learner_for_stage(config.learner, str(stage.name)).model_dump()}


@pytest.fixture(scope="session")
def quickstart_sft() -> Path:
    """The quickstart's sft stage (500 steps), trained once per test session: test_quickstart.py and the tiny
    twins of test_tiny_algos.py, whose sft stages are the same, run their later stages from its output."""
    import tempfile

    from rlkit.config import load_config
    from rlkit.runner import run_recipe

    config = load_config(QUICKSTART)
    config = config.model_copy(update={"stages": config.stages[:1]})
    run_dir = Path(tempfile.mkdtemp(prefix="rlkit-quickstart-sft-")) / "run"
    try:
        run_recipe(config, run_dir)
        yield run_dir / "stages" / "sft" / "output"
    finally:
        shutil.rmtree(run_dir.parent, ignore_errors=True)


def run_from_quickstart_sft(recipe: Path, sft_output: Path, run_dir: Path, overrides: list[str] | None = None) -> dict:
    """Run a recipe whose sft stage is the quickstart's from `quickstart_sft`: its finished sft stage is skipped
    (resume), the later stages run as they would after it. A recipe whose sft stage differs is refused."""
    from rlkit.config import dump_config, load_config
    from rlkit.runner import run_recipe

    config = load_config(recipe, overrides)
    ours, shared = _what_sft_depends_on(config), _what_sft_depends_on(load_config(QUICKSTART))
    if ours != shared:
        differ = [key for key in shared if ours[key] != shared[key]]
        raise ValueError(f"{recipe}: its sft stage is not the quickstart's ({', '.join(differ)} differ); it cannot start from it")
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(dump_config(config))
    shutil.copytree(sft_output, run_dir / "stages" / "sft" / "output")
    summary = run_recipe(config, run_dir, resume=True)
    summary["metrics"] = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return summary
