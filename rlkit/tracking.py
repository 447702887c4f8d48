"""Experiment trackers (`logging.backends`): every metrics.jsonl line also goes to TensorBoard and/or W&B.

metrics.jsonl is always written and stays the record resume and `rlkit plot` read. Trackers get each line
as it is written, keyed by stage, so that an RL stage's step 1 is its own step 1:
- tensorboard: one event-file directory per stage, <run>/tensorboard/<stage>/ (TensorBoard shows each as a
  run), tags are the metric names; the run's config as text and its summary in <run>/tensorboard/run/.
  A resumed stage purges the steps past its checkpoint (they are redone), as metrics.jsonl does.
- wandb: one W&B run named after the run directory (group: the recipe's `name`), with the resolved config;
  metrics as `<stage>/<name>` against `<stage>/step`, the summary as the run's summary. The run's id is kept
  in <run>/tracking.json, so a resume continues the same W&B run (steps redone after a resume are logged
  again there; metrics.jsonl and TensorBoard hold each step once).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Protocol

from rlkit.config import RunConfig, dump_config
from rlkit.errors import import_backend


class Tracker(Protocol):
    def log(self, record: dict[str, Any]) -> None: ...  # one metrics.jsonl line: stage, step, metrics
    def rewind(self, stage: str, step: int) -> None: ...  # a resume: steps of `stage` past `step` are redone
    def summary(self, summary: dict[str, Any]) -> None: ...
    def close(self) -> None: ...


def numbers(record: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """The finite numeric values of a (nested) record as flat 'a/b' keys."""
    flat: dict[str, float] = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(numbers(value, f"{name}/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            flat[name] = float(value)
    return flat


class TensorBoardTracker:
    def __init__(self, config: RunConfig, run_dir: Path):
        self.summary_writer_cls = import_backend("torch.utils.tensorboard", "logging.backends: tensorboard", "tracking").SummaryWriter
        self.root = run_dir / "tensorboard"
        self.writers: dict[str, Any] = {}
        self.purge: dict[str, int] = {}
        run = self._writer("run")
        run.add_text("config", "```yaml\n" + dump_config(config) + "```", 0)

    def _writer(self, stage: str):  # noqa: ANN202 - a SummaryWriter
        if stage not in self.writers:
            self.writers[stage] = self.summary_writer_cls(str(self.root / stage), purge_step=self.purge.get(stage))
        return self.writers[stage]

    def log(self, record: dict[str, Any]) -> None:
        writer = self._writer(str(record["stage"]))
        for key, value in numbers({k: v for k, v in record.items() if k not in ("stage", "step")}).items():
            writer.add_scalar(key, value, int(record["step"]))
        writer.flush()

    def rewind(self, stage: str, step: int) -> None:
        self.purge[stage] = step + 1  # TensorBoard hides this stage's events from this step on: they are redone

    def summary(self, summary: dict[str, Any]) -> None:
        writer = self._writer("run")
        for key, value in numbers(summary).items():
            writer.add_scalar(f"summary/{key}", value, 0)
        writer.flush()

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()


class WandbTracker:
    def __init__(self, config: RunConfig, run_dir: Path, resume: bool):
        wandb = import_backend("wandb", "logging.backends: wandb", "tracking")
        state_path = run_dir / "tracking.json"
        state = json.loads(state_path.read_text()) if state_path.exists() else {}
        self.run = wandb.init(
            project=config.logging.wandb_project, name=run_dir.name, group=config.name, dir=str(run_dir),
            config=config.model_dump(mode="json"), mode=config.logging.wandb_mode, id=state.get("wandb_id"),
            resume="allow" if resume and "wandb_id" in state else None,
        )
        if "wandb_id" not in state:
            from rlkit.files import atomic_write_text

            atomic_write_text(state_path, json.dumps({**state, "wandb_id": self.run.id}))
        self.stages: set[str] = set()

    def log(self, record: dict[str, Any]) -> None:
        stage = str(record["stage"])
        if stage not in self.stages:  # each stage's metrics against its own step
            self.run.define_metric(f"{stage}/step")
            self.run.define_metric(f"{stage}/*", step_metric=f"{stage}/step")
            self.stages.add(stage)
        values = numbers({k: v for k, v in record.items() if k not in ("stage", "step")}, f"{stage}/")
        self.run.log({f"{stage}/step": int(record["step"]), **values})

    def rewind(self, stage: str, step: int) -> None:
        pass  # W&B history is append-only: the redone steps are logged again

    def summary(self, summary: dict[str, Any]) -> None:
        self.run.summary.update(numbers(summary))

    def close(self) -> None:
        self.run.finish()


BACKENDS = {  # name in logging.backends -> its tracker (jsonl is metrics.jsonl itself, always written)
    "tensorboard": lambda config, run_dir, resume: TensorBoardTracker(config, run_dir),
    "wandb": WandbTracker,
}


def build_trackers(config: RunConfig, run_dir: Path, resume: bool) -> list[Tracker]:
    return [BACKENDS[name](config, run_dir, resume) for name in dict.fromkeys(config.logging.backends) if name in BACKENDS]
