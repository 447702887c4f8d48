"""Step metrics: one JSON line per step in metrics.jsonl, and a live progress line."""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class MetricsLog:
    def __init__(self, path: Path):
        self.path = Path(path)

    def truncate_after(self, stage: str, step: int) -> None:
        """On resume: drop lines of `stage` past the checkpoint's step (they will be redone)."""
        if not self.path.exists():
            return
        kept = [line for line in self.path.read_text().splitlines() if line.strip() and not _after(json.loads(line), stage, step)]
        self.path.write_text("".join(line + "\n" for line in kept))

    def write(self, record: dict[str, Any]) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps({k: _clean(v) for k, v in record.items()}) + "\n")


def _after(record: dict[str, Any], stage: str, step: int) -> bool:
    return record.get("stage") == stage and record.get("step", 0) > step


class StageProgress:
    """A rich progress bar on a terminal; a plain line every `every` steps elsewhere (CI logs)."""

    def __init__(self, stage: str, total: int, start: int = 0, every: int = 10):
        self.stage, self.total, self.every = stage, total, every
        self.console = Console(stderr=True)
        self.live = self.console.is_terminal
        self.started = time.time()
        self.start = start
        self.progress = None
        if self.live:
            self.progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[status]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=self.console,
            )
            self.task = self.progress.add_task(stage, total=total, completed=start, status="")
            self.progress.start()

    def update(self, step: int, status: dict[str, float]) -> None:
        text = "  ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in status.items())
        if self.progress is not None:
            self.progress.update(self.task, completed=step, status=text)
        elif step % self.every == 0 or step == self.total:
            rate = (time.time() - self.started) / max(step - self.start, 1)
            print(f"[{self.stage}] step {step}/{self.total}  {text}  ({rate:.2f}s/step)", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
