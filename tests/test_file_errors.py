"""File-system errors are one-line errors naming the path and the cause (exit 2), with partial files removed.
A real full disk and a real read-only directory, made with bubblewrap mounts around the rlkit process."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rlkit.cli import main as cli

REPO = Path(__file__).resolve().parents[1]
RECIPE = "threads: 1\ncheckpoint: {every: 1}\neval: {limit: 2}\nstages:\n  - {type: sft, steps: 2, batch_size: 2}\n"
needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap (scripts/install_sandbox.sh)")


def rlkit_in_mounts(mounts: list[str], args: list[str], after: str = "") -> subprocess.CompletedProcess:
    """`rlkit ARGS` with the host's file system plus `mounts` (bwrap options); `after` runs in the same mounts."""
    inner = " ".join(["exec 2>&1;", sys.executable, "-m", "rlkit.cli", *(f"'{a}'" for a in args), "; echo rc=$?;", after])
    cmd = ["bwrap", "--bind", "/", "/", "--dev", "/dev", "--proc", "/proc", *mounts, "--chdir", str(REPO), "--", "sh", "-c", inner]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def test_output_dir_naming_a_file_is_one_line(tmp_path, capsys):
    recipe, taken = tmp_path / "r.yaml", tmp_path / "a_file"
    recipe.write_text(RECIPE)
    taken.write_text("x")
    assert cli(["run", str(recipe), "-o", str(taken)]) == 2
    assert capsys.readouterr().err == f"rlkit: error: --output-dir {taken} is a file, not a directory; choose a directory\n"


def test_reward_score_output_under_a_file_is_one_line_and_writes_nothing(tmp_path, capsys):
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"completion": "\\boxed{2}", "answer": "2"}) + "\n")
    (tmp_path / "a_file").write_text("x")
    out = tmp_path / "a_file" / "scored.jsonl"
    assert cli(["reward", "score", "math", "--input", str(rows), "--output", str(out)]) == 2
    assert capsys.readouterr().err == f"rlkit: error: cannot write {out}: Not a directory\n"


@needs_bwrap
def test_read_only_output_directory_is_one_line(tmp_path):
    (tmp_path / "r.yaml").write_text(RECIPE)
    (tmp_path / "ro").mkdir()
    done = rlkit_in_mounts(["--ro-bind", str(tmp_path / "ro"), str(tmp_path / "ro")],
                           ["run", str(tmp_path / "r.yaml"), "-o", str(tmp_path / "ro" / "run")])
    lines = done.stdout.strip().splitlines()
    assert lines[-2:] == [f"rlkit: error: cannot write {tmp_path / 'ro' / 'run'}: Read-only file system", "rc=2"], done.stdout


@needs_bwrap
def test_a_full_disk_during_a_checkpoint_is_one_line_and_leaves_no_partial_checkpoint(tmp_path):
    (tmp_path / "r.yaml").write_text(RECIPE)
    disk = tmp_path / "disk"
    disk.mkdir()
    run_dir = disk / "run"
    # 3 MB: config, metrics and summary fit; the first checkpoint (~13 MB of weights and optimizer state) does not
    done = rlkit_in_mounts(["--size", str(3 << 20), "--tmpfs", str(disk)], ["run", str(tmp_path / "r.yaml"), "-o", str(run_dir)],
                           after=f"find {disk} -name '*.tmp'; echo found-end")
    lines = done.stdout.strip().splitlines()
    checkpoint = run_dir / "stages" / "sft" / "checkpoints" / "step-000001"
    assert f"rlkit: error: cannot write {checkpoint}: No space left on device" in lines, done.stdout
    assert "Traceback" not in done.stdout
    assert lines[-2:] == ["rc=2", "found-end"], done.stdout  # `find` printed no .tmp: nothing partial keeps filling the disk


@needs_bwrap
def test_a_full_disk_while_scoring_removes_the_partial_output(tmp_path):
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"completion": f"{'x' * 900} \\boxed{{{i}}}", "answer": str(i)}) + "\n" for i in range(300)))
    disk = tmp_path / "disk"
    disk.mkdir()
    out = disk / "scored.jsonl"
    done = rlkit_in_mounts(["--size", str(64 << 10), "--tmpfs", str(disk)],
                           ["reward", "score", "math", "--input", str(rows), "--output", str(out)], after=f"ls {disk}; echo ls-end")
    lines = done.stdout.strip().splitlines()
    assert f"rlkit: error: cannot write {out}: No space left on device" in lines, done.stdout
    assert lines[-2:] == ["rc=2", "ls-end"], done.stdout  # the disk is empty again
