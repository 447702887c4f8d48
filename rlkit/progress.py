"""The one progress display of every long loop: training stages, `rlkit eval`, `rlkit generate` and the distill
stage, and SwS's synthesis steps.

On a terminal, a rich bar: done/total, the rate (samples/s where samples are counted, else seconds per unit),
the time spent and the ETA. Elsewhere (CI logs, `nohup`, a file) a plain line on stderr now and then (every
`every` units and/or every `every_s` seconds, and at the end), so a long job never looks hung and a log is
not flooded:  `[eval] math500: 120/500 problems, 14.2 samples/s, ETA 3m05s`.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping


def clock(seconds: float) -> str:
    """62.5 -> '1m02s'; nan -> '?'."""
    if seconds != seconds:
        return "?"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def status_text(status: str | Mapping[str, object]) -> str:
    """{'reward': 0.51234, 'n': 3} -> 'reward 0.512  n 3'."""
    if isinstance(status, str):
        return status
    return "  ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in status.items())


class ProgressBar:
    """Progress of `total` units (problems, steps) from `start`.

    label: the bar's name; `tag` prefixes the plain line (`[tag] label: ...`, or `[label] ...` without a tag).
    samples_per_unit: each unit is that many samples (rate in samples/s); or pass `samples=` to `advance`/`update`.
    every / every_s: off a terminal, a line once `every` units or `every_s` seconds have passed since the last
    one (whichever is given; both: whichever comes first), and at the end. live: None = a bar when stderr is a
    terminal. enabled=False shows nothing. transient: the bar disappears when closed (a summary line follows).
    """

    def __init__(self, label: str, total: int, *, start: int = 0, unit: str = "problems", tag: str | None = None,
                 samples_per_unit: int | None = None, every: int | None = None, every_s: float | None = None,
                 live: bool | None = None, enabled: bool = True, transient: bool = False):
        from rich.console import Console

        self.label, self.total, self.start, self.unit, self.tag = label, total, start, unit, tag
        self.samples_per_unit, self.every, self.every_s, self.enabled = samples_per_unit, every, every_s, enabled
        self.done = self.last_done = start
        self.samples = 0
        self.status = ""
        self.started = self.last_line = time.perf_counter()
        console = Console(stderr=True)
        self.bar = None
        if enabled and (console.is_terminal if live is None else live):
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TextColumn(f"{unit}  {{task.fields[rate]}}  {{task.fields[status]}}"), TimeElapsedColumn(),
                                TextColumn("ETA"), TimeRemainingColumn(), console=console, transient=transient)
            self.task = self.bar.add_task(label, total=total, completed=start, rate="", status="")
            self.bar.start()

    def _elapsed(self) -> float:
        return max(time.perf_counter() - self.started, 1e-9)

    def rate(self) -> str:
        """'14.2 samples/s' where samples are counted, else '0.52 s/step'."""
        samples = self.samples or (self.done - self.start) * (self.samples_per_unit or 0)
        if samples or self.samples_per_unit:
            return f"{samples / self._elapsed():.1f} samples/s"
        return f"{self._elapsed() / max(self.done - self.start, 1):.2f} s/{self.unit.removesuffix('s')}"

    def eta(self) -> float:
        """Seconds left at the rate so far; nan before the first unit."""
        done = self.done - self.start
        return (self.total - self.done) * self._elapsed() / done if done > 0 else float("nan")

    def line(self) -> str:
        head = f"[{self.tag}] {self.label}:" if self.tag else f"[{self.label}]"
        text = f"{head} {self.done}/{self.total} {self.unit}, {self.rate()}, ETA {clock(self.eta())}"
        return f"{text}  {self.status}" if self.status else text

    def update(self, done: int, status: str | Mapping[str, object] = "", samples: int | None = None) -> None:
        """`done` units so far (of all, `start` included), `samples` so far when counted, a short status."""
        self.done, self.status = done, status_text(status)
        if samples is not None:
            self.samples = samples
        if self.bar is not None:
            self.bar.update(self.task, completed=done, rate=self.rate(), status=self.status)
        elif self.enabled and self._line_due():
            self.last_done, self.last_line = self.done, time.perf_counter()
            print(self.line(), file=sys.stderr, flush=True)

    def advance(self, units: int, samples: int | None = None) -> None:
        """`units` more done (and `samples` more samples, when counted)."""
        self.update(self.done + units, self.status, None if samples is None else self.samples + samples)

    def _line_due(self) -> bool:
        if self.done >= self.total:
            return True
        by_count = self.every is not None and self.done - self.last_done >= self.every
        by_time = self.every_s is not None and time.perf_counter() - self.last_line >= self.every_s
        return by_count or by_time

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None
