"""Resumable checkpoints, written atomically and durably: into a temporary directory, fsynced, then renamed.

Layout of a stage directory:
    checkpoints/step-000050/   model/, optimizer.pt, state.json, rng.pt, manifest.json (written last)
    output/                    the stage's finished model (HF format); its presence marks the stage done

manifest.json lists every file of the checkpoint with its size; a checkpoint whose files do not match it
(a disk that filled up, a copy cut short, a file system that lost unsynced data) is skipped on resume
for the newest intact one.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlkit.errors import RlkitError
from rlkit.files import atomic_dir, atomic_write_text  # noqa: F401 - atomic_write_text: older code imports it from here

STEP_PREFIX = "step-"
STEP_DIR = re.compile(rf"{STEP_PREFIX}(\d+)")
MANIFEST = "manifest.json"


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(stage_dir: Path, step: int, learner, state: dict[str, Any], keep: int) -> Path:  # noqa: ANN001
    def write(tmp: Path) -> None:
        learner.save(tmp)
        torch.save(rng_state(), tmp / "rng.pt")
        (tmp / "state.json").write_text(json.dumps({"step": step, **state}, indent=1))
        write_manifest(tmp)  # last: its presence says every file above is complete

    path = atomic_dir(stage_dir / "checkpoints" / f"{STEP_PREFIX}{step:06d}", write)
    for old in list_checkpoints(stage_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return path


def write_manifest(directory: Path) -> None:
    files = {str(p.relative_to(directory)): p.stat().st_size for p in sorted(directory.rglob("*")) if p.is_file()}
    (directory / MANIFEST).write_text(json.dumps({"files": files}, indent=1))


def checkpoint_problem(path: Path) -> str | None:
    """Why the checkpoint at `path` cannot be trusted (a missing or short file), or None when it is intact.
    Checkpoints written before manifests existed are trusted as they are."""
    manifest = path / MANIFEST
    if not manifest.exists():
        return None if (path / "state.json").exists() else "no manifest.json and no state.json"
    try:
        files = json.loads(manifest.read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        return f"unreadable manifest.json ({err})"
    for name, size in files.items():
        file = path / name
        if not file.is_file():
            return f"{name} is missing"
        if file.stat().st_size != size:
            return f"{name} has {file.stat().st_size} bytes, the manifest says {size}"
    return None


def list_checkpoints(stage_dir: Path) -> list[Path]:
    """Complete checkpoint directories (renamed into place, with a manifest or a state.json), oldest first."""
    root = Path(stage_dir) / "checkpoints"
    if not root.is_dir():
        return []
    done = [p for p in root.iterdir() if STEP_DIR.fullmatch(p.name) and ((p / MANIFEST).exists() or (p / "state.json").exists())]
    return sorted(done, key=lambda p: int(p.name[len(STEP_PREFIX) :]))


def latest_checkpoint(stage_dir: Path) -> Path | None:
    found = list_checkpoints(stage_dir)
    return found[-1] if found else None


def load_checkpoint(path: Path, learner) -> dict[str, Any]:  # noqa: ANN001
    learner.load(path)
    set_rng_state(torch.load(path / "rng.pt", weights_only=False))
    return json.loads((path / "state.json").read_text())


def load_newest_intact(stage_dir: Path, learner) -> tuple[Path, dict[str, Any]] | None:  # noqa: ANN001
    """Load the newest checkpoint that verifies and loads. Each damaged newer one is set aside (renamed
    `<name>.damaged`, out of the way of later saves and pruning) with a warning naming it and the one used
    instead. None when the stage has no checkpoint; a CheckpointError when none is intact."""
    damaged: list[tuple[Path, str]] = []
    for path in reversed(list_checkpoints(stage_dir)):
        problem = checkpoint_problem(path)
        if problem is None:
            try:
                state = load_checkpoint(path, learner)
            except Exception as err:  # noqa: BLE001 - a file that passed the size check but cannot be read
                problem = f"{type(err).__name__}: {err}".splitlines()[0]
            else:
                for bad, why in damaged:
                    aside = bad.with_name(bad.name + ".damaged")
                    shutil.rmtree(aside, ignore_errors=True)
                    os.rename(bad, aside)
                    print(f"rlkit: warning: checkpoint {bad} is damaged ({why}); moved aside to {aside.name}; "
                          f"resuming from {path} instead", file=sys.stderr, flush=True)
                return path, state
        damaged.append((path, problem))
    if damaged:
        path, why = damaged[0]
        raise CheckpointError(f"checkpoint {path} is damaged ({why}) and no older intact one is left in {path.parent}; "
                              f"delete {path.parent} to start the stage over")
    return None


class CheckpointError(RlkitError):
    """No checkpoint of a stage can be resumed from."""
