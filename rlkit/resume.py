"""What `rlkit run RECIPE -o DIR --resume [KEY=VALUE ...]` runs, by one rule: the run's saved config.yaml
plus the overrides given now. The recipe file is not re-read for values; where it differs from the saved
config, the differences are listed so a fix made in the recipe can be passed on as an override.

Overrides that would make the saved state meaningless are refused unless `--force`: another model, a stage's
type or advantage estimator, LoRA on or off, fewer steps than a stage has done, any change to a stage that
finished in an earlier run (it is skipped, so the change could not take effect), or another list of stages.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from rlkit.config import RunConfig, dump_config, load_config
from rlkit.errors import ConfigError
from rlkit.files import atomic_write_text


def flatten(config: RunConfig) -> dict[str, Any]:
    """Dotted keys as a user writes them in overrides (stages by name) -> values."""
    raw = config.model_dump(mode="json")
    stages = raw.pop("stages")
    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict) and value:
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else key, inner)
        else:
            flat[prefix] = value

    walk("", raw)
    for stage in stages:
        walk(str(stage["name"]), {k: v for k, v in stage.items() if k != "name"})
    return flat


def differences(old: RunConfig, new: RunConfig) -> dict[str, tuple[Any, Any]]:
    a, b = flatten(old), flatten(new)
    keys = list(a) + [key for key in b if key not in a]
    return {key: (a.get(key), b.get(key)) for key in keys if a.get(key) != b.get(key)}


def steps_done(run_dir: Path, stage: str) -> tuple[int, bool]:
    """(steps the stage has done, whether it finished), from its output and checkpoints on disk."""
    from rlkit.checkpoint import latest_checkpoint

    stage_dir = run_dir / "stages" / stage
    if (stage_dir / "output").is_dir():
        return -1, True
    checkpoint = latest_checkpoint(stage_dir)
    return (int(checkpoint.name.split("-")[-1]) if checkpoint else 0), False


def refusals(saved: RunConfig, wanted: RunConfig, run_dir: Path) -> list[str]:
    """Why each change the overrides make would break the saved state (empty: all fine)."""
    names = [(str(s.name), s.type) for s in saved.stages]
    if [(str(s.name), s.type) for s in wanted.stages] != names:
        return [f"the stages would change from {names} to {[(str(s.name), s.type) for s in wanted.stages]}"]
    changed = differences(saved, wanted)
    reasons = [f"{key} would change from {old!r} to {new!r}: the checkpoints hold another model"
               for key, (old, new) in changed.items() if key.startswith("model.")]
    if (saved.learner.lora is None) != (wanted.learner.lora is None):
        reasons.append("learner.lora would be switched on or off: the checkpoints hold another kind of learner state")
    for stage in saved.stages:
        name = str(stage.name)
        done, finished = steps_done(run_dir, name)
        own = {key: change for key, change in changed.items() if key.startswith(f"{name}.")}
        if finished and own:
            reasons.append(f"stage '{name}' finished in an earlier run and is skipped on resume, so {', '.join(own)} "
                           "cannot take effect")
            continue
        for key in (f"{name}.type", f"{name}.algorithm.advantage"):
            if key in own:
                reasons.append(f"{key} would change from {own[key][0]!r} to {own[key][1]!r}: the checkpoints were trained by another algorithm")
        if f"{name}.steps" in own and wanted.stage(name).steps < done:
            reasons.append(f"{name}.steps={wanted.stage(name).steps} is fewer than the {done} steps the stage has done")
    return reasons


def resume_config(recipe: Path, run_dir: Path, overrides: list[str], force: bool = False, save: bool = True) -> RunConfig:
    """The config a resume runs: the saved config.yaml plus `overrides`, checked against the saved state.
    Prints how the recipe on disk differs and what the overrides change; saves the result (`save`) so
    the next resume starts from it."""
    saved_path = run_dir / "config.yaml"
    if not saved_path.is_file():
        raise ConfigError(f"--resume: {run_dir} holds no run (no config.yaml); pass the --output-dir of the run to resume")
    saved = load_config(saved_path)
    wanted = load_config(saved_path, overrides) if overrides else saved
    try:
        from_recipe = load_config(recipe, overrides)
    except ConfigError as err:
        print(f"rlkit: note: the recipe cannot be read now ({err}); resuming from {saved_path}", file=sys.stderr)
    else:
        if drift := differences(wanted, from_recipe):
            shown = "; ".join(f"{key}: run {old!r}, recipe {new!r}" for key, (old, new) in drift.items())
            print(f"rlkit: note: resuming with {saved_path}, which differs from {recipe} in: {shown}. "
                  "Pass KEY=VALUE overrides to take a recipe value.", file=sys.stderr)
    if changes := differences(saved, wanted):
        if not force and (reasons := refusals(saved, wanted, run_dir)):
            raise ConfigError(f"--resume: refusing the overrides: {'; '.join(reasons)}. Start a new run with another "
                              "--output-dir, or pass --force to resume anyway")
        shown = ", ".join(f"{key} {old!r} -> {new!r}" for key, (old, new) in changes.items())
        print(f"rlkit: resuming with changes to the saved config: {shown}", file=sys.stderr)
        if save:
            atomic_write_text(saved_path, dump_config(wanted))
    return wanted
