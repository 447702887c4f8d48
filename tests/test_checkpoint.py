"""Checkpoints are written atomically: a crash mid-write leaves the previous state intact."""

import pytest

from rlkit.checkpoint import atomic_dir, latest_checkpoint, list_checkpoints


def test_atomic_dir_leaves_nothing_when_the_writer_crashes(tmp_path):
    target = tmp_path / "ckpt"
    atomic_dir(target, lambda d: (d / "a").write_text("old"))

    def crash(d):
        (d / "a").write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic_dir(target, crash)
    assert (target / "a").read_text() == "old"


def test_half_written_checkpoints_are_never_picked_for_resume(tmp_path):
    root = tmp_path / "checkpoints"
    (root / "step-000002").mkdir(parents=True)
    (root / "step-000002" / "state.json").write_text("{}")
    (root / "step-000010").mkdir()  # renamed but state.json missing: not a checkpoint
    (root / "step-000004.tmp").mkdir()
    (root / "step-000004.tmp" / "state.json").write_text("{}")
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-000002"]
    assert latest_checkpoint(tmp_path).name == "step-000002"


def test_a_writer_error_removes_the_partial_temporary_directory(tmp_path):
    def fill_disk(d):
        (d / "model.safetensors").write_bytes(b"x" * 1000)
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        atomic_dir(tmp_path / "step-000004", fill_disk)
    assert list(tmp_path.iterdir()) == []  # no step-000004.tmp left to keep filling the disk


def test_atomic_write_text_leaves_no_temporary_file_on_error(tmp_path):
    from rlkit.files import atomic_write_text

    target = tmp_path / "summary.json"
    atomic_write_text(target, "old")
    with pytest.raises(TypeError):
        atomic_write_text(target, None)  # the write itself fails, after the .tmp was opened
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_manifest_catches_a_truncated_or_missing_file(tmp_path):
    from rlkit.checkpoint import checkpoint_problem, write_manifest

    ckpt = tmp_path / "step-000002"
    (ckpt / "model").mkdir(parents=True)
    (ckpt / "model" / "model.safetensors").write_bytes(b"w" * 100)
    (ckpt / "state.json").write_text("{}")
    write_manifest(ckpt)
    assert checkpoint_problem(ckpt) is None
    (ckpt / "model" / "model.safetensors").write_bytes(b"w" * 40)
    assert checkpoint_problem(ckpt) == "model/model.safetensors has 40 bytes, the manifest says 100"
    (ckpt / "model" / "model.safetensors").unlink()
    assert checkpoint_problem(ckpt) == "model/model.safetensors is missing"


SFT_ONLY = "threads: 1\ncheckpoint: {every: 2, keep: 2}\neval: {limit: 4}\nstages:\n  - {type: sft, steps: 6, batch_size: 4}\n"


def crash_after(monkeypatch, step: int) -> None:
    from rlkit.metrics_log import MetricsLog

    real_write = MetricsLog.write

    def write(self, record):
        real_write(self, record)
        if record["step"] == step:
            raise RuntimeError("simulated crash")

    monkeypatch.setattr(MetricsLog, "write", write)


def test_resume_falls_back_from_a_damaged_checkpoint_and_drops_a_half_written_metrics_line(tmp_path, monkeypatch, capsys):
    import json

    from rlkit.config import load_config
    from rlkit.runner import run_recipe

    recipe = tmp_path / "r.yaml"
    recipe.write_text(SFT_ONLY)
    run_dir = tmp_path / "run"
    crash_after(monkeypatch, 5)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_recipe(load_config(recipe), run_dir)
    monkeypatch.undo()
    checkpoints = run_dir / "stages/sft/checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["step-000002", "step-000004"]
    weights = checkpoints / "step-000004/model/model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # the disk filled up while it was written
    with (run_dir / "metrics.jsonl").open("a") as f:
        f.write('{"stage": "sft", "step": 6, "lo')  # killed mid-write

    capsys.readouterr()
    run_recipe(load_config(recipe), run_dir, resume=True)
    err = capsys.readouterr().err
    assert f"checkpoint {checkpoints / 'step-000004'} is damaged (model/model.safetensors has 100 bytes" in err
    assert f"resuming from {checkpoints / 'step-000002'} instead" in err
    assert "line 6 is half-written" in err
    steps = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]  # 3-5 redone from the step-2 checkpoint, none twice
    assert (run_dir / "final" / "model.safetensors").exists()


def test_every_checkpoint_damaged_is_a_one_line_error_naming_it(tmp_path, monkeypatch):
    from rlkit.checkpoint import CheckpointError
    from rlkit.config import load_config
    from rlkit.runner import run_recipe

    recipe = tmp_path / "r.yaml"
    recipe.write_text(SFT_ONLY)
    run_dir = tmp_path / "run"
    crash_after(monkeypatch, 3)
    with pytest.raises(RuntimeError):
        run_recipe(load_config(recipe), run_dir)
    monkeypatch.undo()
    only = run_dir / "stages/sft/checkpoints/step-000002"
    (only / "optimizer.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match=rf"checkpoint {only} is damaged \(optimizer.pt has 0 bytes.*delete"):
        run_recipe(load_config(recipe), run_dir, resume=True)
    assert only.is_dir()  # kept where it was: nothing intact replaced it
