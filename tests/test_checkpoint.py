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
