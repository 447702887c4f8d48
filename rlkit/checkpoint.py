"""Resumable checkpoints, written atomically: into a temporary directory, then renamed.

Layout of a stage directory:
    checkpoints/step-000050/   model/, optimizer.pt, state.json, rng.pt
    output/                    the stage's finished model (HF format); its presence marks the stage done
"""

from __future__ import annotations

import json
import os
import random
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

STEP_PREFIX = "step-"


def atomic_dir(final: Path, write: Callable[[Path], None]) -> Path:
    """Call write(tmp_dir), then rename tmp_dir to `final`. A crash leaves no half-written `final`."""
    final = Path(final)
    tmp = final.with_name(final.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    write(tmp)
    old = final.with_name(final.name + ".old")
    if final.exists():  # keep the previous version until the new one is in place
        if old.exists():
            shutil.rmtree(old)
        os.rename(final, old)
    os.rename(tmp, final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def atomic_write_text(path: Path, text: str) -> None:
    tmp = Path(str(path) + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


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

    path = atomic_dir(stage_dir / "checkpoints" / f"{STEP_PREFIX}{step:06d}", write)
    for old in list_checkpoints(stage_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return path


def list_checkpoints(stage_dir: Path) -> list[Path]:
    root = Path(stage_dir) / "checkpoints"
    if not root.is_dir():
        return []
    done = [p for p in root.iterdir() if p.name.startswith(STEP_PREFIX) and not p.name.endswith(".tmp") and (p / "state.json").exists()]
    return sorted(done, key=lambda p: int(p.name[len(STEP_PREFIX) :]))


def latest_checkpoint(stage_dir: Path) -> Path | None:
    found = list_checkpoints(stage_dir)
    return found[-1] if found else None


def load_checkpoint(path: Path, learner) -> dict[str, Any]:  # noqa: ANN001
    learner.load(path)
    set_rng_state(torch.load(path / "rng.pt", weights_only=False))
    return json.loads((path / "state.json").read_text())
