"""Step metrics: one JSON line per step in metrics.jsonl (the progress display is rlkit/progress.py)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

from rlkit.errors import DataError
from rlkit.files import atomic_write_text


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class MetricsLog:
    """metrics.jsonl, and the experiment trackers (rlkit/tracking.py) that get each line as it is written."""

    def __init__(self, path: Path, trackers: list | None = None):
        self.path = Path(path)
        self.trackers = trackers or []

    def truncate_after(self, stage: str, step: int) -> None:
        """On resume: drop lines of `stage` past the checkpoint's step (they will be redone), and a half-written
        last line (the process was killed mid-write) with a warning."""
        for tracker in self.trackers:
            tracker.rewind(stage, step)
        if not self.path.exists():
            return
        kept = [line for line in self.read_lines() if not _after(json.loads(line), stage, step)]
        atomic_write_text(self.path, "".join(line + "\n" for line in kept))

    def read_lines(self) -> list[str]:
        """The file's complete JSON lines. Only the last line may be broken (a kill mid-write): it is
        dropped with a warning; a broken line anywhere else is an error naming it."""
        lines = [line for line in self.path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
        for number, line in enumerate(lines, 1):
            try:
                json.loads(line)
            except ValueError:
                if number < len(lines):
                    raise DataError(f"{self.path}, line {number}: not a JSON object; fix or delete that line") from None
                print(f"rlkit: warning: {self.path}, line {number} is half-written (the run was killed while writing it); "
                      "dropping it", file=sys.stderr, flush=True)
                return lines[:-1]
        return lines

    def write(self, record: dict[str, Any]) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps({k: _clean(v) for k, v in record.items()}) + "\n")
        for tracker in self.trackers:
            tracker.log(record)

    def close(self, summary: dict[str, Any] | None = None) -> None:
        for tracker in self.trackers:
            if summary is not None:
                tracker.summary(summary)
            tracker.close()
        self.trackers = []


def _after(record: dict[str, Any], stage: str, step: int) -> bool:
    return record.get("stage") == stage and record.get("step", 0) > step


