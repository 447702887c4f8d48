"""Tiny end-to-end runs: outputs on disk, atomic checkpoints, SIGINT then --resume."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from rlkit.config import load_config
from rlkit.runner import run_recipe

REPO = Path(__file__).resolve().parents[1]


def read_metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_tiny_run_writes_config_metrics_summary_and_a_loadable_model(tiny_recipe, tmp_path):
    run_dir = tmp_path / "run"
    summary = run_recipe(load_config(tiny_recipe), run_dir)
    assert (run_dir / "config.yaml").exists()
    metrics = read_metrics(run_dir)
    assert [(m["stage"], m["step"]) for m in metrics] == [("sft", 1), ("sft", 2), ("sft", 3)] + [("rl", s) for s in range(1, 5)]
    rl = metrics[-1]
    for key in ("reward/mean", "reward/std", "accuracy", "entropy", "response_length/mean", "time/generate", "time/train", "tokens_per_s"):
        assert key in rl, key
    on_disk = json.loads((run_dir / "summary.json").read_text())
    assert on_disk == json.loads(json.dumps(summary))
    assert 0.0 <= on_disk["initial_eval"]["accuracy"] <= 1.0 and "accuracy" in on_disk["final_eval"]
    model = AutoModelForCausalLM.from_pretrained(run_dir / "final")
    tok = AutoTokenizer.from_pretrained(run_dir / "final")
    assert model.config.vocab_size >= len(tok)
    assert not list(run_dir.rglob("*.tmp"))  # nothing half-written left behind


def test_output_dir_that_holds_another_run_is_refused(tiny_recipe, tmp_path):
    from rlkit.errors import ConfigError

    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "something").write_text("x")
    with pytest.raises(ConfigError, match=r"not empty \(it holds \['something'\]\); choose another --output-dir"):
        run_recipe(load_config(tiny_recipe), tmp_path / "run")


def wait_for(predicate, timeout: float, proc: subprocess.Popen) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            raise AssertionError(f"run exited early with {proc.returncode}: {proc.stderr.read()}")
        time.sleep(0.2)
    raise AssertionError("timed out")


@pytest.mark.slow  # two CLI processes; ~40 s on an idle 2-core machine
def test_sigint_mid_rl_saves_a_checkpoint_and_resume_finishes(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "threads: 1\nrollout: {n: 4, max_new_tokens: 32}\ncheckpoint: {every: 100}\neval: {limit: 8}\n"
        "stages:\n  - {type: sft, steps: 2, batch_size: 4}\n  - {type: rl, steps: 12, batch_size: 4}\n"
    )
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "rlkit.cli", "run", str(recipe), "--output-dir", str(run_dir)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    metrics = run_dir / "metrics.jsonl"
    wait_for(lambda: metrics.exists() and '"stage": "rl", "step": 2' in metrics.read_text(), 240, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "--resume" in err and "Traceback" not in err
    checkpoints = list((run_dir / "stages/rl/checkpoints").iterdir())
    assert len(checkpoints) == 1 and (checkpoints[0] / "optimizer.pt").exists()
    stopped_at = json.loads((checkpoints[0] / "state.json").read_text())["step"]
    assert 2 <= stopped_at < 12
    assert (run_dir / "stages/sft/output").is_dir()  # the finished stage is kept

    done = subprocess.run(cmd + ["--resume"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "[sft] done in an earlier run; skipping" in done.stdout
    assert "resumed from" in done.stdout
    steps = [(m["stage"], m["step"]) for m in read_metrics(run_dir)]
    assert steps == [("sft", 1), ("sft", 2)] + [("rl", s) for s in range(1, 13)]  # each step exactly once
    summary = json.loads((run_dir / "summary.json").read_text())
    assert "initial_eval" in summary and "final_eval" in summary
    assert (run_dir / "final" / "config.json").exists()


def test_crash_then_resume_ends_with_the_same_weights_as_an_uninterrupted_run(tmp_path, monkeypatch):
    """Optimizer state, data position and RNG state all come back: resuming is exact on CPU."""
    import torch
    from safetensors.torch import load_file

    from rlkit.metrics_log import MetricsLog

    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "threads: 1\nrollout: {n: 2, max_new_tokens: 24}\ncheckpoint: {every: 2}\neval: {limit: 4}\n"
        "stages:\n  - {type: sft, steps: 2, batch_size: 4}\n  - {type: rl, steps: 4, batch_size: 2}\n"
    )
    straight = tmp_path / "straight"
    run_recipe(load_config(recipe), straight)

    crashed = tmp_path / "crashed"
    real_write = MetricsLog.write

    def crash_at_rl_step_3(self, record):
        if record["stage"] == "rl" and record["step"] == 3:
            raise RuntimeError("simulated crash")
        real_write(self, record)

    monkeypatch.setattr(MetricsLog, "write", crash_at_rl_step_3)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_recipe(load_config(recipe), crashed)
    monkeypatch.setattr(MetricsLog, "write", real_write)
    run_recipe(load_config(recipe), crashed, resume=True)

    a, b = load_file(straight / "final/model.safetensors"), load_file(crashed / "final/model.safetensors")
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert [(m["stage"], m["step"]) for m in read_metrics(crashed)] == [(m["stage"], m["step"]) for m in read_metrics(straight)]
