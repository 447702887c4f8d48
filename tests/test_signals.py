"""Real signals on a real `rlkit run` process: SIGKILL then --resume, SIGTERM (as Slurm, Kubernetes and
`timeout` send it) then --resume; each step is in metrics.jsonl exactly once at the end."""

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STEPS = 60
RECIPE = f"threads: 1\ncheckpoint: {{every: 4, keep: 2}}\neval: {{limit: 4}}\nstages:\n  - {{type: sft, steps: {STEPS}, batch_size: 8}}\n"


def logged_steps(run_dir: Path) -> list[int]:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    steps = []
    for line in path.read_text().splitlines():
        try:
            steps.append(json.loads(line)["step"])
        except ValueError:
            pass  # a line being written right now
    return steps


def start(cmd: list[str]) -> subprocess.Popen:
    return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


def wait_for_step(run_dir: Path, step: int, proc: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if any(s >= step for s in logged_steps(run_dir)):
            return
        if proc.poll() is not None:
            raise AssertionError(f"run exited early with {proc.returncode}: {proc.stderr.read()}")
        time.sleep(0.05)
    raise AssertionError(f"step {step} not reached in {timeout} s")


@pytest.mark.slow  # three CLI processes, ~40 s on a 2-core machine
def test_sigkill_then_sigterm_mid_run_each_resume_and_every_step_is_logged_once(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE)
    run_dir = tmp_path / "run dir"  # the printed resume command must quote it
    cmd = [sys.executable, "-m", "rlkit.cli", "run", str(recipe), "--output-dir", str(run_dir)]

    killed = start(cmd)
    wait_for_step(run_dir, 10, killed)
    killed.send_signal(signal.SIGKILL)
    killed.communicate(timeout=60)

    resumed = start(cmd + ["--resume"])
    wait_for_step(run_dir, 24, resumed)  # past where the kill landed: this process is stepping
    resumed.send_signal(signal.SIGTERM)
    out, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 143, err
    assert "resumed from" in out and "SIGTERM: stopping after this step" in out
    assert "Traceback" not in err
    stopped_at = max(logged_steps(run_dir))
    assert 24 <= stopped_at < STEPS
    assert (run_dir / "stages/sft/checkpoints" / f"step-{stopped_at:06d}" / "manifest.json").exists()
    printed = err.strip().splitlines()[-1].removeprefix("rlkit: continue with: ")
    assert printed == shlex.join(["rlkit", "run", str(recipe), "--output-dir", str(run_dir), "--resume"])

    done = subprocess.run([sys.executable, "-m", "rlkit.cli", *shlex.split(printed)[1:]], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"(step {stopped_at}/{STEPS})" in done.stdout
    assert logged_steps(run_dir) == list(range(1, STEPS + 1))  # none missing, none twice


def test_a_second_signal_stops_at_once():
    from types import SimpleNamespace

    from rlkit.runner import _stop_handler
    from rlkit.stages.context import Aborted

    ctx = SimpleNamespace(stop_signal=0)
    handler = _stop_handler(ctx)
    handler(signal.SIGTERM, None)
    assert ctx.stop_signal == signal.SIGTERM  # the first one only asks the loop to stop after this step
    with pytest.raises(Aborted, match="stopped at once by a second SIGINT") as stop:
        handler(signal.SIGINT, None)
    assert stop.value.signum == signal.SIGINT
